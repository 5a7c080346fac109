"""Ports for test servers, without "bind to port 0, close, use the number later".

A port number picked that way is free for anyone until the server binds it, and on a busy machine the
kernel hands it out again (another server on port 0, an outgoing connection). So:

* a server that can bind port 0 and report its port does that (``serving`` in test_products_api.py,
  Azurite's first start, the alert webhook);
* otherwise ``start_on_free_port`` holds the port (a bound, not listening socket) until right before the
  server starts, and starts again on a new port, a bounded number of times, if the server reports the
  port taken (``PortInUse``);
* a port that must refuse connections is ``closed_port()``: held bound for the whole block, so nothing
  can start listening on it meanwhile.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"
START_ATTEMPTS = 3


class PortInUse(RuntimeError):
    """The server could not bind its port: someone took it first."""


class PortReservation:
    """A TCP port bound by this process but not listening: the kernel gives it to nobody else (not to
    port-0 binds, not to outgoing connections), and connecting to it is refused."""

    def __init__(self, port: int = 0, host: str = HOST) -> None:
        self.host = host
        self._socket: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A just-stopped server leaves TIME_WAIT connections on its port; they must not block holding it.
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]

    def release(self) -> None:
        """Free the port for the server about to bind it. Idempotent."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def closed_port(host: str = HOST) -> Iterator[int]:
    """A port that refuses connections for the whole block."""
    with PortReservation(host=host) as reservation:
        yield reservation.port


def start_on_free_port(start: Callable[[int], T], *, attempts: int = START_ATTEMPTS, host: str = HOST) -> T:
    """``start(port)`` on a port held until just before the call; again on a new port when ``start``
    raises ``PortInUse``, at most ``attempts`` times."""
    failures: list[str] = []
    for _ in range(attempts):
        reservation = PortReservation(host=host)
        port = reservation.port
        reservation.release()  # right before the server binds it
        try:
            return start(port)
        except PortInUse as exc:
            failures.append(f"port {port}: {exc}")
    raise PortInUse(f"no free port after {attempts} attempts: " + "; ".join(failures))
