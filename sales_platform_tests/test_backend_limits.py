"""Every documented limit at its edge stores the same on SQLite and PostgreSQL (and compiles for SQL
Server): the longest id in 4-byte characters, a quantity at the largest SALES_PLATFORM_MAX_QUANTITY
and their sums over 2^31, a file over 2 GiB, the longest name a drop can be shown with, NUL in an
evolved column and in a rejected row. Before the column sizes were derived from the limits,
PostgreSQL refused each of these and the failure stopped the run (docs/configuration.md, Limits).

Expectations come from the inputs and the documented formats (token = base64url of 5 + 16 + the
id's UTF-8 bytes; NUL stored as U+FFFD; a name as printable_name shows it), not from the platform.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateIndex, CreateTable

from sales_platform.core import preflight, settings
from sales_platform.core.crypto import Tokenizer, generate_key
from sales_platform.core.limits import (
    BIGINT_MAX,
    MSSQL_CLUSTERED_KEY_BYTES,
    MSSQL_NONCLUSTERED_KEY_BYTES,
    SHOWN_NAME_LENGTH,
    stored_name,
)
from sales_platform.core.warehouse import tables as t
from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.ledger import QUARANTINED, record_not_landed
from sales_platform.core.warehouse.migrations import migrate
from sales_platform.core.warehouse.widen import WIDENED, mssql_statements
from sales_platform_tests.boundary_support import module_backend, range_run
from sales_platform_tests.conftest import pg_url, require_postgres
from sales_platform_tests.helpers import HEADER, resources_for

DAY = "2024-03-01"
MAX_QUANTITY = settings.MAX_QUANTITY_LIMIT  # 10^15, the largest SALES_PLATFORM_MAX_QUANTITY
# 64 characters of 4 UTF-8 bytes each (CJK Extension B: no case, no decomposition), per id column
EDGE_TID = "".join(chr(0x20000 + i) for i in range(64))
EDGE_CUSTOMER = "".join(chr(0x20100 + i) for i in range(64))
EDGE_PRODUCT = "".join(chr(0x20200 + i) for i in range(64))
LANDED_NAME = "abc" + "\U0001F600" * 62 + ".csv"  # 255 bytes in UTF-8: the longest a file system allows
SHORT_BAD_NAME = b"\xff" * 200 + b".csv"  # not UTF-8: shown as 804 characters, stored whole
LONG_BAD_NAME = b"\xfe" * 251 + b".csv"  # 255 bytes: shown as 1008 characters, cut
HUGE = 2**31 + 1  # bytes: over a 32-bit column
PADDING = 66_000  # characters before the NULs: the landing's binary probe reads the first 64 KiB


@dataclass(frozen=True)
class Row:
    tid: str
    customer: str
    product: str
    quantity: str
    note: str


GOOD = [Row("PAD", "C0", "P0", "1", "x" * PADDING),
        Row(EDGE_TID, EDGE_CUSTOMER, EDGE_PRODUCT, str(MAX_QUANTITY), "a\x00b"),
        Row("T2", "C2", "P2", str(MAX_QUANTITY), ""),
        Row("T3", "C2", "P2", str(MAX_QUANTITY), "")]
REJECTED = Row("R1", "C1", "P1", "1\x00", "c\x00d")  # quantity_not_numeric


def _csv(rows: list[Row]) -> bytes:
    lines = [",".join([*HEADER, "note"])]
    lines += [",".join([r.tid, r.customer, r.product, r.quantity, f"{DAY}T10:00:00", r.note]) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _drop(incoming: Path, name: bytes, content: bytes) -> None:
    fd = os.open(os.fsencode(incoming) + b"/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


@dataclass
class Run:
    engine: Engine
    tokenizer: Tokenizer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def run(request, tmp_path_factory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp(f"limits_{request.param}")
    data_dir = folder / "data"
    incoming = data_dir / "incoming"
    incoming.mkdir(parents=True)
    _drop(incoming, LANDED_NAME.encode("utf-8"), _csv([*GOOD, REJECTED]))
    _drop(incoming, SHORT_BAD_NAME, _csv(GOOD[1:2]))
    _drop(incoming, LONG_BAD_NAME, _csv(GOOD[1:2]))
    with open(incoming / "huge.csv", "wb") as handle:  # sparse: no 2 GiB written
        handle.truncate(HUGE)
    with module_backend(request.param, folder) as url:
        resources = resources_for(data_dir, url, generate_key(), max_quantity=MAX_QUANTITY,
                                  max_file_bytes=HUGE - 1)
        result = range_run(resources, DAY, DAY)
        assert result.success
        yield Run(make_engine(url), Tokenizer(resources["platform"].keyring()))


def _one(engine: Engine, statement) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(statement).one()


def test_the_longest_ids_in_4_byte_characters_load_as_tokens(run: Run):
    s = t.sales
    row = _one(run.engine, select(s.c.transaction_id, s.c.customer_id, s.c.product_id)
               .where(s.c.transaction_id == EDGE_TID))
    for token, plain, column in ((row.customer_id, EDGE_CUSTOMER, "customer_id"),
                                 (row.product_id, EDGE_PRODUCT, "product_id")):
        # base64url (4 characters per 3 bytes, no padding) of prefix + SIV + the id's bytes
        assert len(token) == -(-(5 + 16 + len(plain.encode("utf-8"))) * 4 // 3) == 370
        assert run.tokenizer.decrypt(token, column) == plain
    assert t.TOKEN_LENGTH == 370


def test_quantities_at_max_quantity_and_their_sum_over_2_pow_31(run: Run):
    s, daily = t.sales, t.agg_sales_daily
    quantities = [int(r.quantity) for r in GOOD]
    with run.engine.connect() as conn:
        loaded = sorted(conn.execute(select(s.c.quantity)).scalars())
        totals = conn.execute(select(daily.c.transactions, daily.c.total_quantity)).one()
    assert loaded == sorted(quantities)
    assert tuple(totals) == (len(GOOD), sum(quantities)) and sum(quantities) > 2**31
    by_product = _one(run.engine, select(t.agg_sales_by_product.c.total_quantity)
                      .where(t.agg_sales_by_product.c.product_token
                             == run.tokenizer.encrypt("P2", "product_id")))
    assert by_product.total_quantity == 2 * MAX_QUANTITY


def test_nul_in_an_evolved_column_and_in_a_rejected_row_is_stored_the_same(run: Run):
    s, r = t.sales, t.sales_rejects
    note = sa.column("note")
    with run.engine.connect() as conn:
        stored = conn.execute(select(note).select_from(s).where(s.c.transaction_id == EDGE_TID)).scalar_one()
        reject = conn.execute(select(r.c.reason, r.c.quantity, r.c.extras)
                              .where(r.c.transaction_id == REJECTED.tid)).one()
    assert stored == "a\ufffdb"  # U+0000 -> U+FFFD, on every backend
    assert (reject.reason, reject.quantity) == ("quantity_not_numeric", "1\ufffd")
    assert json.loads(reject.extras) == {"note": REJECTED.note}  # JSON escapes it: kept exactly


def test_the_longest_landed_name_and_shown_names_of_drops_that_did_not_land(run: Run):
    ledger = t.file_ledger
    with run.engine.connect() as conn:
        rows = {r.file_name: r for r in conn.execute(select(ledger.c.file_name, ledger.c.status,
                                                            ledger.c.size_bytes))}
        counted = conn.execute(select(t.file_day_counts.c.file_name)).scalars().all()
    assert rows[LANDED_NAME].status == "loaded" and counted == [LANDED_NAME]
    short = "\\xff" * 200 + ".csv"  # printable_name: \xNN per undecodable byte
    long = "\\xfe" * 251 + ".csv"
    assert len(short) <= SHOWN_NAME_LENGTH < len(long)
    cut = long[:SHOWN_NAME_LENGTH - 14]
    assert rows[short].status == QUARANTINED
    (stored,) = [name for name in rows if name.startswith(cut)]
    assert len(stored) == SHOWN_NAME_LENGTH and stored[len(cut):].startswith("…#")
    assert rows[stored].status == QUARANTINED
    assert (rows["huge.csv"].status, rows["huge.csv"].size_bytes) == (QUARANTINED, HUGE)


def test_a_file_size_at_the_bigint_limit_is_recorded(run: Run):
    record_not_landed(run.engine, "largest.csv", "", BIGINT_MAX, QUARANTINED, "too large", None,
                      "test", datetime(2024, 3, 2))
    size = _one(run.engine, select(t.file_ledger.c.size_bytes)
                .where(t.file_ledger.c.file_name == "largest.csv")).size_bytes
    assert size == BIGINT_MAX


def test_revenue_of_max_quantity_at_the_highest_unit_price_fits(run: Run):
    price = Decimal(10) ** 10 - Decimal("0.01")  # the largest Numeric(12, 2) unit price
    revenue = MAX_QUANTITY * price * 1000  # a thousand such sales in a day
    daily = t.agg_sales_daily
    with run.engine.begin() as conn:
        conn.execute(insert(daily).values(sale_date=date(2024, 3, 9), transactions=1000,
                                          total_quantity=1000 * MAX_QUANTITY, total_revenue=revenue,
                                          refreshed_at=datetime(2024, 3, 10)))
    stored = _one(run.engine, select(daily.c.total_revenue).where(daily.c.sale_date == date(2024, 3, 9)))
    if run.engine.dialect.name == "postgresql":  # SQLite keeps NUMERIC as a float
        assert stored.total_revenue == revenue


# ---- names cut for the ledger -------------------------------------------------------------------

def test_stored_name_keeps_names_that_fit_and_cuts_longer_ones_apart():
    fits = "é" * SHOWN_NAME_LENGTH
    assert stored_name(fits) == fits
    astral = "\U0001F600" * SHOWN_NAME_LENGTH  # two UTF-16 units each: SQL Server's count
    one, two = stored_name(astral + "a"), stored_name(astral + "b")
    assert one != two and len(one.encode("utf-16-le")) // 2 <= SHOWN_NAME_LENGTH


# ---- the pre-flight refuses a limit the backend's column cannot store ---------------------------

def test_preflight_refuses_a_max_file_bytes_over_bigint(monkeypatch):
    monkeypatch.delenv(settings.DB_URL, raising=False)
    monkeypatch.setenv(settings.MAX_FILE_BYTES, str(BIGINT_MAX))
    assert preflight.check_stored_limits() == []
    monkeypatch.setenv(settings.MAX_FILE_BYTES, str(BIGINT_MAX + 1))
    (problem,) = preflight.check_stored_limits()
    assert problem.variable == settings.MAX_FILE_BYTES and "file_ledger.size_bytes" in problem.message


def test_preflight_refuses_a_max_quantity_a_32_bit_column_cannot_hold(monkeypatch):
    narrow = sa.Table("sales", sa.MetaData(), sa.Column("quantity", sa.Integer))
    monkeypatch.setattr(t.metadata, "tables", {**t.metadata.tables, "sales": narrow})
    monkeypatch.setenv(settings.MAX_QUANTITY, str(3 * 10**9))
    monkeypatch.setenv(settings.DB_URL, "postgresql+psycopg://u@127.0.0.1/x")
    assert [p.variable for p in preflight.check_stored_limits()] == [settings.MAX_QUANTITY]
    monkeypatch.setenv(settings.DB_URL, "sqlite:////tmp/x.db")  # SQLite's INTEGER is 64-bit
    assert preflight.check_stored_limits() == []


# ---- SQL Server: the DDL compiles and every key fits its index limit -----------------------------

def _server() -> mssql.dialect:
    dialect = mssql.dialect(deprecate_large_types=True)
    dialect.server_version_info = (16, 0, 1000)
    return dialect


def _key_bytes(columns) -> int:
    """The largest key SQL Server can be given: NVARCHAR 2 bytes a unit, VARCHAR 1 a byte."""
    total = 0
    for column in columns:
        compiled = column.type.compile(dialect=_server())
        size = {"DATE": 3, "INTEGER": 4, "BIGINT": 8, "DATETIME": 8}.get(compiled)
        if size is None:
            length = int(compiled.split("(")[1].rstrip(")"))
            size = 2 * length if compiled.startswith("NVARCHAR") else length
        total += size
    return total


@pytest.mark.parametrize("table", [pytest.param(x, id=x.name) for x in t.metadata.sorted_tables])
def test_every_sql_server_key_fits_its_index_limit(table: sa.Table):
    CreateTable(table).compile(dialect=_server())
    assert _key_bytes(table.primary_key.columns) <= MSSQL_CLUSTERED_KEY_BYTES
    for index in [*table.indexes, *(c for c in table.constraints if isinstance(c, sa.UniqueConstraint))]:
        if isinstance(index, sa.Index):
            CreateIndex(index).compile(dialect=_server())
        assert _key_bytes(index.columns) <= MSSQL_NONCLUSTERED_KEY_BYTES, index.name


def test_sql_server_columns_hold_the_limits():
    ddl = " ".join(" ".join(str(CreateTable(x).compile(dialect=_server())).split())
                   for x in (t.sales, t.file_ledger, t.file_day_counts))
    assert "transaction_id NVARCHAR(128)" in ddl  # 64 characters, two UTF-16 units each at most
    assert "customer_id VARCHAR(370)" in ddl and "quantity BIGINT" in ddl
    assert "file_name NVARCHAR(818)" in ddl and "size_bytes BIGINT" in ddl
    assert "file_id BIGINT NOT NULL IDENTITY" in ddl


def test_sql_server_migration_drops_and_restores_the_keys_around_the_change():
    ledger = t.file_ledger
    changed = [ledger.c.file_id, ledger.c.file_name, ledger.c.size_bytes]
    got = mssql_statements(ledger, changed, _server(), "PK__file_led__1", {"uq_file_ledger_name_sha"})
    assert got == [
        "ALTER TABLE file_ledger DROP CONSTRAINT uq_file_ledger_name_sha",
        "ALTER TABLE file_ledger DROP CONSTRAINT [PK__file_led__1]",
        "ALTER TABLE file_ledger ALTER COLUMN file_id BIGINT NOT NULL",
        "ALTER TABLE file_ledger ALTER COLUMN file_name NVARCHAR(818) NOT NULL",
        "ALTER TABLE file_ledger ALTER COLUMN size_bytes BIGINT NOT NULL",
        "ALTER TABLE file_ledger ADD CONSTRAINT [PK__file_led__1] PRIMARY KEY (file_id)",
        "ALTER TABLE file_ledger ADD CONSTRAINT uq_file_ledger_name_sha UNIQUE (file_name, sha256)"]
    events = mssql_statements(t.file_events, [t.file_events.c.file_name], _server(), "PK_e",
                              {"ix_file_events_file"})
    assert events[0] == "DROP INDEX ix_file_events_file ON file_events"
    assert events[-1] == "CREATE INDEX ix_file_events_file ON file_events (file_name, sha256)"


# ---- the migration of an existing warehouse (the previous column types) --------------------------

def _previous(column: sa.Column) -> sa.types.TypeEngine:
    """The type the column had before the limits: 32-bit integers, 128-character tokens,
    255-character names, Numeric(18, 2) sums, non-Unicode text."""
    kind = column.type
    if isinstance(kind, sa.BigInteger):
        return sa.Integer()
    if isinstance(kind, sa.Numeric) and kind.precision == 38:
        return sa.Numeric(18, 2)
    if isinstance(kind, sa.UnicodeText):
        return sa.Text()
    if isinstance(kind, sa.String) and kind.length:
        return sa.String(128 if kind.length == t.TOKEN_LENGTH else
                         64 if column.name == "transaction_id" else 255)
    return kind


def _old_warehouse(engine: Engine) -> None:
    old = sa.MetaData()
    for name in WIDENED:
        table = t.metadata.tables[name]
        sa.Table(name, old, *(sa.Column(c.name, _previous(c) if c.name in WIDENED[name] else c.type,
                                        primary_key=c.primary_key, nullable=c.nullable,
                                        autoincrement=c.autoincrement) for c in table.columns))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(old.tables["sales"]).values(
            transaction_id="T1", customer_id="c", product_id="p", quantity=2, sale_date=date(2024, 3, 1),
            sale_ts=datetime(2024, 3, 1, 10), source_file="old.csv", loaded_at=datetime(2024, 3, 2)))
        conn.execute(insert(old.tables["file_ledger"]).values(
            file_name="old.csv", sha256="0" * 64, size_bytes=10, status="loaded",
            received_at=datetime(2024, 3, 2)))


@pytest.fixture
def old_pg_url() -> Iterator[str]:
    require_postgres()
    import uuid

    from sales_platform_tests.conftest import PG_ADMIN_URL

    name = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_widens_an_existing_postgresql_warehouse(old_pg_url: str):
    engine = sa.create_engine(old_pg_url)
    try:
        _old_warehouse(engine)
        assert 7 in migrate(engine)
        columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("file_ledger")}
        assert str(columns["size_bytes"]) == "BIGINT" and str(columns["file_name"]) == "VARCHAR(818)"
        with engine.begin() as conn:  # the serial's sequence goes past 2^31 too
            conn.execute(text("SELECT setval(pg_get_serial_sequence('file_ledger', 'file_id'), :n)"),
                         {"n": 2**31})
        record_not_landed(engine, "\\xff" * 200 + ".csv", "", HUGE, QUARANTINED, "x", None, "t",
                          datetime(2024, 3, 3))
        with engine.begin() as conn:
            conn.execute(t.sales.update().values(quantity=MAX_QUANTITY, customer_id="c" * t.TOKEN_LENGTH))
            ids = conn.execute(select(t.file_ledger.c.file_id, t.file_ledger.c.size_bytes)
                               .order_by(t.file_ledger.c.file_id)).all()
            kept = conn.execute(select(t.sales.c.transaction_id, t.sales.c.quantity)).all()
        assert [tuple(r) for r in ids] == [(1, 10), (2**31 + 1, HUGE)]
        assert [tuple(r) for r in kept] == [("T1", MAX_QUANTITY)]
        assert migrate(engine) == []  # idempotent
    finally:
        engine.dispose()


def test_migration_is_a_no_op_on_sqlite(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _old_warehouse(engine)
    migrate(engine)
    with engine.begin() as conn:  # SQLite's INTEGER and VARCHAR(n) already hold the edges
        conn.execute(t.sales.update().values(quantity=MAX_QUANTITY, customer_id="c" * t.TOKEN_LENGTH))
        assert conn.execute(select(t.sales.c.quantity)).scalar_one() == MAX_QUANTITY
        changes = conn.execute(select(t.schema_history.c.detail)).scalars().all()
    assert not any("widened" in (c or "") for c in changes)
    engine.dispose()
