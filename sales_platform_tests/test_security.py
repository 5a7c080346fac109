"""Proving nothing leaks: secrets and plaintext identifiers in everything the platform writes,
hostile input values, and the products API's write guard.

The audit runs the whole pipeline the way production configures it (resources from
``sales_platform.resources.factory``, secrets in environment variables) against real servers:
PostgreSQL with a password in its URL, the products API over HTTP with a token, Azurite with a SAS.
Then it searches every byte written: files (Parquet and SQLite content decoded, Dagster's
zlib-compressed snapshots inflated), every blob in the container and every row of every table.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from sqlalchemy import column, create_engine, inspect, literal, select, table, text
from sqlalchemy.dialects import mssql

from sales_platform.api.products import TOKEN_HEADER, create_app
from sales_platform.core import settings
from sales_platform.core.crypto import Keyring, Tokenizer, generate_key, is_token, parse_master_key
from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.redact import redact_text
from sales_platform.core.warehouse.engine import cached_engine, dispose_all
from sales_platform.core.warehouse.tables import dim_products, sales, sales_rejects
from sales_platform.resources import factory
from sales_platform.resources.warehouse import PostgresWarehouse, SqlUrlWarehouse
from sales_platform_tests.conftest import PG_ADMIN_URL, pg_admin_url, require_postgres
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.test_products_api import serving

DAYS = ("2024-03-01", "2024-03-02")
PER_DAY = [*SALES_CHAIN, "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
ROLLUPS = ["agg_sales_monthly", "agg_sales_yearly", "agg_exports", "agg_sales_by_year_json", "lineage_export"]
PII_CUSTOMERS = [f"ZqxPii{i:04d}Cust" for i in range(12)]
SQLITE_MAGIC = b"SQLite format 3\x00"


# --- what was written, as searchable bytes -----------------------------------------------------

def _cells_text(rows: Iterator[tuple]) -> Iterator[bytes]:
    """Every cell as bytes; binary cells also inflated (Dagster zlib-compresses its snapshots)."""
    for row in rows:
        for value in row:
            if isinstance(value, bytes | memoryview):
                data = bytes(value)
                yield data
                try:
                    yield zlib.decompress(data)
                except zlib.error:
                    pass
            elif value is not None:
                yield str(value).encode("utf-8", errors="surrogateescape")


def _sqlite_cells(path: Path) -> Iterator[bytes]:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            yield from _cells_text(conn.execute(f'SELECT * FROM "{name}"'))
    finally:
        conn.close()


def decoded(name: str, data: bytes, path: Path | None = None) -> list[tuple[str, bytes]]:
    """The raw bytes plus the decoded content of formats a byte search cannot see into."""
    parts = [(name, data)]
    if data.startswith(b"PAR1"):  # zstd-compressed pages: decode
        rows = pq.read_table(pa.BufferReader(data)).to_pylist()
        parts.append((f"{name} (parquet rows)", json.dumps(rows, default=str).encode()))
    if data.startswith(SQLITE_MAGIC) and path is not None:
        parts.append((f"{name} (sqlite cells)", b"\n".join(_sqlite_cells(path))))
    return parts


def files_haystack(root: Path) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found += decoded(str(path), path.read_bytes(), path)
    return found


def database_haystack(url: str) -> list[tuple[str, bytes]]:
    """A dump of every table: SELECT * as text."""
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                columns = [column(c["name"]) for c in inspect(conn).get_columns(name)]
                rows = conn.execute(select(*columns).select_from(table(name)))
                found.append((f"table {name}", b"\n".join(_cells_text(rows))))
    finally:
        engine.dispose()
    return found


def blob_haystack(connection_string: str, container: str) -> list[tuple[str, bytes]]:
    from azure.storage.blob import ContainerClient

    found = []
    with ContainerClient.from_connection_string(connection_string, container) as client:
        for name in client.list_blob_names():
            found += decoded(f"blob {name}", client.download_blob(name).readall())
    return found


def leaks(haystack: list[tuple[str, bytes]], needles: dict[str, set[bytes]]) -> list[str]:
    return [f"{what} in {where}" for what, variants in needles.items() for where, data in haystack
            if any(v in data for v in variants)]


def secret_variants(secret: str) -> set[bytes]:
    """The secret as written, URL-quoted and base64-encoded (standard and URL-safe)."""
    raw = secret.encode()
    return {raw, quote(secret, safe="").encode(), base64.b64encode(raw),
            base64.urlsafe_b64encode(raw).rstrip(b"=")}


def key_variants(key: str) -> set[bytes]:
    master = parse_master_key(key)
    return {*secret_variants(key), key.replace("+", "-").replace("/", "_").encode(), master,
            master.hex().encode(), base64.urlsafe_b64encode(master).rstrip(b"=")}


# --- the audited run ----------------------------------------------------------------------------

@dataclass
class Audit:
    needles: dict[str, set[bytes]]
    haystack: list[tuple[str, bytes]]
    data_dir: Path
    failures: dict[str, str] = field(default_factory=dict)  # what failed on purpose -> error text
    sample_token: str = ""
    pii_as_tokens: set[str] = field(default_factory=set)  # PII ids found (decrypted) in the warehouse


def account_sas(azurite) -> str:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        azurite.account_name, azurite.account_key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=2))


def echo_token_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A misbehaving API that repeats the caller's token in its error message."""
    given = environ.get("HTTP_" + TOKEN_HEADER.upper().replace("-", "_"), "")
    start_response("401 UNAUTHORIZED", [("Content-Type", "application/json")])
    return [json.dumps({"error": f"token {given} is not valid here"}).encode()]


def write_pii_drop(incoming: Path) -> None:
    """Distinctive customer ids, some rejected at cleaning, at landing, and in a malformed record."""
    rows = [[f"PII-{i}", c, "P00001", "1" if i % 4 else "-2", "2024-03-01T11:00:00"]
            for i, c in enumerate(PII_CUSTOMERS[:10])]
    rows.append(["PII-10", f"  {PII_CUSTOMERS[10].lower()} ", "P00001", "2", "not a time"])
    path = write_csv(incoming / "pii.csv", rows)
    with open(path, "a") as handle:
        handle.write(f"PII-11,{PII_CUSTOMERS[11]},P00001,1,2024-03-01T12:00:00,extra\n")


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every error the run logged: a step's, or a resource's at init (the warehouse migrates there,
    so a database that does not exist fails before any step)."""
    errors = [getattr(e.event_specific_data, "error", None) for e in result.all_events]
    return "\n".join(error.to_string() for error in errors if error)


def _set_env(mp: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        mp.setenv(getattr(settings, name), value)


def _warehouse_facts(db_url: str, key: str) -> tuple[str, set[str]]:
    """One customer token, and which PII ids the warehouse holds as tokens (decrypted with the key)."""
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            sample = conn.execute(select(sales.c.customer_id).limit(1)).scalar_one()
            tokens = [*conn.execute(select(sales.c.customer_id)).scalars(),
                      *conn.execute(select(sales_rejects.c.customer_id)).scalars(),
                      *conn.execute(select(sales_rejects.c.raw_text)).scalars()]
    finally:
        engine.dispose()
    # Only tokens are decrypted: a plaintext value here is a leak, which the byte search reports.
    plain = " ".join(tokenizer.decrypt(t) for t in tokens if t and is_token(t)).upper()
    return sample, {c for c in PII_CUSTOMERS if c.upper() in plain}


@pytest.fixture(scope="module")
def audit(tmp_path_factory, azurite) -> Iterator[Audit]:
    require_postgres()
    root = tmp_path_factory.mktemp("audit")
    data_dir, home = root / "data", root / "dagster_home"
    home.mkdir()
    key, api_token = generate_key(), f"apitok-{uuid.uuid4().hex}"
    password, sas = f"pgpw-{uuid.uuid4().hex[:16]}", account_sas(azurite)
    fake_sas = f"sv=2023-11-03&ss=b&srt=sco&sp=rwdlac&se=2031-01-01&sig=FakeSig{uuid.uuid4().hex}%3D"
    db, container = f"sp_audit_{uuid.uuid4().hex[:10]}", f"audit-{uuid.uuid4().hex[:12]}"
    # The configured server, with a password to search for (ignored under trust authentication).
    db_url = pg_admin_url().set(password=password, database=db).render_as_string(hide_password=False)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 3, 1), 2, 200,
             GeneratorSettings(seed=3, customers=80, products=20, defect_rate=0.05))
    write_pii_drop(data_dir / "incoming")
    audit = Audit(needles={"encryption key": key_variants(key), "API token": secret_variants(api_token),
                           "database password": secret_variants(password),
                           "SAS": {sas.encode(), *secret_variants(parse_qs(sas)["sig"][0])},
                           "fake SAS signature": secret_variants(parse_qs(fake_sas)["sig"][0])},
                  haystack=[], data_dir=data_dir)
    try:
        with (serving(create_app(root / "api" / "products.sqlite", token=api_token)) as api_url,
              serving(echo_token_app) as echo_url, pytest.MonkeyPatch.context() as mp,
              dg.instance_for_test(temp_dir=str(home)) as instance):
            _set_env(mp, DATA_DIR=str(data_dir), DB_URL=db_url, ENCRYPTION_KEY=key, API_URL=api_url,
                     API_TOKEN=api_token, BLOB_CONTAINER=container, BLOB_ACCOUNT_URL=azurite.account_url,
                     BLOB_SAS_TOKEN=sas, SETTLE_S="0")  # files written just above: take them now
            resources = factory.resources()
            materialize(resources, PRODUCTS, instance=instance)
            for day in DAYS:
                materialize(resources, PER_DAY, day, instance=instance)
            materialize(resources, ROLLUPS, instance=instance)
            # Error paths, on purpose: their messages end up in the event log searched below.
            for name, env, selection in (
                    ("blob with a rejected SAS", {"BLOB_SAS_TOKEN": fake_sas}, ["products_json"]),
                    ("API echoing the token", {"API_URL": echo_url}, ["dim_products"]),
                    ("database that does not exist", {"DB_URL": db_url + "_missing"}, ["agg_sales_monthly"])):
                with pytest.MonkeyPatch.context() as failing:
                    _set_env(failing, **env)
                    result = materialize(factory.resources(), selection, instance=instance,
                                         raise_on_error=False)
                assert not result.success, name
                audit.failures[name] = _failure_text(result)
        dispose_all()
        audit.sample_token, audit.pii_as_tokens = _warehouse_facts(db_url, key)
        audit.haystack = [*files_haystack(root), *blob_haystack(azurite.connection_string, container),
                          *database_haystack(db_url)]
        yield audit
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
def test_no_secret_is_written_anywhere(audit: Audit):
    names = [where for where, _ in audit.haystack]
    # The search really covers every place, decoded: blobs, tables, Parquet rows, Dagster snapshots.
    assert any(n.startswith("blob archive/") for n in names) and any("exports/" in n for n in names)
    assert any(n.startswith("blob lineage/") for n in names) and "table sales" in names
    assert any(audit.sample_token.encode() in data for n, data in audit.haystack if "parquet rows" in n)
    assert any(b"SALES_PLATFORM_ENCRYPTION_KEY" in data for n, data in audit.haystack if "sqlite cells" in n)
    assert "create container failed" in audit.failures["blob with a rejected SAS"]
    assert "HTTP 401" in audit.failures["API echoing the token"]
    assert "does not exist" in audit.failures["database that does not exist"]
    assert leaks(audit.haystack, audit.needles) == []


@pytest.mark.slow
def test_plaintext_customer_ids_stay_in_the_users_drop_file(audit: Audit):
    incoming = audit.data_dir / "incoming"
    assert not any(incoming.iterdir()) and not any((audit.data_dir / "quarantine").iterdir())
    needles = {c: {c.encode(), c.upper().encode(), c.lower().encode()} for c in PII_CUSTOMERS}
    assert leaks(audit.haystack, needles) == []
    # ... while every one of them is in the warehouse, as tokens: loaded, rejected at cleaning, at
    # landing (bad timestamp), and inside a malformed record.
    assert audit.pii_as_tokens == set(PII_CUSTOMERS)


def test_passwords_and_keys_are_redacted_from_displayed_urls_and_error_messages():
    password = f"pw-{uuid.uuid4().hex}"
    url = f"postgresql+psycopg://loader:{password}@db.example:5432/sales?sslmode=verify-full"
    for warehouse in (SqlUrlWarehouse(database_url=url),
                      PostgresWarehouse(user="loader", password=password, host="db.example")):
        shown = warehouse.display_url()
        assert password not in shown and "***" in shown and "db.example" in shown
    sig, account_key = f"FakeSig{uuid.uuid4().hex}%3D", base64.b64encode(uuid.uuid4().bytes * 4).decode()
    messages = [
        f"could not connect to {url}: timeout",
        f"odbc: Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:x,1433;UID=sa;PWD={password};Encrypt=yes",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};EndpointSuffix=core",
        f"GET https://acct.blob.core.windows.net/c/b?sv=2023-11-03&sp=r&sig={sig} failed",
        f"upload failed: SharedAccessSignature=sv=2023-11-03&sig={sig}",
    ]
    for message in messages:
        redacted = redact_text(message)
        assert password not in redacted and sig not in redacted and account_key not in redacted, redacted
    token = f"apitok-{uuid.uuid4().hex}"
    assert token not in redact_text(f"server said: token {token} is not valid", (token,))


# --- hostile input values ------------------------------------------------------------------------

HOSTILE = "'; DROP TABLE sales; --"
HOSTILE_PRODUCT = "P'; DROP TABLE SALES; --"
TS = "2024-03-01T10:00:00"
TID_64 = ("X'\"\\%_;--" * 8)[:64]
LONG = "L" * 10_000


def _stored(engine) -> tuple[dict[str, tuple], dict[str, tuple]]:
    loaded, rejects = {}, {}
    with engine.connect() as conn:
        for r in conn.execute(select(sales.c.transaction_id, sales.c.customer_id, sales.c.product_id,
                                     sales.c.quantity)):
            loaded[r.transaction_id] = (r.customer_id, r.product_id, r.quantity)
        for r in conn.execute(select(sales_rejects)).mappings():
            rejects[r["transaction_id"]] = dict(r)
    return loaded, rejects


def test_sql_metacharacters_and_long_values_are_stored_exactly_or_rejected(backend, data_dir, key):
    write_catalogue(data_dir, ["P1", HOSTILE_PRODUCT])
    loaded = {HOSTILE: (HOSTILE, "p'; drop table sales; --", "1"), 'T"q': ('C"q', "P1", "2"),
              "T\\b": ("C\\b", "P1", "3"), "T%p": ("C%p", "P1", "4"), "T_u": ("C_u", "P1", "5"),
              TID_64: ('x"\\%_', "P1", "6")}
    invalid = "invalid_identifier"
    rejected = {"TQ": ("CQ", "P1", "1; DROP TABLE sales", "quantity_not_numeric"),
                LONG: ("CL", "P1", "1", invalid), TID_64 + "Z": ("C65", "P1", "1", invalid),
                "TL2": (LONG, "P1", "1", invalid), "TL3": ("CL3", LONG, "1", invalid),
                "TL4": ("CL4", "P1", "9" * 10_000, "quantity_not_numeric")}
    write_csv(data_dir / "incoming" / "hostile.csv",
              [[t, c, p, q, TS] for t, (c, p, q) in loaded.items()]
              + [[t, c, p, q, TS] for t, (c, p, q, _) in rejected.items()])
    resources = resources_for(data_dir, backend.url, key, max_reject_rate=1.0)
    materialize(resources, PRODUCTS)
    assert materialize(resources, SALES_CHAIN, DAYS[0]).success
    engine = cached_engine(resources["warehouse"].url())
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    stored, rejects = _stored(engine)

    assert inspect(engine).has_table("sales") and len(stored) == len(loaded)
    for tid, (customer, product, quantity) in loaded.items():
        # transaction ids are case-insensitive: stored trimmed and upper-cased, otherwise exact
        customer_token, product_token, stored_quantity = stored[tid.strip().upper()]
        assert tokenizer.decrypt(customer_token) == customer.strip().upper()  # ids are normalized
        assert tokenizer.decrypt(product_token) == product.upper() and stored_quantity == int(quantity)
    assert set(rejects) == set(rejected)
    for tid, (customer, product, quantity, reason) in rejected.items():
        row = rejects[tid]
        assert row["reason"] == reason and row["quantity"] == quantity  # raw text, exactly
        assert tokenizer.decrypt(row["customer_id"]) == customer  # the raw value, in a token
        assert tokenizer.decrypt(row["product_id"]) == product
    with engine.connect() as conn:
        joined = conn.execute(select(dim_products.c.product_token, dim_products.c.name).join(
            sales, sales.c.product_id == dim_products.c.product_token)
            .where(sales.c.transaction_id == HOSTILE.strip().upper())).one()
    # the join gives the product's name, and its id only to who holds the key
    assert joined.name == f"Product {HOSTILE_PRODUCT}"
    assert tokenizer.decrypt(joined.product_token) == HOSTILE_PRODUCT


def test_nul_bytes_are_rejected_with_a_reason(backend, data_dir, key, request):
    write_catalogue(data_dir, ["P1"])
    # NUL bytes in the first 64 KiB make the whole file "binary" (quarantined): pad past the probe.
    padding = [[f"T{i:05d}", f"C{i}", "P1", "1", TS] for i in range(2000)]
    nul = {"TN1": ("C\x00N", "1"), "T\x00N2": ("CN2", "1"), "TN3": ("CN3", "1\x00")}
    write_csv(data_dir / "incoming" / "nul.csv", padding + [[t, c, "P1", q, TS] for t, (c, q) in nul.items()])
    (data_dir / "incoming" / "binary.csv").write_bytes(b"transaction_id,customer_id\x00,product_id\n")
    assert (data_dir / "incoming" / "nul.csv").stat().st_size > 64 << 10
    resources = resources_for(data_dir, backend.url, key)
    materialize(resources, PRODUCTS)
    assert materialize(resources, SALES_CHAIN, DAYS[0], raise_on_error=False).success
    engine = cached_engine(resources["warehouse"].url())
    stored, rejects = _stored(engine)
    assert len(stored) == len(padding) and inspect(engine).has_table("sales")
    reasons = {tid.replace("\ufffd", "\x00"): r["reason"] for tid, r in rejects.items()}
    assert reasons == {"TN1": "invalid_identifier", "T\x00N2": "invalid_identifier",
                       "TN3": "quantity_not_numeric"}
    customer = rejects["TN1"]["customer_id"]
    assert Tokenizer(Keyring.from_secrets(key)).decrypt(customer) == "C\x00N"  # a token holds it exactly
    assert "binary" in next((data_dir / "quarantine").glob("*.reason.txt")).read_text()


def test_sql_server_quotes_hostile_identifiers_with_brackets():
    hostile_column, hostile_table = 'x"; DROP TABLE sales; --', "we]ird"
    query = select(column(hostile_column)).select_from(table(hostile_table))
    sql = str(query.compile(dialect=mssql.dialect()))
    assert '[x"; DROP TABLE sales; --]' in sql and "[we]]ird]" in sql
    value = str(select(literal(HOSTILE)).compile(
        dialect=mssql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "'''; DROP TABLE sales; --'" in value  # quote doubled


# --- the products API refuses what it must, and stores nothing then -------------------------------

def test_products_api_refuses_unauthenticated_oversized_and_malformed_writes(tmp_path):
    token = f"apitok-{uuid.uuid4().hex}"
    good = [{"product_id": f"P{i}", "name": f"Product {i}", "category": "Toys", "unit_price": 2.5,
             "updated_at": "2024-03-01T12:00:00"} for i in range(3)]
    with serving(create_app(tmp_path / "api.sqlite", token=token, max_payload_bytes=20_000)) as url:
        def put(body: bytes, headers: dict[str, str] | None = None) -> int:
            return requests.put(f"{url}/products", data=body, timeout=10,
                                headers={"Content-Type": "application/json", **(headers or {})}).status_code

        def stored() -> tuple[int, list]:
            auth = {"X-API-Token": token}
            listing = requests.get(f"{url}/products", headers=auth, timeout=10).json()
            years = requests.get(f"{url}/aggregates/sales-by-year", headers=auth, timeout=10).json()
            return listing["total"], [*listing["items"], *years]

        auth = {TOKEN_HEADER: token}
        assert put(json.dumps(good).encode(), auth) == 200
        before = stored()
        assert before[0] == 3
        changed = json.dumps([{**p, "unit_price": 99.0} for p in good]).encode()
        assert put(changed) == 401 and put(changed, {TOKEN_HEADER: token[:-1]}) == 401
        assert requests.post(f"{url}/aggregates/sales-by-year", timeout=10, json=[
            {"year": 2024, "transactions": 1, "total_quantity": 1, "total_revenue": 1.0}]).status_code == 401
        oversized = json.dumps([{**good[0], "product_id": f"X{i}", "name": "n" * 100}
                                for i in range(200)]).encode()
        assert len(oversized) > 20_000 and put(oversized, auth) == 413
        # valid changes and a new product next to an invalid item: all or nothing
        half_valid = json.dumps([{**good[0], "unit_price": 7.0}, {**good[1], "product_id": "P9"},
                                 {**good[2], "unit_price": -1}]).encode()
        for malformed in (b"[{\"product_id\": ", b"{\"not\": \"a list\"}", b"[NaN]", half_valid):
            assert put(malformed, auth) == 400, malformed
        assert stored() == before


def test_migration_removes_plaintext_product_ids_from_an_older_warehouse(tmp_path, key):
    """A warehouse from before migration 4 (dim_products keyed by the plaintext id) keeps its
    products, keyed by token, and the id is gone from the SQLite file's bytes too."""
    from sales_platform.core.warehouse.migrations import migrate

    planted = f"ZqxOldProd{uuid.uuid4().hex[:8]}"
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE dim_products (product_id VARCHAR(64) PRIMARY KEY, "
                          "product_token VARCHAR(128) NOT NULL UNIQUE, name VARCHAR(255) NOT NULL, "
                          "category VARCHAR(100) NOT NULL, unit_price NUMERIC(12, 2) NOT NULL, "
                          "updated_at DATETIME NOT NULL)"))
        conn.execute(text("INSERT INTO dim_products VALUES (:pid, :tok, 'Widget', 'Toys', 2.5, "
                          "'2024-01-01 00:00:00')"), {"pid": planted,
                                                          "tok": tokenizer.encrypt(planted, "product_id")})
    assert 4 in migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM dim_products")).mappings().all()
    engine.dispose()
    assert [tokenizer.decrypt(r["product_token"]) for r in rows] == [planted]
    assert set(rows[0]) == {"product_token", "name", "category", "unit_price", "updated_at"}
    assert planted.encode() not in path.read_bytes()
