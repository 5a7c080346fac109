"""The standalone rollup check: dagster-pandas frame type + monthly = sum of daily, run on its own
(as the UI's Execute does) after real materializations; it fails when a month is tampered with."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from sqlalchemy import update

from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import agg_sales_monthly
from sales_platform.defs.aggregates.checks import MonthlySalesFrame, monthly_matches_daily
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)


def _check_passes(resources, instance) -> bool:
    result = dg.materialize([*all_assets(), monthly_matches_daily], resources=resources, instance=instance,
                            selection=dg.AssetSelection.checks(monthly_matches_daily))
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations] == ["monthly_matches_daily"]
    return evaluations[0].passed


def test_monthly_rollup_check_passes_then_catches_a_tampered_month(data_dir, key, tmp_path):
    write_catalogue(data_dir, ["P1", "P2"], price=2.5)
    rows = [[f"T{d}-{n}", f"C{n}", "P1" if n % 2 else "P2", str(n + 1), f"2024-03-{d:02d}T10:00:00"]
            for d in (1, 2) for n in range(4)]
    write_csv(data_dir / "incoming" / "march.csv", rows)
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, settle_s=0)
    instance = dg.DagsterInstance.ephemeral()
    materialize(resources, PRODUCTS, instance=instance)
    for day in ("2024-03-01", "2024-03-02"):
        materialize(resources, [*SALES_CHAIN, "agg_sales_daily"], day, instance=instance)
    materialize(resources, ["agg_sales_monthly"], instance=instance)
    assert _check_passes(resources, instance)

    engine = cached_engine(resources["warehouse"].url())
    with engine.begin() as conn:  # a month that no longer adds up
        conn.execute(update(agg_sales_monthly).values(transactions=agg_sales_monthly.c.transactions + 1))
    assert not _check_passes(resources, instance)


def test_the_frame_type_refuses_impossible_rows():
    good = pd.DataFrame({"year": [2024], "month": [3], "transactions": [2], "total_quantity": [3],
                         "total_revenue": [7.5]})
    context = dg.build_op_context()
    assert MonthlySalesFrame.type_check(context, good).success
    for column, value in (("month", 13), ("transactions", -1), ("total_revenue", -0.01)):
        bad = good.copy()
        bad[column] = value
        assert not MonthlySalesFrame.type_check(context, bad).success, column
