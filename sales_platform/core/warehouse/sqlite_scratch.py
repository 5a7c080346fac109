"""A SQLite load's rows in a private scratch file, written from Arrow by ADBC, then moved into the
warehouse with one ``INSERT ... SELECT`` in the load's transaction.

Python's ``sqlite3.executemany`` converts every value of every row under the GIL (4.1 s for a
1M-row day into the indexed ``sales`` on this project's machine). ADBC's SQLite driver binds the
Arrow batches in C and releases the GIL for the whole batch (the scratch file holds no index);
the ``INSERT ... SELECT`` then runs entirely inside SQLite. The scratch file is filled before the
load's transaction begins, so the write lock and the load lock are held for the move only.
``benchmarks/experiments.py --only I,J`` measures both.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Connection

SCHEMA = "sp_load"  # the scratch file's name in the warehouse connection while attached
TABLE = "rows"
PREFIX = "sales-load-"
OWNER = ".owner"  # locked (flock) by the process holding the folder, as long as it lives
ABANDONED_AFTER_S = 12 * 3600  # a folder without an owner file (older code) this old is abandoned


def _owner_gone(folder: Path, now: float) -> bool:
    """True when no live process holds the folder: its owner lock can be taken (the OS dropped it
    when the holder died, kill -9 included), or, without an owner file (one being created, or
    left by older code), it is very old. The owner file appears only once locked (``_own``), so a
    free lock never belongs to a folder still being set up."""
    try:
        fd = os.open(folder / OWNER, os.O_RDWR)
    except FileNotFoundError:
        return now - folder.stat().st_mtime > ABANDONED_AFTER_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # held: a live load's file, however long its run takes
    finally:
        os.close(fd)  # closing drops the lock taken here
    return True


def _own(folder: Path):
    """The folder's owner file, locked before it gets its name (the lock stays with the file)."""
    pending = folder / f"{OWNER}.new"
    handle = open(pending, "w")  # noqa: SIM115 - held by the caller until it removes the folder
    fcntl.flock(handle, fcntl.LOCK_EX)
    os.replace(pending, folder / OWNER)
    return handle


def _remove_abandoned(temp_dir: Path) -> None:
    """Scratch folders left by a killed process (kill -9 skips the cleanup: a load's file, or the
    files a run filled ahead for its next loads) are removed by the next load."""
    now = time.time()
    for folder in temp_dir.glob(f"{PREFIX}*"):
        try:
            if _owner_gone(folder, now):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed meanwhile by another load
            continue


def _disposable(cursor: object) -> None:
    """No rollback journal and no fsync for the scratch file: a load that fails or is killed
    throws the whole file away (the load itself has not begun), so no write to it needs to
    survive a crash. Saves the fsync of a ~240 MB file per 1M rows."""
    for pragma in ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF"):
        cursor.execute(pragma)
        cursor.fetchall()


class SqliteScratch:
    """The rows of one load (the staging table's columns, dates as text) in a temp file."""

    def __init__(self, tables: Iterable[pa.Table], temp_dir: str | None = None) -> None:
        import adbc_driver_sqlite.dbapi  # imported by SQLite loads only

        _remove_abandoned(Path(temp_dir or tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=temp_dir))
        self._owner = _own(self.folder)  # held until remove()
        self.path = self.folder / "rows.db"
        self.rows = 0
        self.columns: list[str] = []
        try:
            # autocommit: the PRAGMAs below cannot run inside a transaction
            with adbc_driver_sqlite.dbapi.connect(str(self.path), autocommit=True) as conn:
                with conn.cursor() as cursor:
                    _disposable(cursor)
                    for table in tables:
                        if not table.num_rows:
                            continue
                        self.columns = table.column_names
                        cursor.adbc_ingest(TABLE, table, mode="create_append")
                        self.rows += table.num_rows
        except BaseException as exc:
            self.remove()
            if isinstance(exc, adbc_driver_sqlite.dbapi.Error):  # disk full, no temp space, ...
                raise OSError(f"cannot write the load's scratch file in {self.folder.parent} "
                              f"(TMPDIR): {exc}; nothing was loaded") from exc
            raise

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._owner.close()  # the lock goes with the handle

    def __enter__(self) -> SqliteScratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @contextmanager
    def attached(self, conn: Connection) -> Iterator[None]:
        """The scratch file attached to ``conn``'s SQLite connection as ``sp_load``; to be entered
        before the transaction begins (SQLite refuses ATTACH inside one) and left after it ends."""
        raw = conn.connection.dbapi_connection
        if any(row[1] == SCHEMA for row in raw.execute("PRAGMA database_list")):
            raw.execute(f"DETACH DATABASE {SCHEMA}")  # left by a load whose DETACH failed
        raw.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (str(self.path),))
        try:
            yield
        except BaseException:
            try:  # the load's own error is the one to see, not a DETACH failing after it
                raw.execute(f"DETACH DATABASE {SCHEMA}")
            except Exception:  # noqa: BLE001 - the connection is dropped instead of reused
                conn.invalidate()
            raise
        raw.execute(f"DETACH DATABASE {SCHEMA}")

    def insert_into(self, conn: Connection, table: str, names: Sequence[str],
                    loaded_at: object = None) -> int:
        """Every scratch row into ``table`` (the columns ``names``, plus ``loaded_at`` with the
        given value when it is not None); returns the rows inserted. An IntegrityError of the
        target's keys is raised as for any insert."""
        if not self.rows:
            return 0
        quote = conn.dialect.identifier_preparer.quote_identifier
        targets = [*names, *(["loaded_at"] if loaded_at is not None else [])]
        values = [quote(n) for n in names] + (["?"] if loaded_at is not None else [])
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(
                f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in targets)}) "
                f"SELECT {', '.join(values)} FROM {SCHEMA}.{TABLE}",
                (loaded_at,) if loaded_at is not None else ())
        finally:
            cursor.close()
        return self.rows
