"""Standalone checks on the rollups: they read only persisted rows, so the UI's **Execute** on the
Checks tab runs them without re-materializing anything. The frame is validated with a dagster-pandas
type (the design card's dagster-pandas, at the aggregate boundary: the hot path stays Arrow)."""

import dagster as dg
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from sales_platform.core.warehouse import aggregates as agg
from sales_platform.resources.warehouse import WarehouseResource

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


@dg.asset_check(
    asset="agg_sales_monthly",
    description="agg_sales_monthly has the MonthlySalesFrame shape (dagster-pandas) and every month "
    "equals the sum of its agg_sales_daily rows. Warns between a daily load and the next rollups_job.",
)
def monthly_matches_daily(context: dg.AssetCheckExecutionContext,
                          warehouse: WarehouseResource) -> dg.AssetCheckResult:
    engine = warehouse.engine()
    frame = agg.monthly_frame(engine)
    shape = MonthlySalesFrame.type_check(context, frame)
    duplicates = int(frame.duplicated(["year", "month"]).sum())
    mismatches = agg.monthly_mismatches(engine)
    return dg.AssetCheckResult(
        passed=bool(shape.success) and not duplicates and not mismatches,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"months": len(frame),
                  "frame_type": dg.MetadataValue.text("MonthlySalesFrame: " + (
                      "ok" if shape.success else str(shape.description))),
                  "duplicate_months": duplicates,
                  "months_not_matching_daily": dg.MetadataValue.json(mismatches[:20])},
    )
