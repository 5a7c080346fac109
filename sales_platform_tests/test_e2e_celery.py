"""Scale-out with the Celery executor, for real: RabbitMQ, two worker processes, one run process.

Two `dagster-celery` workers (concurrency 1 each, a queue of their own) and the run share a temp
DAGSTER_HOME (SQLite storage, one machine). The run executes the sales chain of `celery_job.py` for
two days; every step must have been executed by a worker, and both workers must have taken part.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from sales_platform.core import settings
from sales_platform.core.warehouse.tables import sales
from sales_platform_tests.conftest import skip_or_fail
from sales_platform_tests.e2e import (
    BIN,
    REPO,
    GroupProcess,
    executable,
    generate_data,
    generated_file,
    init_instance,
    log_tail,
    stack_env,
)
from sales_platform_tests.oracle import Drop
from sales_platform_tests.test_e2e_daemon import assert_files_match_oracle

BROKER = os.environ.get("SALES_PLATFORM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
DAYS = ["2024-03-01", "2024-03-02"]
WORKERS = ("worker1", "worker2")
WORKER_READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 180.0
CELERY_WORKER_KEY = "Celery worker"  # metadata of dagster-celery's "Executing steps ... in celery worker"


def broker_problem() -> str | None:
    """None when RabbitMQ answers at BROKER, else why not."""
    try:
        import dagster_celery  # noqa: F401
        from kombu import Connection
    except ImportError:
        return "dagster-celery not installed: pip install -e '.[dev]'"
    try:
        with Connection(BROKER, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises several kinds: refused, auth, timeout
        return f"RabbitMQ not reachable at {BROKER}: {exc}"
    return None


def delete_queue(queue: str) -> None:
    """The queue and its exchange would otherwise stay in RabbitMQ after the test."""
    from kombu import Connection

    with Connection(BROKER, connect_timeout=3) as conn:
        channel = conn.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


@dataclass
class CeleryRig:
    root: Path
    home: Path
    env: dict[str, str]
    config: Path
    workers: list[GroupProcess]


def executor_config(queue: str) -> dict:
    # acks_late + prefetch 1: a busy worker reserves nothing more, so parallel steps spread out.
    return {"execution": {"config": {
        "broker": BROKER, "backend": "rpc://",
        "config_source": {"task_default_queue": queue, "task_acks_late": True,
                          "worker_prefetch_multiplier": 1},
    }}}


def wait_until_ready(worker: GroupProcess, name: str) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while f"{name}@" not in log_tail(worker.log, 200) or " ready." not in log_tail(worker.log, 200):
        if not worker.running or time.monotonic() > deadline:
            pytest.fail(f"celery {name} not ready (exit code {worker.process.poll()}):\n"
                        f"{log_tail(worker.log)}", pytrace=False)
        time.sleep(0.5)


@pytest.fixture
def celery_rig(tmp_path: Path) -> Iterator[CeleryRig]:
    problem = broker_problem()
    if problem:
        skip_or_fail(problem)
    home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = stack_env(home, data_dir, f"sqlite:///{tmp_path / 'warehouse.db'}")
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])  # dagster-celery runs plain `celery`
    generate_data(tmp_path / "generated", data_dir, env)
    for day in DAYS:
        os.replace(tmp_path / "generated" / "incoming" / generated_file(day),
                   data_dir / "incoming" / generated_file(day))
    init_instance(home)
    queue = f"sp_e2e_{uuid.uuid4().hex[:10]}"
    config = tmp_path / "celery.yaml"
    config.write_text(yaml.safe_dump(executor_config(queue)))
    rig = CeleryRig(tmp_path, home, env, config, [])
    try:
        for name in WORKERS:
            rig.workers.append(GroupProcess.start(
                name, [executable("dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                       "-y", str(config), "-q", queue, "-n", name, "--", "--concurrency=1"],
                env, tmp_path / f"{name}.log"))
        for name, worker in zip(WORKERS, rig.workers, strict=True):
            wait_until_ready(worker, name)
        yield rig
    finally:
        for worker in rig.workers:
            worker.stop()
        delete_queue(queue)


def run_job(rig: CeleryRig) -> None:
    """`dagster job execute` for the two days (one run, a partition range), bounded in time."""
    tags = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
    command = [executable("dagster"), "job", "execute", "-m", "sales_platform_tests.celery_job",
               "-j", "celery_sales_job", "-c", str(rig.config), "--tags", json.dumps(tags)]
    run = GroupProcess.start("dagster job execute", command, rig.env, rig.root / "run.log", cwd=REPO)
    try:
        run.process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass  # stopped below, reported with the logs
    finally:
        run.stop()
    if run.process.returncode != 0:
        tails = "\n".join(f"----- {p.name} -----\n{log_tail(p.log)}" for p in [run, *rig.workers])
        pytest.fail(f"the Celery run failed or timed out (exit {run.process.returncode}):\n{tails}",
                    pytrace=False)


def step_workers(home: Path) -> tuple[str, dict[str, str], dict[str, int], int]:
    """(run status, step -> Celery worker name, step -> pid that ran it, pid of the run process)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        workers, pids, run_pid = {}, {}, -1
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type_value == "RUN_START":
                run_pid = event.pid
            elif event.event_type_value == "STEP_SUCCESS":
                pids[event.step_key] = event.pid
            elif event.event_type_value == "ENGINE_EVENT" and event.engine_event_data and \
                    CELERY_WORKER_KEY in event.engine_event_data.metadata:
                workers[event.step_key] = event.engine_event_data.metadata[CELERY_WORKER_KEY].value
        return run.status.value, workers, pids, run_pid


def loaded_days(db_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(sales.c.sale_date, func.count())
                                .where(sales.c.sale_date.in_([date.fromisoformat(d) for d in DAYS]))
                                .group_by(sales.c.sale_date)).all()
    finally:
        engine.dispose()
    return {str(day): n for day, n in rows}


@pytest.mark.slow
def test_steps_run_on_two_celery_workers(celery_rig: CeleryRig):
    from sales_platform_tests.celery_job import CELERY_STEPS

    incoming = celery_rig.root / "data" / "incoming"
    drops = [Drop(generated_file(day), (incoming / generated_file(day)).read_bytes()) for day in DAYS]
    run_job(celery_rig)

    status, workers, pids, run_pid = step_workers(celery_rig.home)
    assert status == "SUCCESS"
    assert sorted(workers) == sorted(CELERY_STEPS), f"steps without a Celery worker: {workers}"
    assert {w.split("@")[0] for w in workers.values()} == set(WORKERS), workers
    assert sorted(pids) == sorted(CELERY_STEPS) and run_pid not in pids.values(), (pids, run_pid)
    assert len(set(pids.values())) == len(WORKERS), pids  # concurrency 1: one process per worker
    for name, worker in zip(WORKERS, celery_rig.workers, strict=True):
        assert "succeeded in" in worker.log.read_text(errors="replace"), f"{name} ran no task"
    # The two files' rows, exactly as the oracle computes them from their bytes (the job does not load
    # dim_products: no unknown_product rule).
    db_url, key = celery_rig.env[settings.DB_URL], celery_rig.env[settings.ENCRYPTION_KEY]
    expected = assert_files_match_oracle(db_url, key, drops, catalogue=None)
    want = {d.isoformat(): n for d, n in expected.rows_by_day().items()}
    assert sorted(want) == DAYS
    assert loaded_days(db_url) == want
