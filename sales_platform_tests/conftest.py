"""Shared fixtures: temp data dirs, a fixed test key, and the warehouse backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from sales_platform.core.crypto import Keyring, generate_key

pytest_plugins = ["sales_platform_tests.azurite", "sales_platform_tests.e2e"]

PG_ADMIN_URL = os.environ.get("SALES_PLATFORM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Tests that need a server skip on a laptop without it; in CI they must run, so they fail."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def keyring(key: str) -> Keyring:
    return Keyring.from_secrets(key)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "incoming").mkdir(parents=True)
    return folder


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3):
            return True
    except Exception:
        return False


@dataclass
class Backend:
    name: str
    url: str


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path: Path):
    """A fresh, empty warehouse: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'warehouse.db'}")
        return
    if not _pg_available():
        skip_or_fail("PostgreSQL not reachable at 127.0.0.1:5432")
    from sqlalchemy import create_engine, text

    from sales_platform.core.warehouse.engine import dispose_all

    name = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Backend("postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
