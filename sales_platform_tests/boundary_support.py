"""Small helpers of test_boundaries.py and test_identifier_forms.py: a warehouse that lives for a
module (SQLite file or a new PostgreSQL database), and one range run of the day chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from sqlalchemy import create_engine, text

from sales_platform.core.warehouse.engine import dispose_all
from sales_platform_tests.conftest import PG_ADMIN_URL, pg_url, require_postgres
from sales_platform_tests.helpers import all_assets, materialize
from sales_platform_tests.integrity import LOAD_CHAIN

DAY_CHAIN = [*LOAD_CHAIN, "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]


@contextmanager
def module_backend(kind: str, folder: Path) -> Iterator[str]:
    """A warehouse URL for a module-scoped fixture, like conftest's ``backend`` (which is per test):
    the PostgreSQL database is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'warehouse.db'}"
        dispose_all()
        return
    require_postgres()
    name = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url(name)
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
