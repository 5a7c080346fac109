"""Columns of an existing warehouse widened to the sizes derived from the limits (core/limits.py).

Older warehouses were created with 32-bit counts and quantities, 128-character tokens, 255-character
names and non-Unicode text on SQL Server. PostgreSQL changes a column's type in place (ALTER COLUMN
... TYPE, indexes rebuilt with it); SQL Server refuses to alter a column an index or a key holds, so
those are dropped and created again around the change, in the migration's transaction. SQLite needs
nothing: its columns take any length of text and 64-bit integers whatever they were declared as.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Connection, Dialect, Index, Table, UniqueConstraint, inspect, text

from sales_platform.core.warehouse.tables import metadata

# The columns whose declared type changed with the limits, per table.
WIDENED: dict[str, tuple[str, ...]] = {
    "sales": ("transaction_id", "customer_id", "product_id", "quantity", "source_file",
              "source_row"),
    "sales_rejects": ("reject_id", "source_file", "source_row", "detail", "transaction_id",
                      "quantity", "timestamp"),
    "file_ledger": ("file_id", "file_name", "size_bytes", "rows_read", "rows_landed",
                    "rows_rejected", "error", "archive_path"),
    "file_events": ("event_id", "file_name", "detail"),
    "file_day_counts": ("file_name", "rows_landed"),
    "dim_products": ("product_token", "name", "category"),
    "agg_sales_daily": ("transactions", "total_quantity", "total_revenue"),
    "agg_sales_monthly": ("transactions", "total_quantity", "total_revenue"),
    "agg_sales_yearly": ("transactions", "total_quantity", "total_revenue"),
    "agg_sales_by_product": ("product_token", "product_name", "category", "transactions",
                             "total_quantity", "total_revenue"),
    "agg_sales_by_customer": ("customer_token", "transactions", "total_quantity", "total_revenue"),
    "agg_sales_by_category_monthly": ("transactions", "total_revenue", "mean_revenue"),
    "schema_history": ("file_name", "detail"),
    "export_log": ("rows",),
    "data_objects": ("object_id", "rows", "bytes"),
}


def type_sql(column: Column, dialect: Dialect) -> str:
    return column.type.compile(dialect=dialect)


def _narrower(conn: Connection, table: Table) -> list[Column]:
    """The table's widened columns whose type in the database is not the declared one yet."""
    found = {c["name"]: c["type"] for c in inspect(conn).get_columns(table.name)}
    dialect = conn.dialect
    return [table.c[name] for name in WIDENED[table.name] if name in found
            and found[name].compile(dialect=dialect) != type_sql(table.c[name], dialect)]


def postgresql_statements(table: Table, columns: Sequence[Column], dialect: Dialect,
                          sequences: dict[str, str]) -> list[str]:
    """One ALTER TABLE (one rewrite of the table), then each serial's sequence made 64-bit (a
    SERIAL's sequence is ``AS integer``: it would stop at 2^31 - 1 under a BIGINT column)."""
    quote = dialect.identifier_preparer.quote
    changes = ", ".join(f"ALTER COLUMN {quote(c.name)} TYPE {type_sql(c, dialect)}" for c in columns)
    out = [f"ALTER TABLE {quote(table.name)} {changes}"]
    out += [f"ALTER SEQUENCE {sequences[c.name]} AS bigint" for c in columns
            if c.name in sequences and isinstance(c.type, BigInteger)]
    return out


def _holders(table: Table, names: set[str]) -> list[Index | UniqueConstraint]:
    """The declared indexes and unique constraints that hold one of ``names``."""
    held: list[Index | UniqueConstraint] = [i for i in table.indexes
                                            if names & {c.name for c in i.columns}]
    held += [u for u in table.constraints if isinstance(u, UniqueConstraint)
             and names & {c.name for c in u.columns}]
    return held


def mssql_statements(table: Table, columns: Sequence[Column], dialect: Dialect,
                     primary_key: str | None, existing: set[str]) -> list[str]:
    """Drop the primary key (``primary_key``: its name in the database) and the declared indexes
    and unique constraints (those in ``existing``) that hold a changed column, ALTER COLUMN each,
    then create them again as declared."""
    quote = dialect.identifier_preparer.quote
    names = {c.name for c in columns}
    pk_columns = [c.name for c in table.primary_key.columns]
    held = [h for h in _holders(table, names) if h.name in existing]
    keyed = primary_key is not None and bool(names & set(pk_columns))
    out = [f"DROP INDEX {quote(h.name)} ON {quote(table.name)}" if isinstance(h, Index)
           else f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(h.name)}" for h in held]
    if keyed:
        out.append(f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(primary_key)}")
    out += [f"ALTER TABLE {quote(table.name)} ALTER COLUMN {quote(c.name)} {type_sql(c, dialect)} "
            f"{'NULL' if c.nullable else 'NOT NULL'}" for c in columns]
    if keyed:
        listed = ", ".join(quote(c) for c in pk_columns)
        out.append(f"ALTER TABLE {quote(table.name)} ADD CONSTRAINT {quote(primary_key)} "
                   f"PRIMARY KEY ({listed})")
    for h in held:
        listed = ", ".join(quote(c.name) for c in h.columns)
        out.append(f"CREATE {'UNIQUE ' if h.unique else ''}INDEX {quote(h.name)} ON "
                   f"{quote(table.name)} ({listed})" if isinstance(h, Index) else
                   f"ALTER TABLE {quote(table.name)} ADD CONSTRAINT {quote(h.name)} UNIQUE ({listed})")
    return out


def _serial_sequences(conn: Connection, table: Table, columns: Sequence[Column]) -> dict[str, str]:
    found = {}
    for c in columns:
        if c.primary_key:
            seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                               {"t": table.name, "c": c.name}).scalar()
            if seq:
                found[c.name] = seq
    return found


def _existing_holders(conn: Connection, table: Table) -> tuple[str | None, set[str]]:
    insp = inspect(conn)
    names = {i["name"] for i in insp.get_indexes(table.name)}
    names |= {u["name"] for u in insp.get_unique_constraints(table.name)}
    return insp.get_pk_constraint(table.name).get("name"), names


def widen_to_limits(conn: Connection) -> list[str]:
    """Migration: every widened column of every existing table brought to its declared type."""
    if conn.dialect.name == "sqlite":
        return []
    present = set(conn.dialect.get_table_names(conn))
    made = []
    for name in WIDENED:
        table = metadata.tables[name]
        columns = _narrower(conn, table) if name in present else []
        if not columns:
            continue
        if conn.dialect.name == "postgresql":
            statements = postgresql_statements(table, columns, conn.dialect,
                                               _serial_sequences(conn, table, columns))
        else:
            statements = mssql_statements(table, columns, conn.dialect,
                                          *_existing_holders(conn, table))
        for statement in statements:
            conn.execute(text(statement))
        made.append(f"widened {name}: " + ", ".join(
            f"{c.name} {type_sql(c, conn.dialect)}" for c in columns))
    return made
