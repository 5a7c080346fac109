"""Standalone checks on the rollups: each recomputes its rollup from its source with one GROUP BY
and compares, so the UI's **Execute** on the Checks tab runs them without re-materializing anything;
rollups_job runs them with their assets. A difference in a period with a change still logged for the
rollup is expected until it runs (WARN); any other is a wrong number (ERROR). The monthly frame is also
validated with a dagster-pandas type (the design card's dagster-pandas, at the aggregate boundary)."""

import dagster as dg
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type
from sqlalchemy import Engine

from sales_platform.core.categories import category_bins
from sales_platform.core.warehouse import aggregates as agg
from sales_platform.resources.warehouse import WarehouseResource

EVIDENCE = 20  # first differing periods shown in the check's metadata

MonthlySalesFrame = create_dagster_pandas_dataframe_type(
    name="MonthlySalesFrame",
    description="agg_sales_monthly: one row per month, counts and revenue never negative.",
    columns=[
        PandasColumn.integer_column("year", min_value=1900, max_value=9999, non_nullable=True),
        PandasColumn.integer_column("month", min_value=1, max_value=12, non_nullable=True),
        PandasColumn.integer_column("transactions", min_value=0, non_nullable=True),
        PandasColumn.integer_column("total_quantity", min_value=0, non_nullable=True),
        PandasColumn.float_column("total_revenue", min_value=0.0, non_nullable=True),
    ],
)


def verdict(engine: Engine, consumer: str, differences: list[dict], passed: bool = True,
            due: frozenset[str] = frozenset(), **metadata) -> dg.AssetCheckResult:
    """Passed without differences; else WARN when every differing period still has a change logged
    for ``consumer`` (the next run refreshes it), ERROR when one has none (nothing will fix it)."""
    pending = agg.pending_periods(engine, consumer) | due
    stale = [d for d in differences if d["period"].split(" ")[0] not in pending]
    return dg.AssetCheckResult(
        passed=passed and not differences,
        severity=dg.AssetCheckSeverity.ERROR if stale or not passed else dg.AssetCheckSeverity.WARN,
        metadata={"periods_differing": len(differences),
                  "periods_differing_without_pending_change": len(stale),
                  "first_differences": dg.MetadataValue.json(differences[:EVIDENCE]), **metadata})


@dg.asset_check(
    asset="agg_sales_monthly",
    description="agg_sales_monthly has the MonthlySalesFrame shape (dagster-pandas) and every month "
    "equals the sum of its agg_sales_daily rows, and no month is there without them.",
)
def monthly_matches_daily(context: dg.AssetCheckExecutionContext,
                          warehouse: WarehouseResource) -> dg.AssetCheckResult:
    engine = warehouse.engine()
    frame = agg.monthly_frame(engine)
    shape = MonthlySalesFrame.type_check(context, frame)
    duplicates = int(frame.duplicated(["year", "month"]).sum())
    return verdict(engine, agg.MONTHLY, agg.monthly_mismatches(engine),
                   passed=bool(shape.success) and not duplicates, months=len(frame),
                   frame_type=dg.MetadataValue.text("MonthlySalesFrame: " + (
                       "ok" if shape.success else str(shape.description))),
                   duplicate_months=duplicates)


@dg.asset_check(
    asset="agg_sales_yearly",
    description="Every year of agg_sales_yearly equals the sum of its agg_sales_daily rows, and no "
    "year is there without them.",
)
def yearly_matches_daily(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    engine = warehouse.engine()
    return verdict(engine, agg.YEARLY, agg.yearly_mismatches(engine))


@dg.asset_check(
    asset="agg_sales_by_category_monthly",
    description="Every (month, category) row equals the one recomputed from sales and dim_products "
    "with the configured bins (fill rules included), and no month is there without sales.",
)
def by_category_matches_sales(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    engine, bins = warehouse.engine(), category_bins()
    recut = frozenset(f"{y}-{m:02d}" for y, m in agg.months_cut_with_other_bins(engine, bins))
    return verdict(engine, agg.CATEGORY, agg.category_mismatches(engine, bins), due=recut)
