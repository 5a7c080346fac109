"""Aggregates over the sales table. The daily ones are rewritten with their day and log it in
agg_changes; the rollups recompute exactly the months and years of the days logged for them."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg
from sqlalchemy import Engine, Table

from sales_platform.core.categories import bins_text, category_bins
from sales_platform.core.warehouse import aggregates as agg
from sales_platform.core.warehouse import tables
from sales_platform.core.warehouse.artifacts import record_artifact
from sales_platform.metadata import column_schema, warehouse_kinds
from sales_platform.partitions import daily_partitions
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_code_version, stage_version, versioned_asset

FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48))
COMMON = dict(group_name="aggregates", kinds=warehouse_kinds(), owners=["team:analytics"],
              freshness_policy=FRESHNESS, pool="warehouse_writes")


def _table_metadata(table) -> dict:
    return {"table": table.name, "dagster/column_schema": column_schema(table)}


@dataclass(frozen=True)
class DailyAggregate:
    """A per-day aggregate table, refreshed by the day step right after the day's load (so a blocked
    or failed day keeps its previous rows and gets no new materialization)."""

    table: Table
    refresh: Callable[[Engine, list[date], datetime], int]
    description: str
    count_key: str = "rows_written"
    extra: Callable[[Engine, list[date]], dict] | None = None

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.table.name)

    def spec(self) -> dg.AssetSpec:
        covers = (self.extra, self.table) if self.extra else (self.table,)
        return dg.AssetSpec(
            self.key, deps=["sales", "dim_products"], group_name="aggregates",
            kinds=warehouse_kinds(), owners=["team:analytics"], freshness_policy=FRESHNESS,
            partitions_def=daily_partitions, skippable=True,
            code_version=stage_code_version(self.refresh, covers),
            metadata={"lineage/reads": ["table:sales", "table:dim_products"],
                      "lineage/writes": [f"table:{self.table.name}", f"table:{tables.agg_changes.name}"]},
            description=self.description)

    def refresh_day(self, engine: Engine, day: str, now: datetime) -> dict:
        """The day's rows rewritten from sales and dim_products; the numbers of its materialization."""
        value = date.fromisoformat(day)
        return {self.count_key: self.refresh(engine, [value], now),
                **(self.extra(engine, [value]) if self.extra else {}),
                "table": self.table.name}


def _unpriced_rows(engine: Engine, days: list[date]) -> dict:
    return {"rows_without_price": agg.unpriced_rows(engine, days)}


DAILY_AGGREGATES = (
    DailyAggregate(tables.agg_sales_daily, agg.refresh_daily, "Per sale date: transactions, total "
                   "quantity, total revenue (quantity x the product's unit price from dim_products).",
                   count_key="days_written", extra=_unpriced_rows),
    DailyAggregate(tables.agg_sales_by_product, agg.refresh_by_product, "Per sale date and product: "
                   "transactions, quantity, revenue, with the product's name and category from "
                   "dim_products."),
    DailyAggregate(tables.agg_sales_by_customer, agg.refresh_by_customer, "Per sale date and "
                   "customer token (identifiers stay encrypted): transactions, quantity, revenue."),
)


CHANGES = f"table:{tables.agg_changes.name}"


@versioned_asset(
    **COMMON,
    deps=["agg_sales_daily"],
    metadata={"lineage/reads": ["table:agg_sales_daily", CHANGES],
              "lineage/writes": ["table:agg_sales_monthly"]},
    description="Per month, from agg_sales_daily: the months of the days logged in agg_changes since "
    "(a month left without days is removed).",
)
def agg_sales_monthly(warehouse: WarehouseResource) -> dg.MaterializeResult:
    months = agg.apply_monthly(warehouse.engine(), datetime.now())
    return dg.MaterializeResult(metadata={
        "months_recomputed": dg.MetadataValue.json([f"{y}-{m:02d}" for y, m in months]),
        **_table_metadata(tables.agg_sales_monthly)})


@versioned_asset(
    **COMMON,
    deps=["agg_sales_daily"],
    metadata={"lineage/reads": ["table:agg_sales_daily", CHANGES],
              "lineage/writes": ["table:agg_sales_yearly"]},
    description="Per year, from agg_sales_daily: the years of the days logged in agg_changes since "
    "(a year left without days is removed).",
)
def agg_sales_yearly(warehouse: WarehouseResource) -> dg.MaterializeResult:
    years = agg.apply_yearly(warehouse.engine(), datetime.now())
    return dg.MaterializeResult(metadata={
        "years_recomputed": dg.MetadataValue.json(years),
        **_table_metadata(tables.agg_sales_yearly)})


@versioned_asset(
    **COMMON,
    deps=["agg_sales_daily", "sales", "dim_products"],
    metadata={"lineage/reads": ["table:sales", "table:dim_products", "table:agg_sales_daily", CHANGES],
              "lineage/writes": ["table:agg_sales_by_category_monthly"]},
    description="Per month and sales_category (Low/Medium/High by a sale's revenue, bins from "
    "SALES_PLATFORM_CATEGORY_BINS, default 100,500): transactions, total and mean revenue. Empty "
    "categories of a month with sales are filled with zeros; sales without a price are counted as "
    "Unpriced, never given revenue 0 (fill rules in core/categories.py). The months of the days "
    "logged in agg_changes since (a month left without sales is removed), or every month cut with "
    "other bins.",
)
def agg_sales_by_category_monthly(context: dg.AssetExecutionContext,
                                  warehouse: WarehouseResource) -> dg.MaterializeResult:
    engine, bins = warehouse.engine(), category_bins()
    months, written = agg.apply_by_category_monthly(engine, bins, datetime.now())
    table = tables.agg_sales_by_category_monthly
    if written:
        record_artifact(engine, context.asset_key.to_user_string(), "table", f"table:{table.name}",
                        None, written, stage_version(context), run_id=context.run.run_id)
    return dg.MaterializeResult(metadata={
        "months_recomputed": dg.MetadataValue.json([f"{y}-{m:02d}" for y, m in months]),
        "rows_written": written, "bins": bins_text(bins), **_table_metadata(table)})
