"""Versioned, idempotent migrations of the warehouse schema.

New installs get every table from tables.py; older warehouses are brought forward step by step.
Each step runs in its own transaction and is recorded in schema_migrations; a step whose change
is already there does nothing, so running migrate() again (or concurrently) is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, MetaData, insert, select, text

from sales_platform.core.warehouse.aggregates import log_everything
from sales_platform.core.warehouse.loading import add_column_ddl, existing_columns
from sales_platform.core.warehouse.tables import (
    dim_products,
    metadata,
    schema_history,
    schema_migrations,
)
from sales_platform.core.warehouse.widen import widen_to_limits


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], list[str]]  # returns the changes it made (for schema_history)


def _base_tables(conn: Connection) -> list[str]:
    before = set(conn.dialect.get_table_names(conn))
    metadata.create_all(conn, checkfirst=True)
    return [f"created table {t}" for t in sorted(set(metadata.tables) - before)]


def _add_columns(*pairs: tuple[str, str]) -> Callable[[Connection], list[str]]:
    def apply(conn: Connection) -> list[str]:
        made = []
        for table, column in pairs:
            if column not in existing_columns(conn, table):
                conn.execute(text(add_column_ddl(conn.dialect, table, column)))
                made.append(f"added column {table}.{column}")
        return made

    return apply


def _add_integer_column(conn: Connection, table: str, column: str) -> list[str]:
    if column in existing_columns(conn, table):
        return []
    quote = conn.dialect.identifier_preparer.quote_identifier
    keyword = "" if conn.dialect.name == "mssql" else "COLUMN "
    conn.execute(text(f"ALTER TABLE {quote(table)} ADD {keyword}{quote(column)} INTEGER NULL"))
    return [f"added column {table}.{column}"]


def _reject_id_index(conn: Connection) -> list[str]:
    """Cross-day checks look rejects up by transaction id. SQL Server cannot index its
    VARCHAR(max) column (it scans; rejects are few), SQLite and PostgreSQL get an index."""
    if conn.dialect.name == "mssql":
        return []
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_sales_rejects_tid ON sales_rejects (transaction_id)"))
    return ["index sales_rejects.transaction_id"]


def _dim_products_by_token(conn: Connection) -> list[str]:
    """dim_products without its plaintext product_id column (keyed by the token instead).

    The table is rebuilt (copy, drop, rename) because SQLite cannot drop a primary key column.
    SQLite overwrites the freed pages (secure_delete) so the old ids do not stay in the file;
    on PostgreSQL and SQL Server the old row versions go with the next VACUUM / index rebuild.
    """
    if "product_id" not in existing_columns(conn, dim_products.name):
        return []
    if conn.dialect.name == "sqlite":
        conn.execute(text("PRAGMA secure_delete = ON"))
    staged = dim_products.to_metadata(MetaData(), name="dim_products_by_token")
    staged.create(conn, checkfirst=True)
    columns = [c.name for c in dim_products.columns]
    quote = conn.dialect.identifier_preparer.quote_identifier
    listed = ", ".join(quote(c) for c in columns)
    conn.execute(text(f"INSERT INTO {quote(staged.name)} ({listed}) "
                      f"SELECT {listed} FROM {quote(dim_products.name)}"))
    conn.execute(text(f"DROP TABLE {quote(dim_products.name)}"))
    if conn.dialect.name == "mssql":
        conn.execute(text(f"EXEC sp_rename '{staged.name}', '{dim_products.name}'"))
    else:
        conn.execute(text(f"ALTER TABLE {quote(staged.name)} RENAME TO {quote(dim_products.name)}"))
    return ["dim_products keyed by product_token; plaintext product_id column removed"]


def _change_log(conn: Connection) -> list[str]:
    """agg_changes, seeded with every period already aggregated or exported: rollups refreshed
    by the older max(refreshed_at) rule may be stale, so the next rollups_job rebuilds them all."""
    made = _base_tables(conn)
    logged = log_everything(conn, datetime.now())
    return made + ([f"logged {logged} sale day(s) for the rollups and exports to rebuild"] if logged else [])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "base tables", _base_tables),
    Migration(2, "extras JSON columns for the rescue schema policy",
              _add_columns(("sales", "extras"), ("sales_rejects", "extras"))),
    Migration(3, "file versions: events, per-day counts, pending days, version of each sales row",
              lambda conn: _base_tables(conn) + _add_columns(
                  ("sales", "source_sha256"), ("file_ledger", "days_affected"))(conn)
              + _add_integer_column(conn, "sales", "source_row") + _reject_id_index(conn)),
    Migration(4, "dim_products keyed by the product token, no plaintext product id",
              _dim_products_by_token),
    Migration(5, "data-object and data-model ledgers, aggregate by sales category and month",
              _base_tables),
    Migration(6, "change log of sale days for the rollups and exports (agg_changes)", _change_log),
    Migration(7, "columns sized from the documented limits (64-bit counts and quantities, "
                 "tokens of the longest id, names as shown, Unicode text)", widen_to_limits),
)


def _lock(conn: Connection) -> None:
    """Serialize concurrent migrators (SQLite: BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
    elif conn.dialect.name == "mssql":
        conn.execute(text("EXEC sp_getapplock @Resource='sales_platform_migrations', "
                          "@LockMode='Exclusive', @LockOwner='Transaction', @LockTimeout=600000"))


def migrate(engine: Engine, now: datetime | None = None) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    now = now or datetime.now()
    with engine.begin() as conn:
        _lock(conn)
        schema_migrations.create(conn, checkfirst=True)
    applied = []
    for step in MIGRATIONS:
        with engine.begin() as conn:
            _lock(conn)
            done = conn.execute(select(schema_migrations.c.version)
                                .where(schema_migrations.c.version == step.version)).first()
            if done:
                continue
            changes = step.apply(conn)
            conn.execute(insert(schema_migrations).values(version=step.version,
                                                          description=step.description, applied_at=now))
            if changes and step.version > 1:
                conn.execute(insert(schema_history).values(
                    kind="table_change", table_name=None, columns="[]",
                    detail=f"migration {step.version}: " + "; ".join(changes), recorded_at=now))
            applied.append(step.version)
    return applied
