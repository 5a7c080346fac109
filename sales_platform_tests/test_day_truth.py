"""One day, one truth: four days dropped at once, one over the reject rate, loaded by
``sales-platform run --first D1 --last D4``. The good days load with their exact rows, the blocked
day loads nothing, and Dagster's storage (what the UI and GraphQL read) holds one materialization
per finished day with that day's own counts, and one verdict per day per check.

Expectations come from the rows this test writes, never from the platform's counts.
"""

import csv
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state
from sqlalchemy import create_engine, func, select

from sales_platform.cli import _range_counts
from sales_platform.core.crypto import generate_key
from sales_platform.core.warehouse.tables import sales, sales_rejects
from sales_platform.partitions import daily_partitions
from sales_platform_tests.day_plan import four_day_plan, write_plan

PLAN, BLOCKED = four_day_plan("2024-12-29")  # across a year's end
DAYS = list(PLAN)
MAX_REJECT_RATE = 0.2


def _write(data: Path) -> None:
    catalogue = data / "catalogue"
    catalogue.mkdir(parents=True)
    with open(catalogue / "products.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["product_id", "name", "category", "unit_price", "updated_at"],
                                      ["P1", "Product 1", "Toys", "2.5", "2024-01-01T00:00:00"]])
    write_plan(data / "incoming", PLAN)


def _check_days(instance: dg.DagsterInstance, asset: str, check: str) -> dict[str, list[str]]:
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    state = bulk_update_asset_check_state(instance, [(key, daily_partitions)],
                                          {key: AssetCheckState.empty()})[key]
    return {status.value: sorted(subset.subset_value.get_partition_keys())
            for status, subset in state.subsets.items() if not subset.is_empty}


def _latest(instance: dg.DagsterInstance, asset: str, day: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1).records
    return records[0].asset_materialization if records else None


@pytest.mark.slow
def test_a_blocked_day_holds_back_no_other_day_and_each_day_tells_its_own_truth(tmp_path):
    data, home = tmp_path / "data", tmp_path / "home"
    _write(data)
    env = {**os.environ, "SALES_PLATFORM_DATA_DIR": str(data), "DAGSTER_HOME": str(home),
           "SALES_PLATFORM_ENCRYPTION_KEY": generate_key(), "SALES_PLATFORM_SETTLE_S": "0",
           "SALES_PLATFORM_MAX_REJECT_RATE": str(MAX_REJECT_RATE)}
    result = subprocess.run([sys.executable, "-m", "sales_platform.cli", "run", "--first", DAYS[0],
                             "--last", DAYS[-1]], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    good_days = [d for d in DAYS if d != BLOCKED]
    loaded_rows = sum(PLAN[d][0] for d in good_days)
    assert f"rows loaded into sales: {loaded_rows}" in result.stdout
    assert f"BLOCKED {BLOCKED} blocked: 3 of 14 rows rejected (21% > 20%)" in result.stdout

    engine = create_engine(f"sqlite:///{data / 'warehouse.db'}")
    with engine.connect() as conn:
        per_day = dict(conn.execute(select(sales.c.sale_date, func.count())
                                    .group_by(sales.c.sale_date)).all())
        rejects = dict(conn.execute(select(sales_rejects.c.sale_date, func.count())
                                    .group_by(sales_rejects.c.sale_date)).all())
    assert per_day == {date.fromisoformat(d): PLAN[d][0] for d in good_days}
    assert rejects == {date.fromisoformat(d): PLAN[d][1] for d in DAYS if PLAN[d][1]}

    # the CLI summary's numbers are its range's: the first two days only
    first_two = _range_counts(engine, date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[1]))
    assert first_two["loaded"] == PLAN[DAYS[0]][0] + PLAN[DAYS[1]][0]
    assert first_two["rejects"] == {"quantity_not_positive": PLAN[DAYS[0]][1] + PLAN[DAYS[1]][1]}
    assert (first_two["statuses"], first_two["blocked"]) == ({"loaded": 2}, [])
    assert first_two["all_time"] == (sum(PLAN[d][0] for d in good_days), sum(b for _, b in PLAN.values()))

    os.environ["DAGSTER_HOME"], previous = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            for day in DAYS:
                good, bad = PLAN[day]
                raw = _latest(instance, "raw_sales", day)
                assert raw.metadata["dagster/row_count"].value == good + bad
                cleaned = _latest(instance, "cleaned_sales", day)
                assert (cleaned.metadata["rows_read"].value, cleaned.metadata["rows_clean"].value,
                        cleaned.metadata["rows_rejected"].value) == (good + bad, good, bad)
                assert _latest(instance, "sales_rejects", day).metadata["rows"].value == bad
                downstream = ("encrypted_sales", "sales", "agg_sales_daily")
                if day == BLOCKED:  # never materialized: not failed, not with a neighbour's numbers
                    assert all(_latest(instance, a, day) is None for a in downstream)
                    continue
                assert _latest(instance, "encrypted_sales", day).metadata["rows"].value == good
                assert _latest(instance, "sales", day).metadata["dagster/row_count"].value == good
                assert _latest(instance, "agg_sales_daily", day) is not None
            assert _check_days(instance, "cleaned_sales", "reject_rate_below_threshold") == {
                "SUCCEEDED": good_days, "FAILED": [BLOCKED]}
            for check in ("rows_conserved", "transaction_id_unique", "schema_unchanged"):
                assert _check_days(instance, "sales", check) == {
                    "SUCCEEDED": good_days, "SKIPPED": [BLOCKED]}, check
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous
