"""Scale-out on Celery, measured: the same range of days on one worker and on two (the README's
scale-out path: ``SALES_PLATFORM_EXECUTOR=celery``, RabbitMQ, ``dagster-celery worker start``).

    .venv/bin/python benchmarks/celery_scaleout.py --days 30 --rows-per-day 3000 \\
        [--broker amqp://guest:guest@127.0.0.1:5672//]

Configurations, each on a fresh copy of the same generated files, a fresh SQLite warehouse and a
fresh DAGSTER_HOME (SQLite instance storage: one machine):

- ``in_process``: no Celery, one ``daily_sales_job`` run over the range (the default executor);
- ``celery 1 worker, 1 run``; ``celery 2 workers, 1 run``: one run over the range, its steps as
  Celery tasks (within one run only sibling steps can overlap);
- ``celery 1 worker, 2 runs``; ``celery 2 workers, 2 runs``: the range split in two halves launched
  together, as a backfill split into runs would be.

Every worker has concurrency 1 (one step at a time). Wall time is from launching the run(s) to the
last one's exit. Each configuration must end with the same ``sales`` table (row count, sum of
quantities) as the in-process run, or the script fails. Writes
``benchmarks/results/celery-scaleout-<days>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    PROJECT_ROOT,
    RESULTS_DIR,
    add_range_arguments,
    format_table,
    generate_days,
    machine_facts,
    scratch_dir,
    write_json,
)

BIN = Path(sys.executable).parent
WORKER_CONFIG = PROJECT_ROOT / "deploy" / "celery_run_config.yaml"
QUEUE = "dagster"  # dagster-celery's default queue, the one the README's workers serve
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Config:
    name: str
    executor: str
    workers: int
    runs: int


CONFIGS = (
    Config("in_process, 1 run", "in_process", 0, 1),
    Config("celery: 1 worker, 1 run", "celery", 1, 1),
    Config("celery: 2 workers, 1 run", "celery", 2, 1),
    Config("celery: 1 worker, 2 runs", "celery", 1, 2),
    Config("celery: 2 workers, 2 runs", "celery", 2, 2),
)


def purge_queue(broker: str) -> None:
    """Tasks left by an earlier, interrupted run would otherwise be executed by our workers."""
    from kombu import Connection

    with Connection(broker, connect_timeout=3) as conn:
        try:
            conn.channel().queue_purge(QUEUE)
        except Exception:  # noqa: BLE001 - no such queue yet: nothing to purge
            pass


def environment(root: Path, key: str, executor: str, broker: str) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home), "SALES_PLATFORM_DATA_DIR": str(root / "data"),
            "SALES_PLATFORM_DB_URL": f"sqlite:///{root / 'warehouse.db'}",
            "SALES_PLATFORM_ENCRYPTION_KEY": key, "SALES_PLATFORM_EXECUTOR": executor,
            "DAGSTER_CELERY_BROKER_URL": broker, "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]])}


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
               str(WORKER_CONFIG), "-n", name, "--", "--concurrency=1"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_ready(process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"celery worker not ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def halves(first: date, days: int, runs: int) -> list[tuple[date, date]]:
    size = -(-days // runs)
    return [(first + timedelta(days=i), first + timedelta(days=min(i + size, days) - 1))
            for i in range(0, days, size)]


def run_ranges(env: dict[str, str], ranges: list[tuple[date, date]], logs: Path) -> float:
    started = time.perf_counter()
    processes = []
    for index, (first, last) in enumerate(ranges):
        tags = {"dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat()}
        command = [str(BIN / "dagster"), "job", "execute", "-m", "sales_platform.definitions",
                   "-j", "daily_sales_job", "--tags", json.dumps(tags)]
        with open(logs / f"run{index}.log", "wb") as out:
            processes.append(subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out,
                                              stderr=subprocess.STDOUT))
    codes = [p.wait() for p in processes]
    elapsed = time.perf_counter() - started
    if any(codes):
        tails = "\n".join((logs / f"run{i}.log").read_text(errors="replace")[-3000:]
                          for i in range(len(ranges)))
        raise SystemExit(f"a run failed (exit codes {codes}):\n{tails}")
    return elapsed


def sales_summary(root: Path) -> tuple[int, int]:
    with sqlite3.connect(root / "warehouse.db") as conn:
        rows, quantity = conn.execute("SELECT count(*), coalesce(sum(quantity), 0) FROM sales").fetchone()
    return int(rows), int(quantity)


def measure(config: Config, template: Path, work: Path, key: str, broker: str, first: date,
            days: int) -> dict:
    root = work / config.name.replace(" ", "_").replace(",", "").replace(":", "")
    shutil.copytree(template, root / "data")
    env = environment(root, key, config.executor, broker)
    workers: list[subprocess.Popen] = []
    try:
        if config.executor == "celery":
            purge_queue(broker)
            for n in range(config.workers):
                log = root / f"worker{n + 1}.log"
                workers.append(start_worker(f"bench{n + 1}@%h", env, log))
                wait_ready(workers[-1], log)
        elapsed = run_ranges(env, halves(first, days, config.runs), root)
    finally:
        for worker in workers:
            stop(worker)
    rows, quantity = sales_summary(root)
    print(f"{config.name}: {elapsed:.1f} s ({rows} rows in sales)", flush=True)
    return {"config": config.name, "executor": config.executor, "workers": config.workers,
            "runs": config.runs, "seconds": round(elapsed, 1), "sales_rows": rows,
            "sales_quantity": quantity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_range_arguments(parser, days=30)
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, warehouses)")
    args = parser.parse_args()
    from sales_platform.core.crypto import generate_key

    first, key = date.fromisoformat(args.start), generate_key()
    work = scratch_dir("celery_scaleout_")
    template = work / "template"
    generate_days(template, key, args.start, args.days, args.rows_per_day)
    try:
        results = [measure(c, template, work, key, args.broker, first, args.days) for c in CONFIGS]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    reference = results[0]
    for result in results:
        if (result["sales_rows"], result["sales_quantity"]) != (reference["sales_rows"],
                                                                 reference["sales_quantity"]):
            raise SystemExit(f"{result['config']} ended with a different sales table: {result}")
        result["speedup_vs_1_worker_1_run"] = round(results[1]["seconds"] / result["seconds"], 2)
    print(format_table(["configuration", "seconds", "speed-up vs 1 worker, 1 run"],
                       [[r["config"], r["seconds"], r["speedup_vs_1_worker_1_run"]] for r in results]))
    payload = {"days": args.days, "rows_per_day": args.rows_per_day, "results": results,
               "machine": machine_facts()}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    print(write_json(RESULTS_DIR / f"celery-scaleout-{args.days}.json", payload))


if __name__ == "__main__":
    main()
