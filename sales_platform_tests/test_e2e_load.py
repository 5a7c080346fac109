"""A bounded load test with the real daemon: 24 files dropped at once, every row accounted for.

The drop sensor lands them in batches; 24 still spans several sensor ticks and overlapping load
runs, and keeps the suite's time in bounds on a 2-core machine (benchmarks/many_files.py measures
thousands)."""

from __future__ import annotations

import os
import random
import time

import pytest
from sqlalchemy import func, select

from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects
from sales_platform_tests.e2e import SENSORS, DagsterStack
from sales_platform_tests.helpers import write_csv

FILES = 24
ROWS_PER_FILE = 60
DAYS = ["2024-04-01", "2024-04-02", "2024-04-03"]
# Both waits below together; this test's own pytest timeout (TEST_TIMEOUT_S) leaves room for the
# stack's start-up, so a slow run ends with the waits' diagnostics, not a bare timeout. The landing
# runs, each its own process, take minutes on a loaded 2-core machine.
LOAD_TEST_BUDGET_S = 480.0  # eventually() accepts at most 500 s
TEST_TIMEOUT_S = 780
LANDINGS_MIN_S = 30.0  # the late landing runs get at least this, even if the load took long
BUSY = frozenset({"QUEUED", "STARTING", "STARTED", "NOT_STARTED"})


def counts(stack: DagsterStack) -> tuple[int, int, dict[str, int]]:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            loaded = conn.execute(select(func.count()).select_from(sales)
                                  .where(sales.c.source_file.like("load_%"))).scalar_one()
            rejected = conn.execute(select(func.count()).select_from(sales_rejects)
                                    .where(sales_rejects.c.source_file.like("load_%"))).scalar_one()
            statuses = dict(conn.execute(select(file_ledger.c.status, func.count())
                                         .where(file_ledger.c.file_name.like("load_%"))
                                         .group_by(file_ledger.c.status)).all())
    finally:
        engine.dispose()
    return loaded, rejected, statuses


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_many_files_at_once_every_row_once(products_loaded: DagsterStack):
    stack = products_loaded
    rng = random.Random(7)
    staging = stack.root / "load_test"
    for n in range(FILES):
        rows = [[f"L{n:02d}-{i:04d}", f"C{rng.randint(1, 400):07d}", f"P{rng.randint(1, 20):05d}",
                 str(rng.randint(1, 5)), f"{DAYS[i % len(DAYS)]}T{10 + i % 10:02d}:00:{i % 60:02d}"]
                for i in range(ROWS_PER_FILE)]
        rows[0][3] = "-1"  # one reject per file: rejects are accounted for too
        write_csv(staging / f"load_{n:02d}.csv", rows)
    started = time.monotonic()
    deadline = started + LOAD_TEST_BUDGET_S
    for path in sorted(staging.iterdir()):  # all at once, each completed by a rename
        os.replace(path, stack.data_dir / "incoming" / path.name)
    for sensor in SENSORS:
        stack.start_sensor(sensor)
    try:
        # The last observed (loaded rows, rejected rows, ledger statuses) is in the timeout message.
        loaded, rejected, statuses = stack.wait_until(
            f"{FILES} files loaded (ledger status 'loaded')", lambda: counts(stack),
            timeout=deadline - time.monotonic(), until=lambda c: c[2].get("loaded") == FILES)
    finally:
        for sensor in SENSORS:
            stack.stop_sensor(sensor)
    elapsed = time.monotonic() - started
    print(f"load test: {FILES} files, {FILES * ROWS_PER_FILE} rows, loaded in {elapsed:.1f} s")
    assert (loaded, rejected) == (FILES * (ROWS_PER_FILE - 1), FILES)
    assert statuses == {"loaded": FILES}
    # The drop sensor lands settled files in batches (one run per batch, SALES_PLATFORM_LANDING_BATCH_FILES):
    # fewer landing runs than files, none failed; a file is landed once (one ledger row each, exact
    # counts above), also when the first load run's raw_sales landed it before its batch run came.
    def landing_runs() -> list[dict]:
        return stack.runs("land_files_job")

    def none_busy(runs: list[dict]) -> bool:
        return not any(r["status"] in BUSY for r in runs)

    runs = stack.wait_until("landing runs to finish", landing_runs, until=none_busy,
                            timeout=max(deadline - time.monotonic(), LANDINGS_MIN_S))
    assert runs and all(r["status"] == "SUCCESS" for r in runs), [r["status"] for r in runs]
    assert len(runs) < FILES, f"{len(runs)} landing runs for {FILES} files: not batched"
    assert counts(stack) == (loaded, rejected, statuses)  # late runs changed nothing
    assert not list((stack.data_dir / "incoming").glob("load_*"))
