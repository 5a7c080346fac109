"""Engines with the settings each dialect needs for safe concurrent loads, and the one engine cache.

Building an engine never touches the schema unless asked: ``migrate=True`` (the default of the
helpers scripts and tests use) applies pending migrations once per process and URL. The warehouse
resource asks for an unmigrated engine in ``engine()`` and migrates at one documented point, its
``setup_for_execution`` (see ``resources/warehouse.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url

from sales_platform.core.warehouse import migrations

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()  # cache keys whose schema this process has brought up to date
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


def make_engine(url: str | URL, migrate: bool = True) -> Engine:
    """A new engine for ``url``; with ``migrate`` its schema is brought up to date first."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    if migrate:
        migrations.migrate(engine)
    return engine


def cached_engine(url: str | URL, *, migrate: bool = True, identity: str = "",
                  build: Callable[[], Engine] | None = None) -> Engine:
    """One engine per URL, login ``identity`` and process (engines hold pools and credentials).

    ``build`` makes the engine on first use (default: :func:`make_engine` without migrating);
    ``migrate`` applies pending migrations the first time this process asks for them for this key.
    """
    key = f"{identity}|{url.render_as_string(hide_password=False) if isinstance(url, URL) else url}"
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = build() if build else make_engine(url, migrate=False)
        if migrate and key not in _migrated:
            migrations.migrate(engine)
            _migrated.add(key)
        return engine


def dispose_all() -> None:
    """Close every cached engine's pool and forget them (the next call builds and migrates anew)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()
