"""Jobs: named selections users launch from the UI, the CLI and the sensors."""

from __future__ import annotations

import dagster as dg

from sales_platform.partitions import daily_partitions

DAILY_ASSETS = ["raw_sales", "cleaned_sales", "sales_rejects", "encrypted_sales", "sales",
                "agg_sales_daily"]

daily_sales_job = dg.define_asset_job(
    "daily_sales_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="Land new drops and load the selected days: raw -> cleaned -> encrypted -> "
    "sales (+ rejects and the daily aggregate).",
)

land_files_job = dg.define_asset_job(
    "land_files_job", selection=dg.AssetSelection.assets("landed_files"),
    description="Land dropped files (run by the drop sensor, one file per run).",
)

products_job = dg.define_asset_job(
    "products_job", selection=dg.AssetSelection.assets("dim_products"),
    description="Refresh the products dimension.",
)

yearly_rollup_job = dg.define_asset_job(
    "yearly_rollup_job", selection=dg.AssetSelection.assets("agg_sales_yearly"),
    description="Recompute the yearly aggregate for years whose days changed.",
)

ALL_JOBS = [daily_sales_job, land_files_job, products_job, yearly_rollup_job]
