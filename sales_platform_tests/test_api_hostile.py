"""Hostile clients against the API as deployed (gunicorn in its own process, raw sockets): a body
cut before its end, slow clients, huge validation payloads, reads without the token."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sales_platform.api import products as products_api
from sales_platform.core import settings
from sales_platform_tests.api_server import gunicorn_api
from sales_platform_tests.oracle import csv_bytes

TOKEN = "hostile-token-91be2c"
LIMIT = 1 << 20
HEAD_TIMEOUT_S, BODY_TIMEOUT_S, PER_CLIENT = 3, 2, 24


MASTER: list[int] = []  # the served gunicorn's master process


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir): the API with the uploads configured like the platform."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    (data / "incoming").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.DATA_DIR, str(data))
        mp.setenv(settings.DB_URL, f"sqlite:///{root / 'w.db'}")
        mp.setenv(settings.UPLOAD_MAX_BYTES, str(LIMIT))
        mp.setenv(settings.API_HEADER_TIMEOUT_S, str(HEAD_TIMEOUT_S))
        mp.setenv(settings.API_BODY_TIMEOUT_S, str(BODY_TIMEOUT_S))
        mp.setenv(settings.API_MAX_CONNECTIONS_PER_CLIENT, str(PER_CLIENT))
        MASTER.clear()
        with gunicorn_api(root / "products.sqlite", TOKEN, pids=MASTER) as base_url:
            yield base_url, data


def drop_zone(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "incoming").iterdir())


def exchange(base_url: str, *parts: bytes, timeout: float = 20.0) -> bytes:
    """Send the parts on one connection, close our side, return all the server answered."""
    where = urlsplit(base_url)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        for part in parts:
            sock.sendall(part)
        sock.shutdown(socket.SHUT_WR)  # the client is gone: no more bytes will come
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def upload_head(name: str, extra: str) -> bytes:
    return (f"POST /uploads?name={name} HTTP/1.1\r\nHost: x\r\nX-API-Token: {TOKEN}\r\n"
            f"Content-Type: text/csv\r\n{extra}\r\n").encode()


FILE = csv_bytes([[f"T{i}", "C1", "P1", "125", "2024-03-01T10:00:00"] for i in range(20)])


# --- 1. a body shorter than declared, or a chunked body without its end ------------------------

def test_a_body_cut_before_its_declared_length_is_refused_and_leaves_nothing(served):
    base_url, data = served
    answer = exchange(base_url, upload_head("cut.csv", f"Content-Length: {len(FILE)}\r\n"),
                      FILE[:-3])  # "...,125\n" arrives as "...,1"
    assert status_of(answer) == 400, answer
    assert b"declared" in answer and b"cut.csv" in answer
    assert drop_zone(data) == []


def test_a_chunked_body_cut_before_its_last_chunk_is_refused_and_leaves_nothing(served):
    base_url, data = served
    chunk = FILE[:-3]
    answer = exchange(base_url, upload_head("chunked.csv", "Transfer-Encoding: chunked\r\n"),
                      f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")  # no terminating 0 chunk
    assert status_of(answer) == 400, answer
    assert b"before its end" in answer
    assert drop_zone(data) == []


def test_a_whole_upload_is_still_taken(served):
    base_url, data = served
    whole = exchange(base_url, upload_head("whole.csv", f"Content-Length: {len(FILE)}\r\n"), FILE)
    assert status_of(whole) == 201, whole
    chunked = exchange(base_url, upload_head("whole2.csv", "Transfer-Encoding: chunked\r\n"),
                       f"{len(FILE):x}\r\n".encode() + FILE + b"\r\n0\r\n\r\n")
    assert status_of(chunked) == 201, chunked
    assert (data / "uploads" / "whole.csv").read_bytes() == FILE  # the upload service's own folder
    for name in drop_zone(data):
        (data / "incoming" / name).unlink()


# --- 3. reads that reveal plaintext ids need the token; no token, no start ----------------------

def test_reads_of_the_catalogue_need_the_token(served):
    base_url, _ = served
    auth = {"X-API-Token": TOKEN}
    item = {"product_id": "P-SECRET-1", "name": "Lamp", "category": "home", "unit_price": 9.5,
            "updated_at": "2024-03-01T12:00:00"}
    assert requests.put(f"{base_url}/products", json=[item], headers=auth, timeout=10).ok
    for path in ("/products", "/products/P-SECRET-1", "/products/versions",
                 f"/uploads/{'a' * 64}"):
        refused = requests.get(f"{base_url}{path}", timeout=10)
        assert refused.status_code == 401, (path, refused.text)
        assert "P-SECRET-1" not in refused.text
    assert requests.get(f"{base_url}/products", headers=auth, timeout=10).json()["total"] == 1
    assert requests.get(f"{base_url}/health", timeout=10).status_code == 200  # a count, no ids


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """serve() up to the point where gunicorn would start; records that it would have."""
    from gunicorn.app.base import BaseApplication

    started: list[str] = []
    monkeypatch.setattr(BaseApplication, "run", lambda self: started.append("run"))
    monkeypatch.delenv(settings.API_DEV_NO_TOKEN, raising=False)
    return started


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_api_does_not_start_without_a_token(no_server, tmp_path, host):
    with pytest.raises(settings.SettingError, match=settings.API_TOKEN):
        products_api.serve(host, 0, tmp_path / "s.sqlite", None)
    assert no_server == []


def test_the_development_flag_starts_it_on_loopback_only_and_says_so(no_server, tmp_path,
                                                                     monkeypatch, caplog):
    monkeypatch.setenv(settings.API_DEV_NO_TOKEN, "1")
    with pytest.raises(settings.SettingError, match="127.0.0.1"):
        products_api.serve("0.0.0.0", 0, tmp_path / "s.sqlite", None)
    assert no_server == []
    with caplog.at_level("WARNING"):
        products_api.serve("127.0.0.1", 0, tmp_path / "s.sqlite", None)
    assert no_server == ["run"]
    assert "DEVELOPMENT MODE" in caplog.text and settings.API_DEV_NO_TOKEN in caplog.text


# --- 2. validation memory bounded by the body limit -----------------------------------------------

def worker_peak_rss_kb() -> int:
    """The peak resident size of the served API's worker (Linux /proc), in KiB."""
    master = MASTER[0]
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children  # one worker (api_server starts workers=1)
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


HOSTILE_LISTS = {"empty objects": b"[" + b",".join([b"{}"] * 1_600_000) + b"]",
                 "numbers": b"[" + b",".join([b"1"] * 2_400_000) + b"]"}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("body", HOSTILE_LISTS.values(), ids=HOSTILE_LISTS.keys())
def test_a_huge_hostile_list_is_refused_with_bounded_memory(served, body):
    base_url, _ = served
    assert 4_500_000 < len(body) < 5_000_000  # under the 5 MB body limit: it is parsed
    before = worker_peak_rss_kb()
    answer = requests.put(f"{base_url}/products", data=body, timeout=30,
                          headers={"Content-Type": "application/json", "X-API-Token": TOKEN})
    assert answer.status_code == 400, answer.text[:300]
    assert "validation stops at the first 100" in answer.json()["error"]
    assert len(answer.json()["details"]) == 100
    growth_mb = (worker_peak_rss_kb() - before) / 1024
    assert growth_mb < 100, f"the worker's peak RSS grew by {growth_mb:.0f} MB"


# --- 2. slow clients: heads read without a thread, timeouts, connections per client -------------

def connect(base_url: str) -> socket.socket:
    where = urlsplit(base_url)
    return socket.create_connection((where.hostname, where.port), timeout=10)


def test_ten_clients_trickling_headers_do_not_stop_the_api(served):
    base_url, _ = served
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    sockets = [connect(base_url) for _ in range(10)]
    stop = threading.Event()

    def trickle() -> None:  # one byte per socket every 0.2 s, never the end of the head
        for position in range(len(head)):
            for sock in sockets:
                try:
                    sock.send(head[position:position + 1])
                except OSError:
                    pass
            if stop.wait(0.2):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.0)  # every slow socket has sent bytes: gthread would have given each a thread
        for _ in range(3):
            health = requests.get(f"{base_url}/health", timeout=3)  # availability bound
            assert health.status_code == 200
        # a head not complete in time is answered 408 and closed
        sockets[0].settimeout(HEAD_TIMEOUT_S + 5)
        answer = sockets[0].recv(1024)
        assert answer == b"" or status_of(answer) == 408, answer
    finally:
        stop.set()
        sender.join(timeout=5)
        for sock in sockets:
            sock.close()


def test_a_stalled_upload_body_is_refused_after_the_body_timeout(served):
    base_url, data = served
    with connect(base_url) as sock:
        sock.sendall(upload_head("stall.csv", f"Content-Length: {len(FILE)}\r\n") + FILE[:50])
        sock.settimeout(BODY_TIMEOUT_S + 10)
        answer = sock.recv(65536)  # no more bytes sent: the server gives up, not the client
    assert status_of(answer) == 400, answer
    assert drop_zone(data) == []


def test_connections_per_client_are_bounded(served):
    base_url, _ = served
    held = [connect(base_url) for _ in range(PER_CLIENT)]
    try:
        answers = []
        for _ in range(20):  # until the server has counted the held connections (a loaded machine)
            time.sleep(0.25)
            with connect(base_url) as extra:
                answer = extra.recv(1024)
            answers.append(answer)
            if status_of(answer) == 429:
                break
        assert status_of(answers[-1]) == 429, answers
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)  # the server sees them close
    assert requests.get(f"{base_url}/health", timeout=5).status_code == 200


# --- 4. names: control and format characters, names too long in bytes --------------------------

@pytest.mark.parametrize("name", ["shop\nERROR forged.csv", "\x1b[31mred.csv", "x\u202ecsv.csv",
                                  "zero\u200bwidth.csv", "line\u2028sep.csv", "\u5b57" * 96 + ".csv"])
def test_hostile_upload_names_are_400_and_leave_nothing(served, name):
    base_url, data = served
    answer = requests.post(f"{base_url}/uploads", params={"name": name}, data=FILE, timeout=10,
                           headers={"X-API-Token": TOKEN, "Content-Type": "text/csv"})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert not any(ch in message for ch in "\n\x1b\u202e\u200b\u2028")
    assert "control/format characters" in message or "bytes" in message
    assert drop_zone(data) == []
