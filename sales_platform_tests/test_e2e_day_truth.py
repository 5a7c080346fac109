"""One day, one truth with the real daemon and webserver: four days, one over the reject rate,
loaded through the sensors and through a backfill launched as the UI launches it, then read in the UI
(the check's Partitions tab, headless Chromium). The good days
load their exact rows; GraphQL (what the UI reads) shows each day's own counts and one check
verdict per day: FAILED on the blocked day's reject-rate check, SUCCEEDED on every good day,
and no materialization downstream of the blocked day.

Expectations come from the rows each test writes (``day_plan.py``).
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from sales_platform.core.warehouse.tables import file_ledger, sales
from sales_platform.defs.governance.alerts import ALERTS_FILE
from sales_platform_tests.day_plan import four_day_plan, write_plan
from sales_platform_tests.e2e import IN_PROCESS, SENSORS, DagsterStack
from sales_platform_tests.helpers import SALES_CHAIN
from sales_platform_tests.test_e2e_browser import dismiss_community_dialog, page  # noqa: F401 (fixture)

LOAD_TIMEOUT_S = 240.0
SALES_CHECKS = ("rows_conserved", "transaction_id_unique", "schema_unchanged")


def _a_product(stack: DagsterStack) -> str:
    with open(stack.data_dir / "catalogue" / "products.csv", newline="") as handle:
        return next(csv.DictReader(handle))["product_id"]


def _rows_per_day(stack: DagsterStack, days: list[str]) -> dict[str, int]:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(sales.c.sale_date, func.count())
                                .where(sales.c.sale_date.in_([date.fromisoformat(d) for d in days]))
                                .group_by(sales.c.sale_date)).all()
    finally:
        engine.dispose()
    return {str(day): n for day, n in rows}


def _statuses(stack: DagsterStack, names: list[str]) -> set[str]:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(file_ledger.c.status)
                                    .where(file_ledger.c.file_name.in_(names))).scalars())
    finally:
        engine.dispose()


def _assert_each_day_tells_its_own_truth(stack: DagsterStack, plan: dict[str, tuple[int, int]],
                                         blocked: str) -> None:
    days, good_days = list(plan), [d for d in plan if d != blocked]
    assert _rows_per_day(stack, days) == {d: plan[d][0] for d in good_days}

    def latest(asset: str) -> dict[str, dict]:  # day -> the metadata of its newest materialization
        found: dict[str, dict] = {}
        for m in sorted(stack.materializations(asset, days), key=lambda m: float(m["timestamp"])):
            found[m["partition"]] = {e["label"]: e.get("intValue") for e in m["metadataEntries"]}
        return found

    raw, cleaned, rejects = latest("raw_sales"), latest("cleaned_sales"), latest("sales_rejects")
    for day, (good, bad) in plan.items():
        assert raw[day]["dagster/row_count"] == good + bad, day
        assert (cleaned[day]["rows_read"], cleaned[day]["rows_clean"],
                cleaned[day]["rows_rejected"]) == (good + bad, good, bad), day
        assert rejects[day]["rows"] == bad, day
    for asset in ("encrypted_sales", "sales", "agg_sales_daily"):
        assert sorted(latest(asset)) == good_days, asset  # the blocked day: none, not a failed one
        assert blocked not in stack.partition_statuses(asset), asset  # missing, not FAILED
    assert {d: m["dagster/row_count"] for d, m in latest("sales").items()} == {
        d: plan[d][0] for d in good_days}

    reject_check = stack.check_statuses("cleaned_sales", "reject_rate_below_threshold")
    assert {d: reject_check.get(d) for d in days} == {
        d: "FAILED" if d == blocked else "SUCCEEDED" for d in days}
    for check in SALES_CHECKS:
        statuses = stack.check_statuses("sales", check)
        assert {d: statuses.get(d) for d in good_days} == dict.fromkeys(good_days, "SUCCEEDED"), check
        assert statuses.get(blocked) in (None, "SKIPPED"), (check, statuses.get(blocked))


def _blocked_alerts(stack: DagsterStack, day: str) -> list[dict]:
    path = stack.data_dir / ALERTS_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["status"] == "BLOCKED" and a["partition"] == day]


@pytest.mark.slow
def test_sensors_load_the_good_days_around_a_blocked_one(products_loaded: DagsterStack):
    stack = products_loaded
    plan, blocked = four_day_plan("2024-07-01")
    good_days = [d for d in plan if d != blocked]
    for sensor in SENSORS:
        stack.start_sensor(sensor)
    try:
        names = write_plan(stack.data_dir / "incoming", plan, _a_product(stack))
        stack.wait_until("the three good days in sales", lambda: _rows_per_day(stack, list(plan))
                         == {d: plan[d][0] for d in good_days} or None, timeout=LOAD_TIMEOUT_S)
        stack.wait_until("the blocked file's ledger state", lambda: _statuses(stack, names)
                         == {"loaded", "blocked"} or None, timeout=LOAD_TIMEOUT_S)
    finally:
        for sensor in SENSORS:
            stack.stop_sensor(sensor)
    stack.wait_until_idle("daily_sales_job")
    _assert_each_day_tells_its_own_truth(stack, plan, blocked)
    (alert,) = _blocked_alerts(stack, blocked)  # one alert, however many runs saw the day
    assert alert["failed_steps"][0]["error"].startswith(
        f"{blocked} blocked: 3 of 14 rows rejected (21% > 20%)")
    # a blocked day is not retried: no load run failed
    assert all(r["status"] == "SUCCESS" for r in stack.runs("daily_sales_job"))


def partitions_tab_counts(ui: Any, stack: DagsterStack, asset: str, days: list[str]) -> dict[str, int]:
    """Checks tab of ``asset`` -> its check's Partitions tab -> the days typed in as a range: the
    count shown beside each status."""
    from playwright.sync_api import expect

    ui.goto(f"{stack.url}/assets/{asset}?view=checks")
    dismiss_community_dialog(ui)
    ui.get_by_role("tab", name="Partitions").last.click()  # the check's, not the asset's
    box = ui.locator("input[value^='[']").first
    box.fill(f"[{days[0]}...{days[-1]}]")
    box.press("Enter")
    expect(ui.get_by_text(f"{len(days)} Partitions Selected")).to_be_visible()
    text = ui.locator("body").inner_text()
    return {status: int(n) for status, n in re.findall(
        r"(?<![A-Za-z] )(Execution Failed|Failed|In Progress|Missing|Skipped|Passed)\s*\((\d+)\)", text)}


@pytest.mark.slow
def test_a_ui_backfill_loads_the_good_days_around_a_blocked_one(products_loaded: DagsterStack,
                                                                 sensors_stopped: DagsterStack,
                                                                 page: Any, tmp_path):  # noqa: F811
    stack = products_loaded
    plan, blocked = four_day_plan("2024-08-01")
    write_plan(stack.data_dir / "incoming", plan, _a_product(stack))
    backfill_id = stack.launch_backfill(SALES_CHAIN + ["agg_sales_daily"], list(plan),
                                        title="e2e backfill with a blocked day", run_config=IN_PROCESS)
    backfill = stack.wait_for_backfill(backfill_id, timeout=LOAD_TIMEOUT_S, failed_ok=True)
    # the backfill itself counts the blocked day's downstream partitions as not done
    assert backfill["status"] == "COMPLETED_FAILED"
    runs = stack.runs(tags={"dagster/backfill": backfill_id})
    assert [r["status"] for r in runs] == ["SUCCESS"], runs
    _assert_each_day_tells_its_own_truth(stack, plan, blocked)
    assert len(_blocked_alerts(stack, blocked)) == 1
    # what a person sees: the check's Partitions tab, the backfill's days
    counts = partitions_tab_counts(page, stack, "cleaned_sales", list(plan))
    page.screenshot(path=str(tmp_path / "reject_rate_partitions.png"))
    assert counts == {"Execution Failed": 0, "Failed": 1, "In Progress": 0, "Missing": 0,
                      "Skipped": 0, "Passed": 3}, counts
