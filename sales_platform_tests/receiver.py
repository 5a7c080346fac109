"""A real HTTP receiver for JSON POSTs (alert webhooks, load-commit hooks, OpenLineage), one per test.

Port 0: the kernel picks a free port and ``server_port`` tells it (see ports.py). ``status`` is what
it answers (set 500 to play a broken endpoint); only posts answered 2xx are kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer


class JsonReceiver(HTTPServer):
    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.posts: list[tuple[str, dict]] = []  # (path, body) of every accepted post
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def received(self) -> list[dict]:
        return [body for _, body in self.posts]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    server: JsonReceiver

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.status < 300:
            self.server.posts.append((self.path, body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        return None


@contextmanager
def json_receiver(status: int = 204) -> Iterator[JsonReceiver]:
    """A receiver serving in a thread, stopped afterwards even if the test fails."""
    server = JsonReceiver(status)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
