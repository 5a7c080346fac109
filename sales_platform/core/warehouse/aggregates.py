"""Aggregate tables, recomputed only for the days, months and years given (delete + insert per key).

Which periods need a refresh has one answer, the change log ``agg_changes``: every rewrite of a day's
aggregates logs the day for each consumer (the rollups and the exports), also when the day lost all
its rows. A consumer recomputes the months or years of the days logged for it from its source, removes
periods left without rows, then deletes exactly the entries it read (one logged meanwhile stays).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from sales_platform.core.categories import CENT, LABELS, UNPRICED, mean
from sales_platform.core.warehouse.tables import (
    agg_changes,
    agg_sales_by_category_monthly,
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_monthly,
    agg_sales_yearly,
    dim_products,
    export_log,
    sales,
)

_priced = sales.outerjoin(dim_products, dim_products.c.product_token == sales.c.product_id)
_revenue = func.coalesce(func.sum(sales.c.quantity * dim_products.c.unit_price), 0)


def _year(column):
    return cast(extract("year", column), Integer)


def _month(column):
    return cast(extract("month", column), Integer)


# --- the change log: which periods need a refresh -----------------------------------------------------

MONTHLY, YEARLY, CATEGORY, EXPORTS = ("agg_sales_monthly", "agg_sales_yearly",
                                      "agg_sales_by_category_monthly", "agg_exports")
CONSUMERS = (MONTHLY, YEARLY, CATEGORY, EXPORTS)
_CHUNK = 500  # ids per DELETE ... IN (...): under every dialect's parameter limit


def log_days(conn: Connection, days: Iterable[date], now: datetime,
             consumers: Sequence[str] = CONSUMERS) -> None:
    """Log ``days`` as changed for ``consumers``, in the caller's transaction (the one that changed
    them): a new entry each time, so an entry read by a running consumer is never overwritten."""
    rows = [{"consumer": c, "sale_date": d, "logged_at": now} for d in sorted(set(days))
            for c in consumers]
    if rows:
        conn.execute(insert(agg_changes), rows)


@dataclass(frozen=True)
class Changes:
    """The entries logged for one consumer and not yet applied."""

    consumer: str
    entries: tuple[tuple[int, date], ...]  # (change_id, sale_date)

    @property
    def days(self) -> set[date]:
        return {day for _, day in self.entries}

    @property
    def months(self) -> list[tuple[int, int]]:
        return sorted({(d.year, d.month) for d in self.days})

    @property
    def years(self) -> list[int]:
        return sorted({d.year for d in self.days})


def pending_changes(engine: Engine, consumer: str) -> Changes:
    c = agg_changes.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.change_id, c.sale_date).where(c.consumer == consumer)
                            .order_by(c.change_id)).all()
    return Changes(consumer, tuple((int(i), _as_date(d)) for i, d in rows))


def acknowledge(engine: Engine, changes: Changes, keep: Iterable[date] = ()) -> int:
    """Delete the entries ``changes`` read (not those of ``keep`` days): applied."""
    held = set(keep)
    ids = [i for i, day in changes.entries if day not in held]
    with engine.begin() as conn:
        for start in range(0, len(ids), _CHUNK):
            conn.execute(delete(agg_changes).where(agg_changes.c.change_id.in_(ids[start:start + _CHUNK])))
    return len(ids)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def log_everything(conn: Connection, now: datetime) -> int:
    """Log every period any aggregate or export holds, for every consumer: the next rollups and
    exports rebuild them all (upgrading from the max(refreshed_at) rule, which could leave periods
    stale, and the runbook's full rebuild)."""
    d, m, y = agg_sales_daily.c, agg_sales_monthly.c, agg_sales_yearly.c
    c, e = agg_sales_by_category_monthly.c, export_log.c
    days = {_as_date(v) for v in conn.execute(select(d.sale_date).distinct()).scalars()}
    days |= {_as_date(v) for v in conn.execute(select(sales.c.sale_date).distinct()).scalars()}
    for table in (m, c):
        days |= {date(int(a), int(b), 1)
                 for a, b in conn.execute(select(table.year, table.month).distinct()).all()}
    for column in (y.year, e.year):
        days |= {date(int(v), 1, 1) for v in conn.execute(select(column).distinct()).scalars()}
    log_days(conn, days, now)
    return len(days)


def _replace(engine: Engine, table: Table, where, columns: list[str], source,
             changed: Sequence[date] = (), now: datetime | None = None) -> int:
    """Delete + insert in one transaction; the ``changed`` days are logged in it too."""
    with engine.begin() as conn:
        conn.execute(delete(table).where(where))
        written = conn.execute(insert(table).from_select(columns, source)).rowcount or 0
        if changed and now is not None:
            log_days(conn, changed, now)
        return written


def refresh_daily(engine: Engine, days: Sequence[date], now: datetime) -> int:
    """agg_sales_daily for ``days``: revenue = quantity x the product's unit price."""
    source = (
        select(sales.c.sale_date, func.count(), func.sum(sales.c.quantity), _revenue, literal(now))
        .select_from(_priced).where(sales.c.sale_date.in_(list(days))).group_by(sales.c.sale_date)
    )
    return _replace(engine, agg_sales_daily, agg_sales_daily.c.sale_date.in_(list(days)),
                    ["sale_date", "transactions", "total_quantity", "total_revenue", "refreshed_at"],
                    source, days, now)


def refresh_by_product(engine: Engine, days: Sequence[date], now: datetime) -> int:
    """Per day and product, with the product's name and category from dim_products."""
    source = (
        select(sales.c.sale_date, sales.c.product_id, func.max(dim_products.c.name),
               func.max(dim_products.c.category), func.count(), func.sum(sales.c.quantity),
               func.sum(sales.c.quantity * dim_products.c.unit_price), literal(now))
        .select_from(_priced).where(sales.c.sale_date.in_(list(days)))
        .group_by(sales.c.sale_date, sales.c.product_id)
    )
    return _replace(engine, agg_sales_by_product, agg_sales_by_product.c.sale_date.in_(list(days)),
                    ["sale_date", "product_token", "product_name", "category", "transactions",
                     "total_quantity", "total_revenue", "refreshed_at"], source, days, now)


def refresh_by_customer(engine: Engine, days: Sequence[date], now: datetime) -> int:
    """Per day and customer token (never plaintext)."""
    source = (
        select(sales.c.sale_date, sales.c.customer_id, func.count(), func.sum(sales.c.quantity),
               _revenue, literal(now))
        .select_from(_priced).where(sales.c.sale_date.in_(list(days)))
        .group_by(sales.c.sale_date, sales.c.customer_id)
    )
    return _replace(engine, agg_sales_by_customer, agg_sales_by_customer.c.sale_date.in_(list(days)),
                    ["sale_date", "customer_token", "transactions", "total_quantity", "total_revenue",
                     "refreshed_at"], source, days, now)


def _totals():
    d = agg_sales_daily.c
    return [func.sum(d.transactions), func.sum(d.total_quantity), func.sum(d.total_revenue)]


def _months_where(year_col, month_col, months: Sequence[tuple[int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(year_col == y, month_col == m) for y, m in months))


def refresh_monthly(engine: Engine, months: Sequence[tuple[int, int]], now: datetime) -> int:
    """agg_sales_monthly for ``months`` from agg_sales_daily; a month without daily rows is removed."""
    if not months:
        return 0
    d, m = agg_sales_daily.c, agg_sales_monthly.c
    source = (select(_year(d.sale_date), _month(d.sale_date), *_totals(), literal(now))
              .where(_in_months(d.sale_date, months))
              .group_by(_year(d.sale_date), _month(d.sale_date)))
    return _replace(engine, agg_sales_monthly, _months_where(m.year, m.month, months),
                    ["year", "month", "transactions", "total_quantity", "total_revenue",
                     "refreshed_at"], source)


def refresh_yearly(engine: Engine, years: Sequence[int], now: datetime) -> int:
    """agg_sales_yearly for ``years`` from agg_sales_daily; a year without daily rows is removed."""
    if not years:
        return 0
    d = agg_sales_daily.c
    source = (select(_year(d.sale_date), *_totals(), literal(now))
              .where(_in_years(d.sale_date, years)).group_by(_year(d.sale_date)))
    return _replace(engine, agg_sales_yearly, agg_sales_yearly.c.year.in_(list(years)),
                    ["year", "transactions", "total_quantity", "total_revenue", "refreshed_at"],
                    source)


def apply_monthly(engine: Engine, now: datetime) -> list[tuple[int, int]]:
    """The months of the days logged since: recomputed, then acknowledged. Returns them."""
    changes = pending_changes(engine, MONTHLY)
    refresh_monthly(engine, changes.months, now)
    acknowledge(engine, changes)
    return changes.months


def apply_yearly(engine: Engine, now: datetime) -> list[int]:
    changes = pending_changes(engine, YEARLY)
    refresh_yearly(engine, changes.years, now)
    acknowledge(engine, changes)
    return changes.years


def unpriced_rows(engine: Engine, days: Sequence[date]) -> int:
    """Sales rows of ``days`` whose product has no price in dim_products (revenue unknown)."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(_priced)
            .where(sales.c.sale_date.in_(list(days)), dim_products.c.product_token.is_(None))
        ).scalar_one()




# --- sales categories by month (rules and fill policy in core/categories.py) ------------------------

def _month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)


def _in_months(column, months: Sequence[tuple[int, int]]) -> ColumnElement[bool]:
    # date ranges, not extract(): the sale_date index serves them
    return or_(*(and_(column >= a, column < b) for a, b in (_month_bounds(y, m) for y, m in months)))


def _in_years(column, years: Sequence[int]) -> ColumnElement[bool]:
    return or_(*(and_(column >= date(y, 1, 1), column < date(y + 1, 1, 1)) for y in years))


CategoryKey = tuple[int, int, str]  # year, month, sales_category


def _category_rows(engine: Engine, months: Sequence[tuple[int, int]] | None,
                   bins: Sequence[Decimal]) -> dict[CategoryKey, tuple[int, Decimal | None]]:
    """(year, month, category) -> (transactions, total revenue) from the sales rows of ``months``
    (None: every month)."""
    low, high = (float(b) for b in bins)
    amount = func.round(sales.c.quantity * dim_products.c.unit_price, 2)
    category = case((dim_products.c.unit_price.is_(None), UNPRICED), (amount <= low, LABELS[0]),
                    (amount <= high, LABELS[1]), else_=LABELS[2])
    rows = (select(_year(sales.c.sale_date).label("year"), _month(sales.c.sale_date).label("month"),
                   category.label("category"), amount.label("amount")).select_from(_priced))
    if months is not None:
        rows = rows.where(_in_months(sales.c.sale_date, months))
    inner = rows.subquery()
    query = (select(inner.c.year, inner.c.month, inner.c.category, func.count(), func.sum(inner.c.amount))
             .group_by(inner.c.year, inner.c.month, inner.c.category))
    with engine.connect() as conn:
        return {(int(y), int(m), c): (int(n), None if total is None else Decimal(str(total)))
                for y, m, c, n, total in conn.execute(query)}


def _category_table(found: dict[CategoryKey, tuple[int, Decimal | None]]) -> list[dict]:
    """The rows of every month that has sales: each Low/Medium/High (zeros when empty), plus
    Unpriced when sales had no price. A month without sales gets no row (it has no period)."""
    rows = []
    for year, month in sorted({(y, m) for y, m, _ in found}):
        for category in (*LABELS, UNPRICED):
            count, total = found.get((year, month, category), (0, None))
            if category == UNPRICED:
                if not count:
                    continue
                total = None  # revenue unknown: never filled with 0
            else:
                total = (total or Decimal(0)).quantize(CENT)
            rows.append({"year": year, "month": month, "sales_category": category,
                         "transactions": count, "total_revenue": total,
                         "mean_revenue": mean(total, count)})
    return rows


def refresh_by_category_monthly(engine: Engine, months: Sequence[tuple[int, int]],
                                bins: Sequence[Decimal], now: datetime) -> int:
    """agg_sales_by_category_monthly for ``months`` (fill rules in core/categories.py); a month
    without sales is removed."""
    if not months:
        return 0
    label = ",".join(str(b) for b in bins)
    rows = [{**row, "bins": label, "refreshed_at": now}
            for row in _category_table(_category_rows(engine, months, bins))]
    t = agg_sales_by_category_monthly
    with engine.begin() as conn:
        conn.execute(delete(t).where(_months_where(t.c.year, t.c.month, months)))
        if rows:
            conn.execute(insert(t), rows)
    return len(rows)


def months_cut_with_other_bins(engine: Engine, bins: Sequence[Decimal]) -> list[tuple[int, int]]:
    """Months whose category rows were cut with other bins (the setting changed)."""
    c = agg_sales_by_category_monthly.c
    label = ",".join(str(b) for b in bins)
    with engine.connect() as conn:
        return sorted((int(a), int(b)) for a, b in conn.execute(
            select(c.year, c.month).where(c.bins != label).distinct()).all())


def apply_by_category_monthly(engine: Engine, bins: Sequence[Decimal],
                              now: datetime) -> tuple[list[tuple[int, int]], int]:
    """The months of the days logged since, and those cut with other bins: recomputed from sales,
    then acknowledged. Returns (months, rows written)."""
    changes = pending_changes(engine, CATEGORY)
    months = sorted(set(changes.months) | set(months_cut_with_other_bins(engine, bins)))
    written = refresh_by_category_monthly(engine, months, bins, now)
    acknowledge(engine, changes)
    return months, written


# --- checks: each rollup recomputed from its source with one GROUP BY, and compared ------------------

def _money(value) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(CENT)


def _differences(expected: dict, actual: dict, label) -> list[dict]:
    """Periods whose values differ (or exist on one side only), in period order."""
    return [{"period": label(k), "expected": str(expected.get(k)), "actual": str(actual.get(k))}
            for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]


def _month_label(key) -> str:
    return f"{key[0]}-{key[1]:02d}" + (f" {key[2]}" if len(key) > 2 else "")


def _daily_totals(conn: Connection, *keys) -> dict:
    rows = conn.execute(select(*keys, *_totals()).group_by(*keys)).all()
    return {tuple(int(k) for k in r[:-3]): (int(r[-3]), int(r[-2]), _money(r[-1])) for r in rows}


def _table_totals(conn: Connection, table: Table, *keys: str) -> dict:
    t = table.c
    rows = conn.execute(select(*(t[k] for k in keys), t.transactions, t.total_quantity,
                               t.total_revenue)).all()
    return {tuple(int(k) for k in r[:-3]): (int(r[-3]), int(r[-2]), _money(r[-1])) for r in rows}


def daily_totals_by_year(engine: Engine) -> dict[int, tuple[int, int, Decimal | None]]:
    """year -> (transactions, quantity, revenue) summed from agg_sales_daily: what every yearly
    export must add up to."""
    d = agg_sales_daily.c
    with engine.connect() as conn:
        return {k[0]: v for k, v in _daily_totals(conn, _year(d.sale_date)).items()}


def monthly_mismatches(engine: Engine) -> list[dict]:
    """Months whose agg_sales_monthly row differs from the sum of their agg_sales_daily rows (or exists
    on one side only): the rollup must be the daily table summed, whichever run wrote it."""
    d = agg_sales_daily.c
    with engine.connect() as conn:
        expected = _daily_totals(conn, _year(d.sale_date), _month(d.sale_date))
        actual = _table_totals(conn, agg_sales_monthly, "year", "month")
    return _differences(expected, actual, _month_label)


def yearly_mismatches(engine: Engine) -> list[dict]:
    """Years whose agg_sales_yearly row differs from the sum of their agg_sales_daily rows."""
    d = agg_sales_daily.c
    with engine.connect() as conn:
        expected = _daily_totals(conn, _year(d.sale_date))
        actual = _table_totals(conn, agg_sales_yearly, "year")
    return _differences(expected, actual, lambda k: str(k[0]))


def category_mismatches(engine: Engine, bins: Sequence[Decimal]) -> list[dict]:
    """(month, category) rows of agg_sales_by_category_monthly that differ from the rows recomputed
    from sales and dim_products with ``bins`` (or exist on one side only)."""
    label = ",".join(str(b) for b in bins)
    expected = {(r["year"], r["month"], r["sales_category"]):
                (r["transactions"], _money(r["total_revenue"]), _money(r["mean_revenue"]), label)
                for r in _category_table(_category_rows(engine, None, bins))}
    with engine.connect() as conn:
        actual = {(int(r.year), int(r.month), r.sales_category):
                  (int(r.transactions), _money(r.total_revenue), _money(r.mean_revenue), r.bins)
                  for r in conn.execute(select(agg_sales_by_category_monthly))}
    return _differences(expected, actual, _month_label)


def pending_periods(engine: Engine, consumer: str) -> set[str]:
    """The months and years (as the checks label them) with changes logged for ``consumer``."""
    changes = pending_changes(engine, consumer)
    return {*(_month_label(m) for m in changes.months), *(str(y) for y in changes.years)}


def monthly_frame(engine: Engine):
    """agg_sales_monthly as a DataFrame (revenue as float): what the rollup check validates."""
    import pandas as pd

    with engine.connect() as conn:
        rows = conn.execute(select(agg_sales_monthly.c.year, agg_sales_monthly.c.month,
                                   agg_sales_monthly.c.transactions, agg_sales_monthly.c.total_quantity,
                                   agg_sales_monthly.c.total_revenue)
                            .order_by(agg_sales_monthly.c.year, agg_sales_monthly.c.month)).all()
    frame = pd.DataFrame(rows, columns=["year", "month", "transactions", "total_quantity", "total_revenue"])
    return frame.astype({"year": "int64", "month": "int64", "transactions": "int64",
                         "total_quantity": "int64", "total_revenue": "float64"})


