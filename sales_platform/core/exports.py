"""Exports of the aggregate tables as CSV, one file per table and year, only for changed years."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, Integer, Table, and_, cast, delete, extract, func, insert, or_, select

from sales_platform.core.csvsafe import safe_row
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_monthly,
    agg_sales_yearly,
    export_log,
)

# export name -> table; the name is the folder under exports/ (what ADF / Power BI point at)
EXPORTS: dict[str, Table] = {
    "agg_sales_by_day": agg_sales_daily,
    "agg_sales_by_month": agg_sales_monthly,
    "agg_sales_by_year": agg_sales_yearly,
    "agg_sales_by_product": agg_sales_by_product,
    "agg_sales_by_customer": agg_sales_by_customer,
}
PREFIX = "exports"


@dataclass
class ExportedFile:
    export_name: str
    year: int
    blob_name: str
    rows: int
    location: str


def _year_of(table: Table):
    if "year" in table.c:
        return table.c.year
    return cast(extract("year", table.c.sale_date), Integer)


def export_columns(table: Table) -> list[str]:
    """Stable column order: the table's own order, without the bookkeeping column."""
    return [c.name for c in table.columns if c.name != "refreshed_at"]


def changed_years(engine: Engine, name: str, table: Table) -> list[int]:
    year = _year_of(table)
    latest = (select(year.label("year"), func.max(table.c.refreshed_at).label("latest"))
              .group_by(year).subquery())
    log = export_log.c
    query = (select(latest.c.year)
             .select_from(latest.outerjoin(export_log, and_(log.export_name == name,
                                                           log.year == latest.c.year)))
             .where(or_(log.exported_at.is_(None), latest.c.latest > log.exported_at)))
    with engine.connect() as conn:
        return sorted(int(y) for y in conn.execute(query).scalars())


def _write_csv(engine: Engine, table: Table, year: int, path: Path) -> int:
    columns = export_columns(table)
    query = (select(*(table.c[c] for c in columns)).where(_year_of(table) == year)
             .order_by(*(c for c in table.primary_key.columns)))
    rows = 0
    with open(path, "w", newline="") as handle, engine.connect() as conn:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in conn.execution_options(yield_per=50_000).execute(query):
            writer.writerow(safe_row(row))  # product names are anyone's text: no formulas
            rows += 1
    return rows


def export_aggregates(engine: Engine, put_file: Callable[[str, Path], str], now: datetime,
                      only_changed: bool = True) -> list[ExportedFile]:
    """Write each changed (table, year) to ``exports/<name>/<year>.csv`` through ``put_file``."""
    exported: list[ExportedFile] = []
    with tempfile.TemporaryDirectory(prefix="sales_platform_export_") as tmp:
        for name, table in EXPORTS.items():
            years = changed_years(engine, name, table) if only_changed else _all_years(engine, table)
            for year in years:
                path = Path(tmp) / f"{name}-{year}.csv"
                rows = _write_csv(engine, table, year, path)
                blob_name = f"{PREFIX}/{name}/{year}.csv"
                location = put_file(blob_name, path)
                _log(engine, name, year, blob_name, rows, now)
                exported.append(ExportedFile(name, year, blob_name, rows, location))
    return exported


def _all_years(engine: Engine, table: Table) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(y) for y in conn.execute(select(_year_of(table)).distinct()).scalars())


def _log(engine: Engine, name: str, year: int, blob_name: str, rows: int, now: datetime) -> None:
    log = export_log.c
    with engine.begin() as conn:
        conn.execute(delete(export_log).where(log.export_name == name, log.year == year))
        conn.execute(insert(export_log).values(export_name=name, year=year, blob_name=blob_name,
                                               rows=rows, exported_at=now))
