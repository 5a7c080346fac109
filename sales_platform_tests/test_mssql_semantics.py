"""The SQL Server MERGE run for its semantics, without a SQL Server.

No SQL Server can run here, so the T-SQL the loader sends is compiled with the mssql dialect and
translated mechanically to PostgreSQL's MERGE (PostgreSQL 15 has one): brackets to double quotes,
``#stg_sales`` to the staging table, no ``WITH (HOLDLOCK)`` or ``BY TARGET``, unqualified SET
targets. Everything else (match condition, change detection, column lists, bound values) is the
statement SQL Server would run. Expectations are written by hand from the rows the test stages.
The compiled-text snapshots in test_mssql.py stay as the second line.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.dialects import mssql

from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.loading import mssql_merge_statement, staging_table
from sales_platform.core.warehouse.tables import sales

LOADED_BEFORE = datetime(2024, 1, 1, 0, 0, 0)
LOADED_NOW = datetime(2024, 6, 16, 9, 0, 0)


def as_postgres(tsql: str) -> str:
    """The compiled T-SQL MERGE as PostgreSQL's MERGE (syntax only; the logic is untouched)."""
    sql = tsql.replace(" WITH (HOLDLOCK)", "").replace("WHEN NOT MATCHED BY TARGET", "WHEN NOT MATCHED")
    sql = sql.replace("[#stg_sales]", "stg_sales")
    sql = re.sub(r"\[((?:[^\]]|\]\])*)\]", lambda m: '"' + m.group(1).replace("]]", "]") + '"', sql)
    head, sep, rest = sql.partition(" THEN UPDATE SET ")
    update_list, sep2, tail = rest.partition(" WHEN NOT MATCHED")
    update_list = re.sub(r'\bt\.("[^"]+") =', r"\1 =", update_list)
    return head + sep + update_list + sep2 + tail


def row(tid: str, customer: str, quantity: int, sha: str = "v1", source_row: int = 1) -> dict:
    return {"transaction_id": tid, "customer_id": customer, "product_id": "P", "quantity": quantity,
            "sale_date": date(2024, 6, 15), "sale_ts": datetime(2024, 6, 15, 10), "source_file": "f.csv",
            "source_sha256": sha, "source_row": source_row}


@pytest.fixture
def pg_engine(backend):
    return make_engine(backend.url)


# PostgreSQL's MERGE runs the translated statement: only the PostgreSQL warehouse
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def test_the_sql_server_merge_inserts_updates_and_leaves_unchanged_rows_alone(pg_engine):
    before = [row("SAME", "C1", 1), row("CHANGED", "C1", 1), row("RELINKED", "C1", 1),
              row("OTHER", "C9", 9)]
    staged = [row("SAME", "C1", 1), row("CHANGED", "C1", 5, sha="v2"), row("RELINKED", "C1", 1, sha="v2",
                                                                         source_row=7),
              row("NEW", "C2", 2, sha="v2")]
    merge = mssql_merge_statement(LOADED_NOW)
    statement = as_postgres(str(merge.compile(dialect=mssql.dialect())))
    with pg_engine.begin() as conn:
        conn.execute(insert(sales), [{**r, "loaded_at": LOADED_BEFORE} for r in before])
        stage = staging_table("postgresql")
        stage.create(conn)
        conn.execute(insert(stage), staged)
        result = conn.execute(text(statement), {"loaded_at": LOADED_NOW})
        assert result.rowcount == 3  # CHANGED and RELINKED updated, NEW inserted; SAME untouched
        got = {r.transaction_id: (r.customer_id, r.quantity, r.source_sha256, r.source_row, r.loaded_at)
               for r in conn.execute(select(sales))}
    assert got == {
        "SAME": ("C1", 1, "v1", 1, LOADED_BEFORE),
        "CHANGED": ("C1", 5, "v2", 1, LOADED_NOW),
        "RELINKED": ("C1", 1, "v2", 7, LOADED_NOW),
        "NEW": ("C2", 2, "v2", 1, LOADED_NOW),
        "OTHER": ("C9", 9, "v1", 1, LOADED_BEFORE),  # MERGE never deletes: vanished rows are a
    }                                               # separate, per-day DELETE


def test_the_merge_sees_a_null_extra_column_change_as_a_change(pg_engine):
    with pg_engine.begin() as conn:
        conn.execute(text('ALTER TABLE sales ADD COLUMN "store id" TEXT'))
        conn.execute(insert(sales), [{**row("T", "C1", 1), "loaded_at": LOADED_BEFORE}])
        stage = staging_table("postgresql", ["store id"])
        stage.create(conn)
        conn.execute(insert(stage), [{**row("T", "C1", 1), "store id": "S-7"}])
        merge = mssql_merge_statement(LOADED_NOW, ["store id"])
        conn.execute(text(as_postgres(str(merge.compile(dialect=mssql.dialect())))),
                     {"loaded_at": LOADED_NOW})
        stored = conn.execute(text('SELECT "store id", loaded_at FROM sales')).one()
    assert tuple(stored) == ("S-7", LOADED_NOW)  # NULL -> value counts as changed (no NULL = NULL trap)
