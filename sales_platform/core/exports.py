"""Exports of the aggregate tables as CSV, one file per table and year, only for changed years.

Changed years are the years of the days logged for the exports in agg_changes (core/warehouse/
aggregates.py). A year left without rows is written as a header-only file, not deleted: a copy job
that only picks up new or modified files (ADF, Power BI refreshes) then sees the year go to zero.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, Integer, Table, cast, delete, extract, insert, select

from sales_platform.core.csvsafe import safe_row
from sales_platform.core.warehouse import aggregates as agg
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
    """Write each changed (table, year) to ``exports/<name>/<year>.csv`` through ``put_file``
    (every year with rows or an earlier export when not ``only_changed``)."""
    changes = agg.pending_changes(engine, agg.EXPORTS)
    # days the monthly/yearly rollups have not applied yet: exported as they stand, kept pending so
    # the run after the rollups writes those years again
    held = agg.pending_changes(engine, agg.MONTHLY).days | agg.pending_changes(engine, agg.YEARLY).days
    exported: list[ExportedFile] = []
    with tempfile.TemporaryDirectory(prefix="sales_platform_export_") as tmp:
        for name, table in EXPORTS.items():
            years = changes.years if only_changed else _all_years(engine, name, table, changes.years)
            for year in years:
                path = Path(tmp) / f"{name}-{year}.csv"
                rows = _write_csv(engine, table, year, path)
                blob_name = blob_name_of(name, year)
                location = put_file(blob_name, path)
                _log(engine, name, year, blob_name, rows, now)
                exported.append(ExportedFile(name, year, blob_name, rows, location))
    agg.acknowledge(engine, changes, keep=held)
    return exported


def blob_name_of(name: str, year: int) -> str:
    return f"{PREFIX}/{name}/{year}.csv"


def _all_years(engine: Engine, name: str, table: Table, pending: list[int]) -> list[int]:
    """Years with rows, years exported before (they may have none left) and years pending."""
    log = export_log.c
    with engine.connect() as conn:
        years = {int(y) for y in conn.execute(select(_year_of(table)).distinct()).scalars()}
        years |= {int(y) for y in conn.execute(select(log.year).where(log.export_name == name)).scalars()}
    return sorted(years | set(pending))


def _log(engine: Engine, name: str, year: int, blob_name: str, rows: int, now: datetime) -> None:
    log = export_log.c
    with engine.begin() as conn:
        conn.execute(delete(export_log).where(log.export_name == name, log.year == year))
        conn.execute(insert(export_log).values(export_name=name, year=year, blob_name=blob_name,
                                               rows=rows, exported_at=now))


# --- checks: every exported file adds up to agg_sales_daily's year -------------------------------------

Totals = tuple[int, int, Decimal]  # transactions, total quantity, total revenue


def _file_totals(text: str) -> Totals | None:
    """The sums of an export file's rows; None for a header-only file (a year without rows)."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        return None
    return (sum(int(r["transactions"]) for r in rows), sum(int(r["total_quantity"]) for r in rows),
            sum((Decimal(r["total_revenue"] or 0) for r in rows), Decimal(0)).quantize(Decimal("0.01")))


def _exported_years(names: list[str], name: str) -> dict[int, str]:
    folder = f"{PREFIX}/{name}/"
    found = {}
    for blob in names:
        stem = blob.removeprefix(folder).removesuffix(".csv")
        if blob.startswith(folder) and blob.endswith(".csv") and stem.isdigit():
            found[int(stem)] = blob
    return found


def export_mismatches(engine: Engine, list_names: Callable[[str], list[str]],
                      get_bytes: Callable[[str], bytes]) -> list[dict]:
    """(year, export) pairs whose file does not add up to agg_sales_daily's totals of the year: a
    year with daily rows needs a file with the same transactions, quantity and revenue; a year
    without them no file or a header-only one."""
    expected = agg.daily_totals_by_year(engine)
    names = list_names(f"{PREFIX}/")
    differences = []
    for name in EXPORTS:
        files = _exported_years(names, name)
        for year in sorted(set(expected) | set(files)):
            actual = _file_totals(get_bytes(files[year]).decode("utf-8")) if year in files else None
            if actual != expected.get(year):
                differences.append({"period": f"{year} {name}", "expected": str(expected.get(year)),
                                    "actual": str(actual) if year in files else "no file"})
    return sorted(differences, key=lambda d: d["period"])


def yearly_json_rows(engine: Engine, years_held: list[int]) -> list[dict]:
    """The yearly aggregate as the API's records, and a zero record for every year ``years_held``
    (by the API) that has no row any more: posting replaces each year, so a year that lost all its
    sales must be sent as zero, or the API keeps its old numbers."""
    t = agg_sales_yearly.c
    with engine.connect() as conn:
        rows = {int(r.year): {"year": int(r.year), "transactions": int(r.transactions),
                              "total_quantity": int(r.total_quantity),
                              "total_revenue": float(r.total_revenue)}
                for r in conn.execute(select(t.year, t.transactions, t.total_quantity, t.total_revenue))}
    for year in set(years_held) - set(rows):
        rows[year] = {"year": year, "transactions": 0, "total_quantity": 0, "total_revenue": 0.0}
    return [rows[y] for y in sorted(rows)]


def yearly_json_mismatches(engine: Engine, records: dict[str, list[dict]]) -> list[dict]:
    """Years where a yearly JSON (``records``: where it was read -> its records) differs from
    agg_sales_daily summed by year; a year without daily rows must be absent or zero."""
    expected = agg.daily_totals_by_year(engine)
    zero: Totals = (0, 0, Decimal("0.00"))
    differences = []
    for where, rows in records.items():
        actual = {int(r["year"]): (int(r["transactions"]), int(r["total_quantity"]),
                                   Decimal(str(r["total_revenue"])).quantize(Decimal("0.01")))
                  for r in rows}
        for year in sorted(set(expected) | set(actual)):
            want = expected.get(year, zero)
            if actual.get(year, zero) != want:
                differences.append({"period": f"{year} {where}", "expected": str(want),
                                    "actual": str(actual.get(year))})
    return sorted(differences, key=lambda d: d["period"])
