"""Transient database errors: recognise them, retry them with backoff, describe them (no Dagster).

A transient error (deadlock victim, failover, throttling, dropped connection, busy SQLite file)
goes away if the same work is tried again later, so a whole-transaction retry is safe for
idempotent work such as a partition load. Anything else is re-raised at once.
"""

from __future__ import annotations

import random
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from sales_platform.core.redact import redact_text, redact_url

T = TypeVar("T")

# SQL Server / Azure SQL error numbers worth retrying (Microsoft's transient-fault list, plus
# the deadlock victim and the TCP/named-pipe errors of a dropped connection).
MSSQL_TRANSIENT_NUMBERS = frozenset({
    1205,    # chosen as deadlock victim
    40613,   # database not currently available (failover, serverless resume)
    40501,   # service busy
    40197,   # service error processing the request (reconfiguration)
    49918, 49919, 49920,  # not enough resources / too many operations in progress
    4060,    # cannot open database (often mid-failover on Azure)
    4221,    # read-only secondary login waiting on redo
    10928, 10929,  # resource limit reached / minimum guarantee not met
    10053, 10054, 10060,  # connection aborted / reset / timed out
    233,     # no process on the other end of the pipe
    64,      # specified network name no longer available
    -2,      # timeout expired
})
TRANSIENT_SQLSTATES = frozenset({
    "40001",  # serialization failure / deadlock (SQL Server and PostgreSQL)
    "40P01",  # PostgreSQL deadlock detected
    "57P01", "57P02", "57P03",  # PostgreSQL admin shutdown, crash shutdown, starting up
    "53300",  # PostgreSQL too many connections
    "HYT00", "HYT01",  # ODBC login / query / connection timeout
})
# Class 08 is "connection exception"; a protocol violation is a bug, not bad luck.
NOT_TRANSIENT_CONNECTION_STATES = frozenset({"08P01"})
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
_SQLITE_BUSY_TEXT = ("database is locked", "database is busy", "database table is locked")
# A certificate that fails verification comes back as 08001 but will fail the same way again.
_PERMANENT_TEXT = ("certificate verify failed", "certificate chain", "ssl provider: the certificate")

_BRACKET_STATE = re.compile(r"\[([0-9A-Z]{5})\]")
# pyodbc renders each diagnostic as "<message> (<native error>) (<ODBC function>)".
_NATIVE_NUMBER = re.compile(r"\s\((-?\d+)\)(?=\s*(?:\(SQL\w+\)|;|$))")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


@dataclass
class ErrorCodes:
    """What a database error says about itself, from every exception in its chain."""

    sqlstates: set[str] = field(default_factory=set)
    numbers: set[int] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)


def _chain(exc: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """``exc``, the DBAPI error SQLAlchemy wraps, and their causes (each once)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < limit:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]


def error_codes(exc: BaseException) -> ErrorCodes:
    codes = ErrorCodes()
    for item in _chain(exc):
        if isinstance(item, sa_exc.StatementError):
            continue  # its text repeats the wrapped error plus SQL and parameters
        texts = [a for a in item.args if isinstance(a, str) and not _SQLSTATE.fullmatch(a)]
        message = " ".join(texts) or str(item)
        codes.messages.append(message)
        for state in (getattr(item, "sqlstate", None), getattr(item, "pgcode", None)):
            if state:
                codes.sqlstates.add(state)
        first = item.args[0] if item.args else None
        if isinstance(first, str) and _SQLSTATE.fullmatch(first):
            codes.sqlstates.add(first)  # pyodbc: args == (sqlstate, message)
        elif isinstance(first, int) and not isinstance(first, bool):
            codes.numbers.add(first)  # pymssql: args == (number, message)
        codes.sqlstates.update(_BRACKET_STATE.findall(message))
        codes.numbers.update(int(n) for n in _NATIVE_NUMBER.findall(message))
    return codes


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same work later may well succeed."""
    codes = error_codes(exc)
    text = " ".join(codes.messages).lower()
    if any(hint in text for hint in _PERMANENT_TEXT):
        return False
    if codes.numbers & MSSQL_TRANSIENT_NUMBERS or codes.sqlstates & TRANSIENT_SQLSTATES:
        return True
    if any(s.startswith("08") and s not in NOT_TRANSIENT_CONNECTION_STATES for s in codes.sqlstates):
        return True
    return any(_transient_by_type(item) for item in _chain(exc))


def _transient_by_type(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True  # the dialect recognised a disconnect
    if isinstance(exc, sa_exc.TimeoutError):
        return True  # pool checkout timed out: every connection was busy
    psycopg = sys.modules.get("psycopg")  # loaded if it raised: not imported for SQLite runs
    if psycopg is not None and isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return True  # no SQLSTATE: the connection itself failed or was lost
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)  # may be extended (SQLITE_BUSY_SNAPSHOT)
        if code is not None and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED):
            return True
        return any(t in str(exc).lower() for t in _SQLITE_BUSY_TEXT)
    return isinstance(exc, ConnectionError)


def backoff_delay(attempt: int, base_delay_s: float, max_delay_s: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random.

    The fixed half keeps a failover (often 10-30 s) from being hammered; the random half keeps
    concurrent partitions from retrying in lockstep.
    """
    step = min(max_delay_s, base_delay_s * 2 ** (attempt - 1))
    return step / 2 + rand() * step / 2


def run_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
    classify: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, called again after transient errors, at most ``attempts`` times in all.

    ``on_retry(attempt, error, delay_s)`` runs before each wait. ``fn`` must redo the whole unit
    of work (open its own transaction), since the failed attempt was rolled back.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not classify(exc):
                raise
            delay = backoff_delay(attempt, base_delay_s, max_delay_s)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def describe_db_error(exc: BaseException, display_url: str, partition: str | None) -> str:
    """One line for logs and run failures: what failed, where, whether retrying could help."""
    codes = error_codes(exc)
    kind = "transient" if is_transient(exc) else "permanent"
    root = next((i for i in _chain(exc) if not isinstance(i, sa_exc.StatementError)), exc)
    details = [f"SQLSTATE {s}" for s in sorted(codes.sqlstates)]
    details += [f"error {n}" for n in sorted(codes.numbers)]
    message = " ".join((codes.messages[0] if codes.messages else str(root)).split())
    if len(message) > 500:
        message = message[:497] + "..."
    where = f"partition {partition}" if partition else "no partition"
    suffix = f" [{', '.join(details)}]" if details else ""
    return redact_text(f"Database error ({kind}) for {where} on {redact_url(display_url)}: "
                       f"{type(root).__name__}: {message}{suffix}")

