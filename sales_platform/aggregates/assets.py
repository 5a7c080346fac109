"""Aggregates over the sales table, recomputed only for the days and years that changed."""


from datetime import date, datetime, timedelta

import dagster as dg
from sqlalchemy import Integer, cast, extract, func, select

from sales_platform.core.warehouse.aggregates import refresh_daily, refresh_yearly, unpriced_rows
from sales_platform.core.warehouse.tables import agg_sales_daily as daily_table
from sales_platform.core.warehouse.tables import agg_sales_yearly as yearly_table
from sales_platform.metadata import column_schema
from sales_platform.partitions import daily_backfill_policy, daily_partitions
from sales_platform.resources.warehouse import WarehouseResource

FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48))


@dg.asset(
    metadata={"lineage/reads": ["table:sales", "table:dim_products"],
              "lineage/writes": ["table:agg_sales_daily"]},
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    deps=["sales", "dim_products"],
    group_name="aggregates",
    kinds={"sql"},
    owners=["team:analytics"],
    code_version="agg-daily-1",
    freshness_policy=FRESHNESS,
    pool="warehouse_writes",
    description="Per sale date: transactions, total quantity, total revenue (quantity x the "
    "catalogue's unit price).",
)
def agg_sales_daily(context: dg.AssetExecutionContext,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    days = [date.fromisoformat(d) for d in context.partition_keys]
    engine = warehouse.engine()
    written = refresh_daily(engine, days, datetime.now())
    return dg.MaterializeResult(metadata={
        "days_written": written, "rows_without_price": unpriced_rows(engine, days),
        "table": daily_table.name, "dagster/column_schema": column_schema(daily_table),
    })


@dg.asset(
    metadata={"lineage/reads": ["table:agg_sales_daily"],
              "lineage/writes": ["table:agg_sales_yearly"]},
    deps=["agg_sales_daily"],
    group_name="aggregates",
    kinds={"sql"},
    owners=["team:analytics"],
    code_version="agg-yearly-1",
    freshness_policy=FRESHNESS,
    pool="warehouse_writes",
    description="Per year, from agg_sales_daily; only years whose daily aggregates were "
    "refreshed since the year was last computed are recomputed.",
)
def agg_sales_yearly(warehouse: WarehouseResource) -> dg.MaterializeResult:
    engine = warehouse.engine()
    years = changed_years(engine)
    written = refresh_yearly(engine, years, datetime.now()) if years else 0
    return dg.MaterializeResult(metadata={
        "years_recomputed": dg.MetadataValue.json(years), "years_written": written,
        "table": yearly_table.name, "dagster/column_schema": column_schema(yearly_table),
    })


def changed_years(engine) -> list[int]:
    year = cast(extract("year", daily_table.c.sale_date), Integer)
    daily = (select(year.label("year"), func.max(daily_table.c.refreshed_at).label("latest"))
             .group_by(year).subquery())
    query = (select(daily.c.year)
             .select_from(daily.outerjoin(yearly_table, yearly_table.c.year == daily.c.year))
             .where((yearly_table.c.refreshed_at.is_(None))
                    | (daily.c.latest > yearly_table.c.refreshed_at)))
    with engine.connect() as conn:
        return sorted(int(y) for y in conn.execute(query).scalars())
