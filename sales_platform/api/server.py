"""gunicorn's threaded worker, hardened against slow and greedy clients.

gunicorn's gthread hands a connection to a thread as soon as a byte arrives, and the thread then
blocks until the request head is complete: a few clients trickling their headers a byte at a time
hold every thread, and nobody else is answered (no token needed). This worker:

- reads each request head (TLS handshake included) in the event loop, without a thread; a thread
  gets the connection only once the head is complete. A head not complete within
  ``header_timeout_s`` is answered 408 and closed, a head over ``MAX_HEAD_BYTES`` 431;
- sets the kernel's receive and send timeouts (SO_RCVTIMEO/SO_SNDTIMEO) to ``body_timeout_s``: a
  body (or a response) that stalls that long fails the read (an upload is then refused, nothing
  kept) and frees the thread;
- keeps at most ``max_per_client`` connections open per client address; more are answered 429.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import struct
import time
from collections import Counter
from typing import Any

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn.workers.gthread import TConn, ThreadWorker

MAX_HEAD_BYTES = 64 << 10  # request line + headers; far above any real client's
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_PER_CLIENT = 32


def _answer(status: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(status) + 13}\r\n\r\n{{\"error\": \"{status}\"}}").encode()


def _kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking reads and writes on ``sock`` fail after ``seconds`` without progress."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        sock.setsockopt(socket.SOL_SOCKET, option, value)


class _Conn(TConn):
    """A connection that tells the worker once when it closes (per-client accounting)."""

    def __init__(self, *args: Any, on_close: Any) -> None:
        super().__init__(*args)
        self.on_close = on_close
        self.head = bytearray()
        self.head_deadline = 0.0

    def close(self, graceful: bool = False) -> None:
        if self.on_close is not None:
            self.on_close(self)
            self.on_close = None
        super().close(graceful)


class GuardedThreadWorker(ThreadWorker):
    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s = DEFAULT_BODY_TIMEOUT_S
    max_per_client = DEFAULT_MAX_PER_CLIENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_client: Counter[str] = Counter()
        self.reading_heads: set[_Conn] = set()

    # --- accepting ---------------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        address = client_addr[0] if isinstance(client_addr, tuple) else str(client_addr)
        if self.per_client[address] >= self.max_per_client:
            self._refuse(client_sock, "429 Too Many Requests")
            return
        self.nr_conns += 1
        self.per_client[address] += 1
        _kernel_timeouts(client_sock, self.body_timeout_s)
        conn = _Conn(self.cfg, client_sock, client_addr, listener.getsockname(),
                     on_close=lambda c, a=address: self._released(a))
        if self.cfg.is_ssl:
            conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                client_sock, server_side=True, do_handshake_on_connect=False,
                suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
        conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.initialized = True  # wrapped and parsed here: TConn.init must not wrap it again
        self._read_head(conn)

    def _released(self, address: str) -> None:
        self.per_client[address] -= 1
        if self.per_client[address] <= 0:
            del self.per_client[address]

    @staticmethod
    def _refuse(sock: socket.socket, status: str) -> None:
        try:
            sock.setblocking(False)
            sock.send(_answer(status))
        except OSError:
            pass
        finally:
            sock.close()

    # --- request heads, in the event loop ------------------------------------------------------

    def _read_head(self, conn: _Conn) -> None:
        conn.head.clear()
        conn.head_deadline = time.monotonic() + self.header_timeout_s
        conn.sock.setblocking(False)
        self.reading_heads.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, lambda _s, c=conn: self._on_head(c))

    def on_client_socket_readable(self, conn: _Conn, client: Any) -> None:
        """A kept-alive connection's next request: its head is read here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_head(conn)

    def _on_head(self, conn: _Conn) -> None:
        try:
            if isinstance(conn.sock, ssl.SSLSocket) and not conn.data_ready:
                conn.sock.do_handshake()
                conn.data_ready = True  # handshake done (flag unused otherwise: heads are whole)
            while True:
                data = conn.sock.recv(MAX_HEAD_BYTES)
                if not data:
                    return self._drop_head(conn)
                conn.head += data
                pending = conn.sock.pending() if isinstance(conn.sock, ssl.SSLSocket) else 0
                if not pending:
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass  # more bytes to come
        except OSError:
            return self._drop_head(conn)
        if b"\r\n\r\n" in conn.head or b"\n\n" in conn.head:
            self._head_done(conn)
        elif len(conn.head) > MAX_HEAD_BYTES:
            self._drop_head(conn, "431 Request Header Fields Too Large")
        return None

    def _head_done(self, conn: _Conn) -> None:
        self.poller.unregister(conn.sock)
        self.reading_heads.discard(conn)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head.clear()
        conn.sock.setblocking(True)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _drop_head(self, conn: _Conn, status: str | None = None) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.reading_heads.discard(conn)
        if status is not None:
            try:
                conn.sock.send(_answer(status))
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading_heads if c.head_deadline <= now]:
            self._drop_head(conn, "408 Request Timeout" if conn.head else None)
