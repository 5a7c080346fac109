"""Jobs: named selections users launch from the UI, the CLI and the sensors."""

from __future__ import annotations

import dagster as dg

DAILY_ASSETS = ["raw_sales", "cleaned_sales", "sales_rejects", "encrypted_sales", "sales",
                "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
ROLLUP_ASSETS = ["agg_sales_monthly", "agg_sales_yearly", "agg_sales_by_category_monthly",
                 "sales_report", "agg_exports", "agg_sales_by_year_json", "lineage_export"]

daily_sales_job = dg.define_asset_job(
    "daily_sales_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),  # daily partitions inferred from the assets
    description="Land new drops and load the selected days: raw -> cleaned -> encrypted -> "
    "sales (+ rejects and the per-day aggregates).",
)

land_files_job = dg.define_asset_job(
    "land_files_job", selection=dg.AssetSelection.assets("landed_files"),
    description="Land dropped files (run by the drop sensor, one file per run).",
    executor_def=dg.in_process_executor,  # one step: a step process would only add start-up time
)

products_job = dg.define_asset_job(
    "products_job",
    selection=dg.AssetSelection.assets("products_json", "products_api_upload", "dim_products"),
    description="Catalogue -> products JSON (blob) -> products API -> dim_products.",
)

rollups_job = dg.define_asset_job(
    "rollups_job", selection=dg.AssetSelection.assets(*ROLLUP_ASSETS),
    description="Monthly, yearly and by-category aggregates for changed periods, the sales report "
    "charts, CSV/JSON exports of changed years, and the lineage export.",
)

ALL_JOBS = [daily_sales_job, land_files_job, products_job, rollups_job]
