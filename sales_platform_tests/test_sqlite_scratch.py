"""The SQLite load's scratch file: rows and types arrive as written, nothing is left behind."""

from __future__ import annotations

import sqlite3

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


def test_an_ingest_error_names_the_folder_and_leaves_nothing_behind(tmp_path):
    tables = [_tables()[0], pa.table({"k": pa.array([[1, 2]])})]  # a type SQLite cannot bind
    with pytest.raises(OSError, match="cannot write the load's scratch file in .*nothing was loaded"):
        SqliteScratch(tables, temp_dir=str(tmp_path))
    assert not list(tmp_path.glob("sales-load-*"))
