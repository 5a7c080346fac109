"""Shared fixtures: temp data dirs, a fixed test key, and the warehouse backends (SQLite, PostgreSQL).

Also the one place that decides what a missing service means: ``skip_or_fail`` skips on a laptop and
fails in CI, and in CI any skip not matched by ``skip_allowlist.txt`` fails the session.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from sales_platform.core.crypto import Keyring, generate_key

pytest_plugins = ["sales_platform_tests.azurite", "sales_platform_tests.e2e"]

PG_URL_VARIABLE = "SALES_PLATFORM_TEST_PG_URL"
PG_ADMIN_URL = os.environ.get(PG_URL_VARIABLE, "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_CONNECT_TIMEOUT_S = 3  # libpq's minimum is 2
SKIP_ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")
TRUTHY = frozenset({"true", "1", "yes", "on"})


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """CI=true, CI=1, CI=yes, CI=on, in any case: the spellings CI systems and people use."""
    return environ.get("CI", "").strip().lower() in TRUTHY


IN_CI = in_ci()
# The suite is a demo deployment (as `make run`): tools holding only the master key read what the
# platform wrote. Tests of production behaviour unset it (test_keys.py).
os.environ.setdefault("SALES_PLATFORM_DEMO", "1")


def skip_or_fail(reason: str) -> None:
    """Tests that need a server skip on a laptop without it; in CI they must run, so they fail."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
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


# ---- PostgreSQL ----------------------------------------------------------------------------------------

def pg_admin_url() -> URL:
    return make_url(PG_ADMIN_URL)


def pg_url(database: str) -> str:
    """The configured server and login with another database, as a URL string (password kept)."""
    return pg_admin_url().set(database=database).render_as_string(hide_password=False)


def pg_dsn(url: str | URL = PG_ADMIN_URL) -> str:
    """A libpq/psycopg connection string for an SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_address(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


@functools.cache
def pg_unavailable_reason() -> str | None:
    """Why the PostgreSQL server of SALES_PLATFORM_TEST_PG_URL cannot be used, or None if it can.

    Distinguishes a server that is not reachable (host:port), a database that is missing, and a login
    that is refused. Never shows the password. Probed once per session, with a short timeout.
    """
    import psycopg

    url = pg_admin_url()
    where = _pg_address(url)
    if url.host and not url.host.startswith("/"):  # TCP, not a Unix socket folder
        try:
            with socket.create_connection((url.host, url.port or 5432), timeout=PG_CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            return f"PostgreSQL server not reachable at {where} ({PG_URL_VARIABLE}): {exc}"
    try:
        with psycopg.connect(pg_dsn(url), connect_timeout=PG_CONNECT_TIMEOUT_S):
            return None
    except psycopg.Error as exc:
        message = " ".join(str(exc).split()).removeprefix("connection failed: ")
        lowered = message.lower()
        if any(s in lowered for s in ("connection refused", "no such file", "timeout expired", "resolve host",
                                      "could not connect", "network is unreachable")):
            return f"PostgreSQL server not reachable at {where} ({PG_URL_VARIABLE}): {message}"
        if "database" in lowered and "does not exist" in lowered:
            return f"PostgreSQL at {where}: database {url.database!r} missing ({PG_URL_VARIABLE}): {message}"
        if any(s in lowered for s in ("authentication failed", "role", "pg_hba.conf", "password", "auth")):
            return (f"PostgreSQL at {where}: authentication failed for user {url.username!r} "
                    f"({PG_URL_VARIABLE}): {message}")
        return f"PostgreSQL server not usable at {where} ({PG_URL_VARIABLE}): {message}"


def _pg_available() -> bool:
    return pg_unavailable_reason() is None


def require_postgres() -> None:
    """Skip (laptop) or fail (CI) with the reason the configured PostgreSQL cannot be used."""
    reason = pg_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)


@dataclass
class Backend:
    name: str
    url: str


@contextmanager
def fresh_warehouse(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a fresh, empty warehouse: a SQLite file in ``folder``, or a new PostgreSQL
    database dropped afterwards."""
    from sqlalchemy import create_engine, text

    from sales_platform.core.warehouse.engine import dispose_all

    if kind == "sqlite":
        yield f"sqlite:///{folder / 'warehouse.db'}"
        dispose_all()
        return
    require_postgres()
    name = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url(name)
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path: Path):
    """A fresh, empty warehouse for one test (see ``fresh_warehouse``)."""
    with fresh_warehouse(request.param, tmp_path) as url:
        yield Backend(request.param, url)


# ---- skips: allowed ones only, in CI -------------------------------------------------------------------

def load_skip_allowlist(path: Path = SKIP_ALLOWLIST) -> list[str]:
    """Node-id patterns (fnmatch) allowed to skip in CI: one a line, ``#`` starts a comment."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def skip_allowed(nodeid: str, patterns: list[str]) -> bool:
    """``path.py::*`` also covers a skip of the whole module (its node id is ``path.py``)."""
    return any(fnmatch.fnmatchcase(nodeid, p) or fnmatch.fnmatchcase(f"{nodeid}::", p) for p in patterns)


_SKIPS_KEY = pytest.StashKey[dict[str, str]]()


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipAudit:
    """Records every skip; in CI a skip not on the allow-list fails the session, else one summary line."""

    def __init__(self, in_ci: bool, patterns: list[str]) -> None:
        self.in_ci = in_ci
        self.patterns = patterns
        self.skips: dict[str, str] = {}

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):  # an xfail is reported as skipped: not one
            self.skips.setdefault(report.nodeid, _skip_reason(report))

    def disallowed(self) -> dict[str, str]:
        return {n: r for n, r in self.skips.items() if not skip_allowed(n, self.patterns)}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.in_ci and self.disallowed() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skips:
            return
        disallowed = self.disallowed()
        if not self.in_ci:
            terminalreporter.write_line(f"skips: {len(self.skips)} ({len(self.skips) - len(disallowed)} "
                                        f"on {SKIP_ALLOWLIST.name}, {len(disallowed)} that CI would fail)")
        elif disallowed:
            terminalreporter.write_sep("=", f"{len(disallowed)} skipped test(s) not on {SKIP_ALLOWLIST.name}:"
                                            " CI fails the session", red=True)
            for nodeid, reason in disallowed.items():
                terminalreporter.write_line(f"SKIP NOT ALLOWED {nodeid} - {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipAudit(IN_CI, load_skip_allowlist()), "sales-platform-skip-audit")
