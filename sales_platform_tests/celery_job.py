"""The platform's daily sales chain as a job whose every step runs on a Celery worker.

Used by test_e2e_celery.py: the run (``dagster job execute -m sales_platform_tests.celery_job -j
celery_sales_job``) and the workers (which rebuild the job from this module for each step) both load it.
Broker, backend and queue come from the run config (``execution: config: ...``), nothing is hard-coded.
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from sales_platform import definitions as platform  # a module: one Definitions at module scope

# The sales chain is two steps (raw_sales, then the sales_pipeline multi-asset: cleaned, rejects,
# encrypted, sales); the lineage export depends on nothing, so it runs beside raw_sales: two steps
# at once, on two workers.
CELERY_CHAIN = ["raw_sales", "cleaned_sales", "sales_rejects", "encrypted_sales", "sales"]
CELERY_ASSETS = [*CELERY_CHAIN, "lineage_export"]
CELERY_STEPS = ["lineage_export", "raw_sales", "sales_pipeline"]

celery_sales_job = dg.define_asset_job(
    "celery_sales_job",
    selection=dg.AssetSelection.assets(*CELERY_ASSETS),  # daily partitions inferred from the assets
    executor_def=celery_executor,
    description="The daily sales chain, one Celery task per step (scale-out check).",
)

defs = dg.Definitions.merge(platform.defs, dg.Definitions(jobs=[celery_sales_job]))
