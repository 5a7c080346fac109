"""Schema evolution: header variants, new/missing columns, policies, DBA changes, migrations."""

import json

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.dialects import mssql, postgresql, sqlite

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.engine import cached_engine, make_engine
from sales_platform.core.warehouse.loading import add_column_ddl
from sales_platform.core.warehouse.migrations import MIGRATIONS, migrate
from sales_platform.core.warehouse.tables import sales, sales_rejects, schema_history, schema_migrations
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    check_results,
    count,
    materializations_of,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)

DAY = "2024-04-02"
OLD = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]
HOSTILE = 'x"; DROP TABLE sales; --'


@pytest.fixture
def env(data_dir, backend, key):
    write_catalogue(data_dir, ["P1", "P2"])
    resources = resources_for(data_dir, backend.url, key, max_reject_rate=0.5)  # tiny files
    materialize(resources, PRODUCTS)
    return data_dir, resources, cached_engine(resources["warehouse"].url()), key


def rows(engine, *columns):
    with engine.connect() as conn:
        return conn.execute(select(*(sales.c[c] if c in sales.c else text(c) for c in columns))
                            .select_from(sales).order_by(sales.c.transaction_id)).all()


def test_header_variants_and_column_order_map_to_the_contract(env):
    data_dir, resources, engine, _ = env
    write_csv(data_dir / "incoming" / "variant.csv", [["2", "P1", f"{DAY}T10:00:00", "T1", " c1 "]],
              header=["Qty", "product", "Sale_Timestamp", "TransactionID", "Customer ID"])
    materialize(resources, SALES_CHAIN, DAY)
    ((tid, quantity),) = rows(engine, "transaction_id", "quantity")
    assert (tid, quantity) == ("T1", 2)


def test_evolve_adds_columns_encrypts_sensitive_ones_and_keeps_every_value(env):
    data_dir, resources, engine, key = env
    write_csv(data_dir / "incoming" / "old.csv", [["T1", "C1", "P1", "1", f"{DAY}T09:00:00"]], header=OLD)
    materialize(resources, SALES_CHAIN, DAY)
    write_csv(data_dir / "incoming" / "new.csv",
              [["T2", "C2", "P2", "2", f"{DAY}T10:00:00", "S-7", "ann@example.com", "v1"],
               ["T3", "C3", "P1", "-1", f"{DAY}T11:00:00", "S-8", "bob@example.com", "v2"]],
              header=[*OLD, "store_id", "email", HOSTILE])
    result = materialize(resources, SALES_CHAIN, DAY)
    assert check_results(result)["schema_unchanged"] is False
    columns = {c["name"] for c in inspect(engine).get_columns("sales")}
    assert {"store_id", "email", "x_drop_table_sales"} <= columns
    assert count(engine, sales) == 2  # the sales table survived the hostile header
    loaded = {r[0]: r[1:] for r in rows(engine, "transaction_id", "store_id", "email", "x_drop_table_sales")}
    assert loaded["T1"] == (None, None, None)  # older file: NULLs for the later columns
    assert loaded["T2"][0] == "S-7" and loaded["T2"][2] == "v1"
    assert Tokenizer(Keyring.from_secrets(key)).decrypt(loaded["T2"][1]) == "ann@example.com"
    with engine.connect() as conn:
        reject = conn.execute(select(sales_rejects.c.extras, sales_rejects.c.reason)
                              .where(sales_rejects.c.transaction_id == "T3")).one()
        history = conn.execute(select(schema_history.c.kind, schema_history.c.detail)).all()
    extras = json.loads(reject.extras)
    assert reject.reason == "quantity_not_positive" and extras["store_id"] == "S-8"
    assert extras["x_drop_table_sales"] == "v2" and "bob@example.com" not in reject.extras
    assert {k for k, _ in history} == {"source_schema", "table_change"}
    meta = materializations_of(result, "sales")[0].metadata
    assert "store_id" in {c.name for c in meta["dagster/column_schema"].schema.columns}


def test_old_new_old_round_trip_into_one_table(env):
    data_dir, resources, engine, _ = env
    for name, header, row in [
        ("a_old.csv", OLD, ["T1", "C1", "P1", "1", f"{DAY}T09:00:00"]),
        ("b_new.csv", [*OLD, "channel"], ["T2", "C2", "P1", "2", f"{DAY}T10:00:00", "web"]),
        ("c_old.csv", OLD[::-1], [f"{DAY}T11:00:00", "3", "P2", "C3", "T3"]),
    ]:
        write_csv(data_dir / "incoming" / name, [row], header=header)
        materialize(resources, SALES_CHAIN, DAY)
    assert [tuple(r) for r in rows(engine, "transaction_id", "quantity", "channel")] == [
        ("T1", 1, None), ("T2", 2, "web"), ("T3", 3, None)]


def test_freeze_quarantines_files_with_unknown_columns(data_dir, key, tmp_path):
    write_catalogue(data_dir, ["P1"])
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, schema_policy="freeze")
    materialize(resources, PRODUCTS)
    write_csv(data_dir / "incoming" / "new.csv", [["T2", "C2", "P1", "2", f"{DAY}T10:00:00", "S-7"]],
              header=[*OLD, "store_id"])
    write_csv(data_dir / "incoming" / "old.csv", [["T1", "C1", "P1", "1", f"{DAY}T09:00:00"]], header=OLD)
    result = materialize(resources, SALES_CHAIN, DAY)
    assert count(cached_engine(resources["warehouse"].url()), sales) == 1
    assert check_results(result)["no_quarantined_files"] is False
    reason = next((data_dir / "quarantine").glob("new*.reason.txt")).read_text()
    # the unknown column is named by position, never by its text: a file without a header row would
    # put a data cell (an id) there, and reasons travel to the ledger, logs and the UI
    assert "freeze" in reason and "column(s) 6" in reason and "store_id" not in reason


def test_rescue_keeps_unknown_columns_as_json(data_dir, key, tmp_path):
    write_catalogue(data_dir, ["P1"])
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, schema_policy="rescue")
    engine = cached_engine(resources["warehouse"].url())
    materialize(resources, PRODUCTS)
    write_csv(data_dir / "incoming" / "new.csv",
              [["T2", "C2", "P1", "2", f"{DAY}T10:00:00", "S-7", "x", "eve@example.com"]],
              header=[*OLD, "store_id", "Promo Code", "email"])
    materialize(resources, SALES_CHAIN, DAY)
    assert "store_id" not in {c["name"] for c in inspect(engine).get_columns("sales")}
    ((extras,),) = rows(engine, "extras")
    kept = json.loads(extras)
    assert {k: kept[k] for k in ("promo_code", "store_id")} == {"promo_code": "x", "store_id": "S-7"}
    assert Tokenizer(Keyring.from_secrets(key)).decrypt(kept["email"]) == "eve@example.com"
    assert "eve@example.com" not in extras  # sensitive even inside the JSON


def test_dba_added_column_is_left_alone(env):
    data_dir, resources, engine, _ = env
    with engine.begin() as conn:
        conn.execute(text(add_column_ddl(engine.dialect, "sales", "dba_note")))
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "1", f"{DAY}T09:00:00"]], header=OLD)
    materialize(resources, SALES_CHAIN, DAY)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sales SET dba_note = 'checked'"))
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "4", f"{DAY}T09:00:00"]], header=OLD)
    materialize(resources, SALES_CHAIN, DAY)
    assert [tuple(r) for r in rows(engine, "quantity", "dba_note")] == [(4, "checked")]


def test_migrations_bring_an_old_warehouse_forward_idempotently(backend):
    engine = create_engine(backend.url)
    with engine.begin() as conn:  # a warehouse of the first release: sales without extras
        conn.execute(text("CREATE TABLE sales (transaction_id VARCHAR(64) PRIMARY KEY, "
                          "customer_id VARCHAR(128) NOT NULL, product_id VARCHAR(128) NOT NULL, "
                          "quantity INTEGER NOT NULL, sale_date DATE NOT NULL, sale_ts TIMESTAMP NOT NULL, "
                          "source_file VARCHAR(255) NOT NULL, loaded_at TIMESTAMP NOT NULL)"))
        conn.execute(text("INSERT INTO sales VALUES ('T1','a','b',1,'2024-01-01','2024-01-01 10:00:00',"
                          "'f.csv','2024-01-02 00:00:00')"))
    engine.dispose()
    upgraded = make_engine(backend.url)
    assert "extras" in {c["name"] for c in inspect(upgraded).get_columns("sales")}
    assert count(upgraded, sales) == 1
    assert migrate(upgraded) == []  # idempotent
    with upgraded.connect() as conn:
        versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
        changes = conn.execute(select(schema_history.c.detail).where(
            schema_history.c.kind == "table_change")).scalars().all()
    assert sorted(versions) == [m.version for m in MIGRATIONS]
    assert any("sales.extras" in c for c in changes)
    upgraded.dispose()


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (sqlite.dialect(), 'ALTER TABLE "sales" ADD COLUMN "store_id" TEXT'),
        (postgresql.dialect(), 'ALTER TABLE "sales" ADD COLUMN IF NOT EXISTS "store_id" TEXT'),
        (mssql.dialect(), "IF COL_LENGTH('sales', 'store_id') IS NULL "
                          "ALTER TABLE [sales] ADD [store_id] NVARCHAR(MAX) NULL"),
    ],
)
def test_add_column_ddl_per_dialect(dialect, expected):
    assert add_column_ddl(dialect, "sales", "store_id") == expected


def test_add_column_ddl_quotes_whatever_it_is_given():
    assert add_column_ddl(mssql.dialect(), "sales", "a]b") == (
        "IF COL_LENGTH('sales', 'a]b') IS NULL ALTER TABLE [sales] ADD [a]]b] NVARCHAR(MAX) NULL")
    assert add_column_ddl(postgresql.dialect(), "sales", 'x"y').endswith('"x""y" TEXT')
