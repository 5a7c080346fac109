"""Aggregate tables, recomputed only for the days and years given (delete + insert per key)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import Engine, Integer, cast, delete, extract, func, insert, literal, select

from sales_platform.core.warehouse.tables import (
    agg_sales_daily,
    agg_sales_yearly,
    dim_products,
    sales,
)


def refresh_daily(engine: Engine, days: Sequence[date], now: datetime) -> int:
    """Recompute agg_sales_daily for ``days`` from sales joined to product unit prices."""
    revenue = func.coalesce(func.sum(sales.c.quantity * dim_products.c.unit_price), 0)
    source = (
        select(
            sales.c.sale_date,
            func.count().label("transactions"),
            func.sum(sales.c.quantity).label("total_quantity"),
            revenue.label("total_revenue"),
            literal(now).label("refreshed_at"),
        )
        .select_from(sales.outerjoin(dim_products,
                                     dim_products.c.product_token == sales.c.product_id))
        .where(sales.c.sale_date.in_(list(days)))
        .group_by(sales.c.sale_date)
    )
    with engine.begin() as conn:
        conn.execute(delete(agg_sales_daily).where(agg_sales_daily.c.sale_date.in_(list(days))))
        result = conn.execute(insert(agg_sales_daily).from_select(
            ["sale_date", "transactions", "total_quantity", "total_revenue", "refreshed_at"],
            source))
        return result.rowcount or 0


def refresh_yearly(engine: Engine, years: Sequence[int], now: datetime) -> int:
    year = cast(extract("year", agg_sales_daily.c.sale_date), Integer)
    source = (
        select(
            year.label("year"),
            func.sum(agg_sales_daily.c.transactions),
            func.sum(agg_sales_daily.c.total_quantity),
            func.sum(agg_sales_daily.c.total_revenue),
            literal(now).label("refreshed_at"),
        )
        .where(year.in_(list(years)))
        .group_by(year)
    )
    with engine.begin() as conn:
        conn.execute(delete(agg_sales_yearly).where(agg_sales_yearly.c.year.in_(list(years))))
        result = conn.execute(insert(agg_sales_yearly).from_select(
            ["year", "transactions", "total_quantity", "total_revenue", "refreshed_at"], source))
        return result.rowcount or 0


def unpriced_rows(engine: Engine, days: Sequence[date]) -> int:
    """Sales rows of ``days`` whose product has no price in dim_products (revenue unknown)."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(sales.outerjoin(dim_products,
                                         dim_products.c.product_token == sales.c.product_id))
            .where(sales.c.sale_date.in_(list(days)), dim_products.c.product_id.is_(None))
        ).scalar_one()
