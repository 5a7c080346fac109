"""Aggregate tables, recomputed only for the days, months and years given (delete + insert per key)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
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
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from sales_platform.core.categories import LABELS, UNPRICED, mean
from sales_platform.core.warehouse.tables import (
    agg_sales_by_category_monthly,
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_monthly,
    agg_sales_yearly,
    dim_products,
    sales,
)

_priced = sales.outerjoin(dim_products, dim_products.c.product_token == sales.c.product_id)
_revenue = func.coalesce(func.sum(sales.c.quantity * dim_products.c.unit_price), 0)


def _year(column):
    return cast(extract("year", column), Integer)


def _month(column):
    return cast(extract("month", column), Integer)


def _replace(engine: Engine, table: Table, where, columns: list[str], source) -> int:
    with engine.begin() as conn:
        conn.execute(delete(table).where(where))
        return conn.execute(insert(table).from_select(columns, source)).rowcount or 0


def refresh_daily(engine: Engine, days: Sequence[date], now: datetime) -> int:
    """agg_sales_daily for ``days``: revenue = quantity x the product's unit price."""
    source = (
        select(sales.c.sale_date, func.count(), func.sum(sales.c.quantity), _revenue, literal(now))
        .select_from(_priced).where(sales.c.sale_date.in_(list(days))).group_by(sales.c.sale_date)
    )
    return _replace(engine, agg_sales_daily, agg_sales_daily.c.sale_date.in_(list(days)),
                    ["sale_date", "transactions", "total_quantity", "total_revenue", "refreshed_at"],
                    source)


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
                     "total_quantity", "total_revenue", "refreshed_at"], source)


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
                     "refreshed_at"], source)


def _totals():
    d = agg_sales_daily.c
    return [func.sum(d.transactions), func.sum(d.total_quantity), func.sum(d.total_revenue)]


def refresh_monthly(engine: Engine, months: Sequence[tuple[int, int]], now: datetime) -> int:
    d = agg_sales_daily.c
    key = tuple_(_year(d.sale_date), _month(d.sale_date))
    wanted = or_(*(and_(_year(d.sale_date) == y, _month(d.sale_date) == m) for y, m in months))
    source = (select(_year(d.sale_date), _month(d.sale_date), *_totals(), literal(now))
              .where(wanted).group_by(*key.clauses))
    m = agg_sales_monthly.c
    where = or_(*(and_(m.year == y, m.month == mo) for y, mo in months))
    return _replace(engine, agg_sales_monthly, where,
                    ["year", "month", "transactions", "total_quantity", "total_revenue",
                     "refreshed_at"], source)


def refresh_yearly(engine: Engine, years: Sequence[int], now: datetime) -> int:
    d = agg_sales_daily.c
    source = (select(_year(d.sale_date), *_totals(), literal(now))
              .where(_year(d.sale_date).in_(list(years))).group_by(_year(d.sale_date)))
    return _replace(engine, agg_sales_yearly, agg_sales_yearly.c.year.in_(list(years)),
                    ["year", "transactions", "total_quantity", "total_revenue", "refreshed_at"],
                    source)


def changed_years(engine: Engine) -> list[int]:
    """Years whose daily aggregates were refreshed after the yearly row (or have none)."""
    d, y = agg_sales_daily.c, agg_sales_yearly.c
    daily = (select(_year(d.sale_date).label("year"), func.max(d.refreshed_at).label("latest"))
             .group_by(_year(d.sale_date)).subquery())
    query = (select(daily.c.year).select_from(daily.outerjoin(agg_sales_yearly, y.year == daily.c.year))
             .where(or_(y.refreshed_at.is_(None), daily.c.latest > y.refreshed_at)))
    with engine.connect() as conn:
        return sorted(int(v) for v in conn.execute(query).scalars())


def changed_months(engine: Engine) -> list[tuple[int, int]]:
    d, m = agg_sales_daily.c, agg_sales_monthly.c
    daily = (select(_year(d.sale_date).label("year"), _month(d.sale_date).label("month"),
                    func.max(d.refreshed_at).label("latest"))
             .group_by(_year(d.sale_date), _month(d.sale_date)).subquery())
    query = (select(daily.c.year, daily.c.month)
             .select_from(daily.outerjoin(agg_sales_monthly, and_(m.year == daily.c.year,
                                                                  m.month == daily.c.month)))
             .where(or_(m.refreshed_at.is_(None), daily.c.latest > m.refreshed_at)))
    with engine.connect() as conn:
        return sorted((int(a), int(b)) for a, b in conn.execute(query).all())


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


def _category_rows(engine: Engine, months: Sequence[tuple[int, int]],
                   bins: Sequence[Decimal]) -> dict[tuple[int, int, str], tuple[int, Decimal | None]]:
    """(year, month, category) -> (transactions, total revenue) from the sales rows of ``months``."""
    low, high = (float(b) for b in bins)
    amount = func.round(sales.c.quantity * dim_products.c.unit_price, 2)
    category = case((dim_products.c.unit_price.is_(None), UNPRICED), (amount <= low, LABELS[0]),
                    (amount <= high, LABELS[1]), else_=LABELS[2])
    rows = (select(_year(sales.c.sale_date).label("year"), _month(sales.c.sale_date).label("month"),
                   category.label("category"), amount.label("amount"))
            .select_from(_priced).where(_in_months(sales.c.sale_date, months)).subquery())
    query = (select(rows.c.year, rows.c.month, rows.c.category, func.count(), func.sum(rows.c.amount))
             .group_by(rows.c.year, rows.c.month, rows.c.category))
    with engine.connect() as conn:
        return {(int(y), int(m), c): (int(n), None if total is None else Decimal(str(total)))
                for y, m, c, n, total in conn.execute(query)}


def refresh_by_category_monthly(engine: Engine, months: Sequence[tuple[int, int]],
                                bins: Sequence[Decimal], now: datetime) -> int:
    """agg_sales_by_category_monthly for ``months``: every (month, Low/Medium/High) row, filled
    with zeros when empty, plus an Unpriced row when sales had no price (see core/categories.py)."""
    found = _category_rows(engine, months, bins)
    label = ",".join(str(b) for b in bins)
    rows = []
    for year, month in months:
        for category in (*LABELS, UNPRICED):
            count, total = found.get((year, month, category), (0, None))
            if category == UNPRICED:
                if not count:
                    continue
                total = None  # revenue unknown: never filled with 0
            else:
                total = (total or Decimal(0)).quantize(Decimal("0.01"))
            rows.append({"year": year, "month": month, "sales_category": category,
                         "transactions": count, "total_revenue": total,
                         "mean_revenue": mean(total, count), "bins": label, "refreshed_at": now})
    t = agg_sales_by_category_monthly
    with engine.begin() as conn:
        conn.execute(delete(t).where(or_(*(and_(t.c.year == y, t.c.month == m) for y, m in months))))
        if rows:
            conn.execute(insert(t), rows)
    return len(rows)


def changed_category_months(engine: Engine, bins: Sequence[Decimal]) -> list[tuple[int, int]]:
    """Months whose daily aggregates were refreshed after their category rows, that have none, or
    whose rows were cut with other bins (the setting changed)."""
    d, c = agg_sales_daily.c, agg_sales_by_category_monthly.c
    daily = (select(_year(d.sale_date).label("year"), _month(d.sale_date).label("month"),
                    func.max(d.refreshed_at).label("latest"))
             .group_by(_year(d.sale_date), _month(d.sale_date)).subquery())
    mine = (select(c.year, c.month, func.min(c.refreshed_at).label("at"), func.min(c.bins).label("lo"),
                   func.max(c.bins).label("hi")).group_by(c.year, c.month).subquery())
    label = ",".join(str(b) for b in bins)
    query = (select(daily.c.year, daily.c.month)
             .select_from(daily.outerjoin(mine, and_(mine.c.year == daily.c.year,
                                                     mine.c.month == daily.c.month)))
             .where(or_(mine.c.at.is_(None), daily.c.latest > mine.c.at, mine.c.lo != label,
                        mine.c.hi != label)))
    with engine.connect() as conn:
        return sorted((int(a), int(b)) for a, b in conn.execute(query).all())


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


def monthly_mismatches(engine: Engine) -> list[dict]:
    """Months whose agg_sales_monthly row differs from the sum of their agg_sales_daily rows (or exists
    on one side only): the rollup must be the daily table summed, whichever run wrote it."""
    with engine.connect() as conn:
        daily = conn.execute(
            select(_year(agg_sales_daily.c.sale_date), _month(agg_sales_daily.c.sale_date),
                   func.sum(agg_sales_daily.c.transactions), func.sum(agg_sales_daily.c.total_quantity),
                   func.sum(agg_sales_daily.c.total_revenue))
            .group_by(_year(agg_sales_daily.c.sale_date), _month(agg_sales_daily.c.sale_date))).all()
        monthly = conn.execute(select(agg_sales_monthly.c.year, agg_sales_monthly.c.month,
                                      agg_sales_monthly.c.transactions, agg_sales_monthly.c.total_quantity,
                                      agg_sales_monthly.c.total_revenue)).all()
    by_daily = {(int(y), int(m)): (int(t), int(q), Decimal(str(r)).quantize(Decimal("0.01")))
                for y, m, t, q, r in daily}
    by_monthly = {(int(y), int(m)): (int(t), int(q), Decimal(str(r)).quantize(Decimal("0.01")))
                  for y, m, t, q, r in monthly}
    months = sorted(set(by_daily) | set(by_monthly))
    return [{"month": f"{y}-{m:02d}", "daily": str(by_daily.get((y, m))),
             "monthly": str(by_monthly.get((y, m)))}
            for y, m in months if by_daily.get((y, m)) != by_monthly.get((y, m))]
