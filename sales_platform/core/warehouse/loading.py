"""Idempotent, atomic loading of one sales partition through a staging table.

Per dialect the fastest safe bulk path fills a temporary staging table (SQLite ``executemany``,
PostgreSQL ``COPY``, SQL Server ``fast_executemany``); then, in the same transaction, one statement
inserts new rows and updates only rows whose content changed, and rows of that day that are no
longer in any file are deleted. Readers see the partition before or after, never half of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
)

from sales_platform.core.warehouse.tables import SALES_CONTENT_COLUMNS, sales

STAGE_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_date",
                 "sale_ts", "source_file")
MSSQL_MAX_PARAMETERS = 2100


@dataclass
class LoadStats:
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def staging_table(dialect_name: str) -> Table:
    name = "#stg_sales" if dialect_name == "mssql" else "stg_sales"
    prefixes = [] if dialect_name == "mssql" else ["TEMPORARY"]
    return Table(
        name,
        MetaData(),
        Column("transaction_id", String(64), primary_key=True),
        Column("customer_id", String(128), nullable=False),
        Column("product_id", String(128), nullable=False),
        Column("quantity", Integer, nullable=False),
        Column("sale_date", Date, nullable=False),
        Column("sale_ts", DateTime, nullable=False),
        Column("source_file", String(255), nullable=False),
        prefixes=prefixes,
    )


def rows_for_driver(frame: pd.DataFrame, dialect_name: str) -> list[tuple]:
    """Rows as tuples the driver's bulk path accepts (text dates for SQLite and COPY)."""
    ts = frame["sale_ts"].dt.floor("s")
    if dialect_name == "mssql":
        out = frame.assign(sale_date=ts.dt.date, sale_ts=ts.dt.to_pydatetime())
    else:
        out = frame.assign(sale_date=ts.dt.strftime("%Y-%m-%d") if len(ts) else ts,
                           sale_ts=ts.astype(str))
    return list(out[list(STAGE_COLUMNS)].itertuples(index=False, name=None))


def batch_rows_for_parameter_limit(columns: int, limit: int = MSSQL_MAX_PARAMETERS) -> int:
    """Rows per multi-row VALUES statement that keep under SQL Server's parameter limit."""
    return max(1, (limit - 1) // columns)


class SalesLoader:
    """Loads one day of encrypted sales into the ``sales`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.stage = staging_table(self.dialect)

    def load_day(self, day: date, batches: Iterable[pd.DataFrame], loaded_at: datetime) -> LoadStats:
        stats = LoadStats()
        with self.engine.begin() as conn:
            self._prepare(conn)
            raw = conn.connection.dbapi_connection
            for frame in batches:
                if len(frame):
                    self._bulk_insert(raw, rows_for_driver(frame, self.dialect))
                    stats.staged += len(frame)
            self._count(conn, day, stats)
            if stats.inserted or stats.updated:
                conn.execute(self.upsert_statement(loaded_at))
            if stats.deleted:
                conn.execute(self.delete_vanished_statement(day))
            conn.execute(self.stage.delete())
        return stats

    def _prepare(self, conn: Connection) -> None:
        if self.dialect == "mssql":
            conn.execute(text("IF OBJECT_ID('tempdb..#stg_sales') IS NOT NULL DROP TABLE #stg_sales"))
            self.stage.create(conn)
        else:
            self.stage.create(conn, checkfirst=True)
            conn.execute(self.stage.delete())

    def _bulk_insert(self, raw, rows: list[tuple]) -> None:
        columns = ", ".join(STAGE_COLUMNS)
        cursor = raw.cursor()
        try:
            if self.dialect == "postgresql":
                with cursor.copy(f"COPY stg_sales ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["?"] * len(STAGE_COLUMNS))
                if self.dialect == "mssql":
                    cursor.fast_executemany = True
                cursor.executemany(f"INSERT INTO {self.stage.name} ({columns}) VALUES ({marks})", rows)
        finally:
            cursor.close()

    def _changed(self):
        return or_(*(sales.c[c].is_distinct_from(self.stage.c[c]) for c in SALES_CONTENT_COLUMNS))

    def _count(self, conn: Connection, day: date, stats: LoadStats) -> None:
        s, t = self.stage, sales
        matched = select(func.count()).select_from(s.join(t, t.c.transaction_id == s.c.transaction_id))
        present = conn.execute(matched).scalar_one()
        stats.updated = conn.execute(matched.where(self._changed())).scalar_one()
        stats.inserted = stats.staged - present
        stats.unchanged = present - stats.updated
        stats.deleted = conn.execute(
            select(func.count()).select_from(t).where(self._vanished(day))
        ).scalar_one()

    def _vanished(self, day: date):
        s, t = self.stage, sales
        return and_(t.c.sale_date == day,
                    ~exists().where(s.c.transaction_id == t.c.transaction_id))

    def delete_vanished_statement(self, day: date):
        return delete(sales).where(self._vanished(day))

    def upsert_statement(self, loaded_at: datetime):
        """INSERT new rows and UPDATE only changed rows, in one statement per dialect."""
        s = self.stage
        columns = [*STAGE_COLUMNS, "loaded_at"]
        source = select(*(s.c[c] for c in STAGE_COLUMNS), literal(loaded_at, DateTime).label("loaded_at"))
        if self.dialect in ("sqlite", "postgresql"):
            if self.dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(sales).from_select(columns, source.where(true()))
            updated = [*SALES_CONTENT_COLUMNS, "source_file", "loaded_at"]
            return stmt.on_conflict_do_update(
                index_elements=[sales.c.transaction_id],
                set_={c: stmt.excluded[c] for c in updated},
                where=or_(*(sales.c[c].is_distinct_from(stmt.excluded[c])
                            for c in SALES_CONTENT_COLUMNS)),
            )
        if self.dialect == "mssql":
            return mssql_merge_statement(loaded_at)
        raise NotImplementedError(f"no upsert for dialect {self.dialect}")


def mssql_merge_statement(loaded_at: datetime):
    """One MERGE from #stg_sales (HOLDLOCK: no race between the match and the insert)."""
    content = SALES_CONTENT_COLUMNS
    differs = " OR ".join(
        f"(t.[{c}] <> s.[{c}] OR (t.[{c}] IS NULL AND s.[{c}] IS NOT NULL) "
        f"OR (t.[{c}] IS NOT NULL AND s.[{c}] IS NULL))"
        for c in content
    )
    updates = ", ".join(f"t.[{c}] = s.[{c}]" for c in [*content, "source_file"])
    cols = ", ".join(f"[{c}]" for c in [*STAGE_COLUMNS, "loaded_at"])
    values = ", ".join(f"s.[{c}]" for c in STAGE_COLUMNS)
    return text(
        "MERGE INTO [sales] WITH (HOLDLOCK) AS t USING [#stg_sales] AS s "
        "ON t.[transaction_id] = s.[transaction_id] "
        f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {updates}, t.[loaded_at] = :loaded_at "
        f"WHEN NOT MATCHED BY TARGET THEN INSERT ({cols}) VALUES ({values}, :loaded_at);"
    ).bindparams(loaded_at=loaded_at)
