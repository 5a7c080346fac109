"""The SQLite load's scratch file: rows and types arrive as written, nothing is left behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.sqlite_scratch import SqliteScratch


def _tables() -> list[pa.Table]:
    return [pa.table({"k": pa.array(["a", "b"]), "n": pa.array([1, None], pa.int64())}),
            pa.table({"k": pa.array([], pa.string()), "n": pa.array([], pa.int64())}),
            pa.table({"k": pa.array(["c"]), "n": pa.array([3], pa.int64())})]


def test_rows_move_with_their_types_and_the_scratch_file_is_removed(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", migrate=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, loaded_at TEXT)")
    with SqliteScratch(_tables(), temp_dir=str(tmp_path)) as scratch:
        folder = scratch.folder
        assert scratch.rows == 3
        with engine.connect() as conn, scratch.attached(conn), conn.begin():
            assert scratch.insert_into(conn, "t", ["k", "n"], "2024-03-02 00:00:00") == 3
    assert not folder.exists()
    with sqlite3.connect(tmp_path / "w.db") as raw:
        rows = raw.execute("SELECT k, n, typeof(n), loaded_at FROM t ORDER BY k").fetchall()
        # the pooled connection let the scratch file go
        assert [r[1] for r in raw.execute("PRAGMA database_list")] == ["main"]
    assert rows == [("a", 1, "integer", "2024-03-02 00:00:00"), ("b", None, "null", "2024-03-02 00:00:00"),
                    ("c", 3, "integer", "2024-03-02 00:00:00")]
    engine.dispose()


def test_a_key_collision_rolls_back_and_the_next_load_can_attach_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", migrate=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES ('b', 9)")
    with SqliteScratch(_tables(), temp_dir=str(tmp_path)) as scratch:
        with pytest.raises(sqlite3.IntegrityError):
            with engine.connect() as conn, scratch.attached(conn), conn.begin():
                scratch.insert_into(conn, "t", ["k", "n"])
        with engine.connect() as conn, scratch.attached(conn), conn.begin():
            conn.exec_driver_sql("DELETE FROM t")
            assert scratch.insert_into(conn, "t", ["k", "n"]) == 3
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT k, n FROM t ORDER BY k").all() == [("a", 1), ("b", None),
                                                                                 ("c", 3)]
    engine.dispose()


def test_a_failing_batch_leaves_no_scratch_folder(tmp_path):
    def broken():
        yield _tables()[0]
        raise ValueError("batch 2 unreadable")

    with pytest.raises(ValueError, match="batch 2 unreadable"):
        SqliteScratch(broken(), temp_dir=str(tmp_path))
    assert not list(tmp_path.glob("sales-load-*"))


def test_a_folder_left_by_a_killed_load_is_removed_by_the_next_one_and_a_young_one_kept(tmp_path):
    import os
    import time

    from sales_platform.core.warehouse import sqlite_scratch

    old, young = tmp_path / "sales-load-old", tmp_path / "sales-load-young"
    for folder in (old, young):
        folder.mkdir()
        (folder / "rows.db").write_bytes(b"x" * 10)
    stale = time.time() - sqlite_scratch.ABANDONED_AFTER_S - 60
    os.utime(old, (stale, stale))
    with SqliteScratch(_tables(), temp_dir=str(tmp_path)):
        pass
    assert not old.exists() and young.exists()


def test_a_folder_of_a_process_killed_with_sigkill_goes_at_the_next_load_and_a_live_one_stays(
        tmp_path):
    """The owner lock, not the age, tells: a killed holder's folder is removed at once (kill -9
    skips every cleanup), a live holder's folder is kept however old (a long range run holds the
    files it filled ahead)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from sales_platform.core.warehouse import sqlite_scratch

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pyarrow as pa\n"
         "from sales_platform.core.warehouse.sqlite_scratch import SqliteScratch\n"
         f"s = SqliteScratch([pa.table({{'k': ['a']}})], temp_dir={str(tmp_path)!r})\n"
         "print(s.folder, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    killed = Path(holder.stdout.readline().strip())
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with SqliteScratch(_tables(), temp_dir=str(tmp_path)) as live:
        ancient = time.time() - sqlite_scratch.ABANDONED_AFTER_S - 60
        os.utime(live.folder, (ancient, ancient))
        with SqliteScratch(_tables(), temp_dir=str(tmp_path)):
            assert not killed.exists()
            assert (live.folder / "rows.db").exists()


def test_an_ingest_error_names_the_folder_and_leaves_nothing_behind(tmp_path):
    tables = [_tables()[0], pa.table({"k": pa.array([[1, 2]])})]  # a type SQLite cannot bind
    with pytest.raises(OSError, match="cannot write the load's scratch file in .*nothing was loaded"):
        SqliteScratch(tables, temp_dir=str(tmp_path))
    assert not list(tmp_path.glob("sales-load-*"))


def test_a_failed_scratch_write_stops_the_prefetch_reader(tmp_path, monkeypatch):
    import threading
    import time
    from datetime import date, datetime

    import adbc_driver_manager
    import adbc_driver_manager.dbapi
    import pandas as pd

    from sales_platform.core.warehouse.loading import SalesLoader

    def full_disk(self, *args, **kwargs):
        raise adbc_driver_manager.dbapi.OperationalError(
            "IO: disk full", status_code=adbc_driver_manager.AdbcStatusCode.IO)

    monkeypatch.setattr(adbc_driver_manager.dbapi.Cursor, "adbc_ingest", full_disk)
    frames = [pd.DataFrame({
        "transaction_id": [f"T{b}-{i}" for i in range(3)], "customer_id": ["C"] * 3,
        "product_id": ["P"] * 3, "quantity": [1] * 3,
        "sale_ts": pd.to_datetime(["2024-03-01 10:00:00"] * 3), "source_file": ["f.csv"] * 3,
        "source_sha256": ["a" * 64] * 3, "source_row": [1, 2, 3]}) for b in range(20)]
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")

    def reader_alive() -> bool:
        return any(t.name == "sales-load-prefetch" and t.is_alive() for t in threading.enumerate())

    failure = None
    try:
        SalesLoader(engine).load_day(date(2024, 3, 1), lambda: iter(frames), datetime(2024, 3, 2))
    except OSError as exc:
        failure = exc  # its traceback keeps every frame alive, as a log handler or Dagster does
        assert "disk full; nothing was loaded" in str(exc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and reader_alive():
            time.sleep(0.05)
        assert not reader_alive()
    assert failure is not None
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sales").scalar_one() == 0
    engine.dispose()
