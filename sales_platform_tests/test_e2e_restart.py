"""The daemon is killed while a file is being landed: after a restart the file is processed once."""

from __future__ import annotations

import fcntl
import os
import signal
from datetime import date

import pytest
from sqlalchemy import func, select

from sales_platform.core import settings
from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.tables import file_ledger, sales_rejects
from sales_platform.defs.ingestion.assets import landing_lease
from sales_platform_tests.e2e import REPO, SENSORS, DagsterStack, GroupProcess, executable
from sales_platform_tests.oracle import LANDING, Drop
from sales_platform_tests.test_e2e_daemon import assert_files_match_oracle, ledger_statuses, rows_by_file

DAY = date(2024, 4, 10)
ROWS = 500_000  # landing takes seconds even on a fast machine: the kill must find it under way
# After the kill: daemon start-up, run monitoring (polls every 30 s) failing the dead run, the drop
# sensor's new attempt, and the landing + load of 200,000 rows on a loaded 2-core machine. With the
# wait for the landing (RUN_TIMEOUT_S) it stays under pytest-timeout (600 s).
RESTART_TIMEOUT_S = 360.0


def lease_held(areas: DataAreas, run_id: str) -> bool:
    path = areas.lease_path(landing_lease(run_id))
    try:
        handle = open(path)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def restart_daemon(stack: DagsterStack) -> None:
    """kill -9 of the daemon's whole process group (its code server and run workers too)."""
    daemon = next(p for p in stack.processes if p.name == "dagster-daemon")
    os.killpg(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait()
    stack.processes.remove(daemon)
    stack.processes.append(GroupProcess.start(
        "dagster-daemon", [executable("dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        stack.env, stack.root / "daemon2.log"))


@pytest.mark.slow
def test_daemon_killed_mid_landing_file_processed_exactly_once(products_loaded: DagsterStack):
    stack = products_loaded
    staging = stack.root / "restart_drop"
    ((path, _),) = generate(staging, staging / "products.csv", DAY, 1, ROWS,
                            GeneratorSettings(seed=12, customers=500, products=20, defect_rate=0.01))
    name = path.name
    drops = [Drop(name, path.read_bytes())]  # what the warehouse must hold comes from these bytes
    by_file = {"sales_platform/file": name}
    areas = DataAreas(stack.data_dir)
    for sensor in SENSORS:
        stack.start_sensor(sensor)
    try:
        os.replace(path, stack.data_dir / "incoming" / name)

        def landing_in_progress() -> str | None:
            for run in stack.runs("land_files_job", by_file):
                if run["status"] == "STARTED" and lease_held(areas, run["runId"]):
                    return run["runId"]
            return None

        killed = stack.wait_until("the landing run inside its landing", landing_in_progress)
        restart_daemon(stack)

        def progress() -> dict[str, object]:  # shown in the timeout message, as last observed
            runs = stack.runs("land_files_job", by_file)
            return {"ledger": ledger_statuses(stack, name),
                    "landing runs": [(r["runId"][:8], r["status"]) for r in runs]}

        stack.wait_until(f"{name} loaded after the restart (ledger == ['loaded'])", progress,
                         timeout=RESTART_TIMEOUT_S, until=lambda p: p["ledger"] == ["loaded"])
    finally:
        for sensor in SENSORS:
            stack.stop_sensor(sensor)
    # every row once, nothing lost, nothing doubled: exactly the oracle's rows for the file's bytes
    expected = assert_files_match_oracle(stack.db_url, stack.env[settings.ENCRYPTION_KEY], drops,
                                         stack.data_dir / "catalogue" / "products.csv")
    assert rows_by_file(stack, name) == (len(expected.sales), len(expected.rejects))
    engine = stack.engine()
    with engine.connect() as conn:
        ledger_rows = conn.execute(select(func.count()).select_from(file_ledger)
                                   .where(file_ledger.c.file_name == name)).scalar_one()
        landing_rejects = conn.execute(select(func.count()).select_from(sales_rejects).where(
            sales_rejects.c.source_file == name, sales_rejects.c.stage == "landing")).scalar_one()
    engine.dispose()
    assert ledger_rows == 1
    # landing rejects (the file's bad timestamps) once each, not again after the restart
    assert landing_rejects == sum(r.stage == LANDING for r in expected.rejects) > 0
    # The killed run is reported failed (its lease was free, its file still waiting); a new attempt
    # landed the file; Dagster's run retry may re-run the failed one, which then finds nothing to do.
    statuses = sorted(r["status"] for r in stack.runs("land_files_job", by_file))
    assert stack.run(killed)["status"] == "FAILURE" and "SUCCESS" in statuses, statuses
