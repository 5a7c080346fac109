"""End to end with the real webserver and daemon: sensors, the run queue and backfills, driven by GraphQL.

Each test uses its own generated days, so they do not depend on each other's order.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects
from sales_platform_tests.e2e import (
    IN_PROCESS,
    SENSORS,
    DagsterStack,
    check_passed,
    csv_rows,
    generated_file,
)
from sales_platform_tests.helpers import SALES_CHAIN

DROP_DAY = "2024-03-01"
BACKFILL_DAYS = ["2024-03-02", "2024-03-03", "2024-03-04"]
SALES_CHECKS = ("rows_conserved", "transaction_id_unique")
LOAD_TIMEOUT_S = 180.0  # the sensor's load run uses the multiprocess executor: one process per step


def rows_by_file(stack: DagsterStack, file_name: str) -> tuple[int, int]:
    """(rows in sales, rows in sales_rejects) that came from this file."""
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            loaded = conn.execute(select(func.count()).select_from(sales)
                                  .where(sales.c.source_file == file_name)).scalar_one()
            rejected = conn.execute(select(func.count()).select_from(sales_rejects)
                                    .where(sales_rejects.c.source_file == file_name)).scalar_one()
    finally:
        engine.dispose()
    return loaded, rejected


def ledger_statuses(stack: DagsterStack, file_name: str) -> list[str]:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(file_ledger.c.status)
                                     .where(file_ledger.c.file_name == file_name)).scalars())
    finally:
        engine.dispose()


def loaded_rows_per_day(stack: DagsterStack, days: list[str]) -> dict[str, int]:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(sales.c.sale_date, func.count())
                                .where(sales.c.sale_date.in_([date.fromisoformat(d) for d in days]))
                                .group_by(sales.c.sale_date)).all()
    finally:
        engine.dispose()
    return {str(day): n for day, n in rows}


@pytest.mark.slow
def test_dropped_file_reaches_the_sales_table_once(products_loaded: DagsterStack):
    stack = products_loaded
    name = generated_file(DROP_DAY)
    by_file = {"sales_platform/file": name}
    for sensor in SENSORS:
        stack.start_sensor(sensor)
    try:
        stack.drop(name)
        landing = stack.wait_for_successful_run(f"the landing run for {name}", "land_files_job", by_file)
        load = stack.wait_for_successful_run(f"the load run for {name}", "daily_sales_job", by_file,
                                             timeout=LOAD_TIMEOUT_S)
        # The drop sensor evaluated again after the landing (usually while the load ran): a second
        # landing run for the same file would have been requested by now.
        stack.wait_for_ticks("incoming_files_sensor", after=landing["endTime"])
    finally:
        for sensor in SENSORS:
            stack.stop_sensor(sensor)

    loaded, rejected = rows_by_file(stack, name)
    assert loaded > 0
    assert loaded + rejected == csv_rows(stack.generated / "incoming" / name)  # every row accounted for
    assert ledger_statuses(stack, name) == ["loaded"]
    for check in SALES_CHECKS:
        from_load = [e for e in stack.check_executions("sales", check) if e["runId"] == load["runId"]]
        assert any(check_passed(e) for e in from_load), \
            f"{check}: no successful evaluation from the load run: {from_load}"
    landings = stack.runs("land_files_job", by_file)
    assert [r["status"] for r in landings] == ["SUCCESS"], f"{name} landed more than once: {landings}"


@pytest.mark.slow
def test_backfill_of_three_days_through_graphql(products_loaded: DagsterStack, sensors_stopped: DagsterStack):
    stack = products_loaded
    for day in BACKFILL_DAYS:
        stack.drop(generated_file(day))
    backfill_id = stack.launch_backfill(SALES_CHAIN, BACKFILL_DAYS, title="e2e backfill",
                                        run_config=IN_PROCESS)
    stack.wait_for_backfill(backfill_id, timeout=LOAD_TIMEOUT_S)

    materialized = {m["partition"] for m in stack.materializations("sales", BACKFILL_DAYS)}
    assert materialized == set(BACKFILL_DAYS)
    for check in SALES_CHECKS:
        for day in BACKFILL_DAYS:
            executions = stack.check_executions("sales", check, partition=day)
            assert executions, f"sales/{check} for {day}: no execution"
            latest = executions[0]  # newest first
            assert check_passed(latest), \
                f"sales/{check} for {day}: {executions}"
    per_day = loaded_rows_per_day(stack, BACKFILL_DAYS)
    assert sorted(per_day) == BACKFILL_DAYS and all(n > 0 for n in per_day.values()), per_day

    runs = stack.runs(tags={"dagster/backfill": backfill_id})
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    # BackfillPolicy.single_run(): 3 days of the whole chain in one run.
    assert len(runs) == 1 < len(BACKFILL_DAYS), f"{len(runs)} runs for {len(BACKFILL_DAYS)} partitions"
