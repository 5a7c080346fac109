"""Small helpers of test_boundaries.py and test_identifier_forms.py: a warehouse that lives for a
module (SQLite file or a new PostgreSQL database), and one range run of the day chain."""

from __future__ import annotations

import dagster as dg

from sales_platform_tests.conftest import fresh_warehouse
from sales_platform_tests.helpers import all_assets, materialize
from sales_platform_tests.integrity import LOAD_CHAIN

DAY_CHAIN = [*LOAD_CHAIN, "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]


# a warehouse that lives for a module-scoped fixture (conftest's ``backend`` is per test)
module_backend = fresh_warehouse


def range_run(resources: dict, first: str, last: str, selection: list[str] | None = None,
              instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Land the drop zone, then one run of the day chain over ``first``..``last`` (one step, each
    day its own pass), as a backfill or the load sensor launches it."""
    instance = instance or dg.DagsterInstance.ephemeral()
    materialize(resources, ["landed_files"], instance=instance)
    return dg.materialize(all_assets(), selection=selection or DAY_CHAIN, resources=resources,
                          instance=instance, raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": first,
                                "dagster/asset_partition_range_end": last})
