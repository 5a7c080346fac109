"""Engines with the settings each dialect needs for safe concurrent loads."""

from __future__ import annotations

import threading

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
SQLITE_BUSY_TIMEOUT_MS = 120_000
SQLITE_CACHE_KIB = 64 << 10  # per connection


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        from pathlib import Path

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread off: the pool hands a connection to one thread at a time (threaded runs)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                              "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe in WAL: a crash loses no commit
        cursor.execute("PRAGMA temp_store=FILE")
        # a day's load touches the primary-key and sale_date index pages of 1M rows: with the
        # default 2 MiB cache they spill to the WAL before the commit
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # IMMEDIATE takes the write lock up front: concurrent writers wait (busy_timeout)
        # instead of failing with "database is locked" when a read upgrades to a write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str | URL) -> Engine:
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    from sales_platform.core.warehouse.migrations import migrate

    migrate(engine)
    return engine


def cached_engine(url: str | URL) -> Engine:
    """One engine per URL and process (engines hold pools; building one per call is wasteful)."""
    key = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    with _lock:
        if key not in _engines:
            _engines[key] = make_engine(url)
        return _engines[key]


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
