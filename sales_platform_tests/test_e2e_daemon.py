"""End to end with the real webserver and daemon: sensors, the run queue and backfills, driven by GraphQL.

Each test uses its own generated days, so they do not depend on each other's order. What the warehouse
must hold for a test's files is computed from the bytes of those files by the oracle.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from sales_platform.core import settings
from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects
from sales_platform_tests.e2e import (
    IN_PROCESS,
    SENSORS,
    DagsterStack,
    check_passed,
    generated_file,
)
from sales_platform_tests.helpers import SALES_CHAIN
from sales_platform_tests.integrity import expected_rejects, expected_sales
from sales_platform_tests.oracle import Drop, Expected, catalogue_prices, expected_state

DROP_DAY = "2024-03-01"
BACKFILL_DAYS = ["2024-03-02", "2024-03-03", "2024-03-04"]
SALES_CHECKS = ("rows_conserved", "transaction_id_unique")
LOAD_TIMEOUT_S = 180.0  # a load run on a loaded CI machine


def oracle_of(drops: list[Drop], catalogue: Path | None) -> Expected:
    """What the warehouse must hold for these files, with the catalogue loaded into dim_products (if any)."""
    known = None if catalogue is None else set(catalogue_prices(catalogue.read_bytes()))
    return expected_state(drops, now=datetime.now(UTC), known_products=known)


def warehouse_rows_of(db_url: str, key: str, names: Collection[str]) -> tuple[dict[str, tuple], list[tuple]]:
    """The sales rows (tokens decrypted) and rejects that came from these files, in the shapes of
    integrity.expected_sales / expected_rejects."""
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            loaded = conn.execute(select(sales).where(sales.c.source_file.in_(list(names)))).mappings().all()
            rejected = conn.execute(select(sales_rejects.c.source_file, sales_rejects.c.source_row,
                                           sales_rejects.c.reason, sales_rejects.c.sale_date)
                                    .where(sales_rejects.c.source_file.in_(list(names)))).all()
    finally:
        engine.dispose()
    rows = {r["transaction_id"]: (
        tokenizer.decrypt(r["customer_id"]), tokenizer.decrypt(r["product_id"]), r["quantity"],
        r["sale_ts"].replace(microsecond=0), r["sale_date"], r["source_file"], r["source_row"])
        for r in loaded}
    assert len(rows) == len(loaded), "a transaction id is in sales more than once"
    return rows, sorted(tuple(r) for r in rejected)


def assert_files_match_oracle(db_url: str, key: str, drops: list[Drop], catalogue: Path | None) -> Expected:
    """The rows of these files in the warehouse are exactly the oracle's: every sale once, every reject."""
    expected = oracle_of(drops, catalogue)
    found_sales, found_rejects = warehouse_rows_of(db_url, key, [d.name for d in drops])
    want_sales = expected_sales(expected)
    missing = {k: v for k, v in want_sales.items() if found_sales.get(k) != v}
    extra = {k: v for k, v in found_sales.items() if want_sales.get(k) != v}
    assert not missing and not extra, f"sales differ: expected {missing}, found {extra}"
    assert found_rejects == expected_rejects(expected)
    return expected


def stack_matches_oracle(stack: DagsterStack, names: list[str]) -> Expected:
    """For files the test dropped from ``stack.generated``, with the stack's catalogue (products loaded)."""
    drops = [Drop(n, (stack.generated / "incoming" / n).read_bytes()) for n in names]
    return assert_files_match_oracle(stack.db_url, stack.env[settings.ENCRYPTION_KEY], drops,
                                     stack.data_dir / "catalogue" / "products.csv")


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

    # every row of the file once, loaded or rejected, exactly as computed from its bytes
    expected = stack_matches_oracle(stack, [name])
    assert rows_by_file(stack, name) == (len(expected.sales), len(expected.rejects))
    assert expected.sales  # the file has rows to load: the comparison is not vacuous
    assert ledger_statuses(stack, name) == ["loaded"]
    # the blocking checks ran in the load run and passed (uniqueness itself: the oracle comparison above)
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
    expected = stack_matches_oracle(stack, [generated_file(day) for day in BACKFILL_DAYS])
    want = {d.isoformat(): n for d, n in expected.rows_by_day().items()}
    assert sorted(want) == BACKFILL_DAYS
    assert loaded_rows_per_day(stack, BACKFILL_DAYS) == want
    # each day's materialization in the backfill's run carries that day's numbers, not the range's
    backfill_runs = {r["runId"] for r in stack.runs(tags={"dagster/backfill": backfill_id})}
    per_day = {m["partition"]: {e["label"]: e.get("intValue") for e in m["metadataEntries"]}
               for m in stack.materializations("sales", BACKFILL_DAYS) if m["runId"] in backfill_runs}
    assert {day: per_day[day]["dagster/row_count"] for day in BACKFILL_DAYS} == want

    runs = stack.runs(tags={"dagster/backfill": backfill_id})
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    # BackfillPolicy.single_run(): 3 days of the whole chain in one run.
    assert len(runs) == 1 < len(BACKFILL_DAYS), f"{len(runs)} runs for {len(BACKFILL_DAYS)} partitions"
