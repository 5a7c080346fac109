"""Many small files dropped at once: how long until they are in ``sales``, through the CLI or
through the sensors, and does landing keep its speed as the drop grows?

    .venv/bin/python benchmarks/many_files.py [--files 20000] [--db-url URL] [--workdir DIR]
    .venv/bin/python benchmarks/many_files.py --path sensors [--files 20000] [--sensor-interval 30]
        [--settle 1] [--batch-files N] [--timeout 1800]

``--path cli`` (the default): writes ``--files`` one-row CSV files (one sale day) into a scratch
data dir, then runs ``sales-platform run`` for that day (products, land_files_job,
daily_sales_job, rollups_job) in a subprocess with SALES_PLATFORM_SETTLE_S=0. Reports the total
time, the rows in ``sales``, and the landing rate per tenth of the drop (from the archive copies'
times: a rate that falls as the drop grows means per-file work that grows with it), with the
machine's load before and after. Writes benchmarks/results/many-files-<n>.json.

``--path sensors``: the way a user runs the sensor path. The test suite's stack
(``sales_platform_tests.e2e.running_stack``: dagster-webserver + dagster-daemon on one instance
with the project's dagster.yaml, a scratch data dir and SQLite warehouse), with the project's
sensor interval (30 s unless ``--sensor-interval``), SALES_PLATFORM_SETTLE_S=1 and the default
landing batch (500 unless ``--batch-files``); products_job run first, then
``incoming_files_sensor`` and ``landed_days_sensor`` started. Once the drop sensor has ticked,
the files (written beforehand into ``drop-staging/`` beside ``incoming/``) are moved into
``incoming/`` by ``os.replace`` as fast as possible; the clock starts at the first rename and
stops when ``sales`` holds one row per file (polled every second; ``--timeout`` seconds, then a
failure with the daemon's log tail). Records the runs the daemon launched (landing and load:
queue wait, process start-up, step time, files each one landed, each relative to the first
rename), both sensors' ticks, and writes benchmarks/results/many-files-sensors-<n>.json (with a
suffix naming any setting changed from the above). Both process groups are stopped at the end,
also on failure or Ctrl-C; the scratch dir is kept after a failure, for the logs.

Not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS_DIR, machine_facts, remove_tree, scratch_dir, write_json  # noqa: E402

DAY = "2024-03-01"
HEADER = "transaction_id,customer_id,product_id,quantity,timestamp\n"

# The sensor path's settings: the project's defaults (docs/configuration.md) except the settle
# time, small but realistic (a producer that renames finished files needs none).
SENSOR_INTERVAL_DEFAULT_S = 30
SETTLE_DEFAULT_S = 1.0
SENSORS_TIMEOUT_S = 1800.0
POLL_S = 1.0
DRAIN_TIMEOUT_S = 300.0  # after the last row: runs still going (aggregates, late landing runs)
LANDING_JOB, LOAD_JOB = "land_files_job", "daily_sales_job"


def write_drop(incoming: Path, files: int) -> None:
    catalogue = incoming.parent / "catalogue" / "products.csv"
    catalogue.parent.mkdir(parents=True, exist_ok=True)
    catalogue.write_text("product_id,name,category,unit_price,updated_at\n" + "".join(
        f"P{i},Product {i},Toys,2.50,2024-01-01T00:00:00\n" for i in range(7)))
    incoming.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (incoming / f"shop_{i:06d}.csv").write_text(
            f"{HEADER}T{i},C{i % 97},P{i % 7},{1 + i % 5},{DAY}T{i % 24:02d}:{i % 60:02d}:00\n")


def landing_rates(archive: Path, tenths: int = 10) -> list[float]:
    """Files landed per second in each tenth of the drop, in landing order (each landed file's
    sealed archive copy is written as it lands: its mtime is the landing's moment)."""
    times = sorted(p.stat().st_mtime for p in archive.glob("*.sealed"))
    step = max(len(times) // tenths, 1)
    rates = []
    for start in range(step, len(times), step):
        seconds = times[start] - times[start - step]
        rates.append(round(step / seconds, 1) if seconds > 0 else float("inf"))
    return rates


def sales_rows(db_url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from sales_platform.core.warehouse.tables import sales

    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(sales)).scalar_one()
    engine.dispose()
    return rows


def run_cli(args: argparse.Namespace) -> int:
    work = Path(args.workdir) if args.workdir else scratch_dir("many-files")
    data = work / "data"
    db_url = args.db_url or f"sqlite:///{work / 'warehouse.db'}"
    write_drop(data / "incoming", args.files)
    env = {**os.environ, "SALES_PLATFORM_DATA_DIR": str(data), "SALES_PLATFORM_DB_URL": db_url,
           "SALES_PLATFORM_DEMO": "1", "SALES_PLATFORM_SETTLE_S": "0",
           "DAGSTER_HOME": str(work / "dagster_home")}
    command = [str(Path(sys.executable).parent / "sales-platform"), "run", "--first", DAY,
               "--last", DAY]
    load_before = os.getloadavg()
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    result = {
        "files": args.files, "command": " ".join(command[1:]), "exit_code": done.returncode,
        "seconds": round(took, 1), "files_per_s": round(args.files / took, 1),
        "rows_in_sales": sales_rows(db_url),
        "landing_files_per_s_by_tenth": landing_rates(data / "archive"),
        "load_before": load_before, "load_after": os.getloadavg(),
        # the scratch dir's path is this machine's: not kept in a result that may be published
        "stdout": done.stdout.replace(str(work), "<workdir>").splitlines()[:12],
        "stderr_tail": done.stderr.replace(str(work), "<workdir>").splitlines()[-5:],
        "machine": machine_facts(),
    }
    print(f"{args.files} files: {took:.1f} s ({result['files_per_s']} files/s), "
          f"{result['rows_in_sales']} rows in sales, exit {done.returncode}")
    print(f"landing files/s by tenth of the drop: {result['landing_files_per_s_by_tenth']}")
    print(f"load average before {load_before}, after {result['load_after']}")
    write_json(RESULTS_DIR / f"many-files-{args.files}.json", result)
    if not args.keep:
        remove_tree(work)
    return 0 if done.returncode == 0 else 1


# ---- the sensor path --------------------------------------------------------------------------

RUNS_DETAIL = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId jobName status creationTime startTime endTime tags { key value }
                            stepStats { stepKey status startTime endTime } } }
    ... on Error { message }
  }
}"""

RUN_LIFECYCLE = """
query Events($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename ... on EventConnection { events { __typename ... on MessageEvent { timestamp eventType } } }
  }
}"""

SENSOR_TICKS = """
query Ticks($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: $limit) {
      status timestamp endTimestamp runIds skipReason error { message } } } }
  }
}"""

BUSY = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING", "MANAGED"}


@contextmanager
def user_settings(e2e, overrides: dict[str, str]):
    """``e2e.running_stack`` with these settings instead of the test suite's fast ones (sensor
    interval 2 s, settle 0.5 s): its environment comes from ``e2e.stack_env``, wrapped here."""
    original = e2e.stack_env

    def stack_env(home: Path, data_dir: Path, db_url: str) -> dict[str, str]:
        return {**original(home, data_dir, db_url), **overrides}

    e2e.stack_env = stack_env
    try:
        yield
    finally:
        e2e.stack_env = original


def warehouse_counts(engine) -> tuple[int, int]:
    """(rows in sales, file versions in the ledger)."""
    from sqlalchemy import func, select

    from sales_platform.core.warehouse.tables import file_ledger, sales

    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(sales)).scalar_one()
        files = conn.execute(select(func.count()).select_from(file_ledger)).scalar_one()
    return rows, files


def fragments_by_run(engine) -> dict[str, int]:
    """Landed fragments per run id (one per one-day file), from the data-object ledger: which runs
    landed the drop (the landing runs, or a load run's raw_sales, which lands every ready file)."""
    from sqlalchemy import func, select

    from sales_platform.core.warehouse.tables import data_objects

    with engine.connect() as conn:
        return {run_id: n for run_id, n in conn.execute(
            select(data_objects.c.run_id, func.count()).where(data_objects.c.kind == "fragment")
            .group_by(data_objects.c.run_id)).all()}


def seconds_from(t0: float, stamp: float | None) -> float | None:
    return None if stamp is None else round(stamp - t0, 2)


def run_timeline(stack, run: dict, t0: float, landed: dict[str, int]) -> dict:
    """One run's moments relative to the first rename (t0, Unix time) and where its time went:
    queued (created by the sensor → taken from the run queue and launched: RUN_STARTING; the
    queue is looked at every few seconds and holds runs beyond its limits), start-up (launched →
    the run process has loaded the code: RUN_START), waiting for its step (RUN_START → first step
    start: pool slots, resources), steps, and the end of the run after its last step."""
    events = stack.gql(RUN_LIFECYCLE, runId=run["runId"])["logsForRun"].get("events", [])
    first: dict[str, float] = {}
    for e in events:
        if e.get("eventType") and e["eventType"] not in first:
            first[e["eventType"]] = float(e["timestamp"]) / 1000
    steps = [s for s in run["stepStats"] if s["startTime"]]
    step_start = min((s["startTime"] for s in steps), default=None)
    step_end = max((s["endTime"] or 0 for s in steps), default=None) or None
    created, dequeued, started, ended = (run["creationTime"], first.get("RUN_STARTING"),
                                         first.get("RUN_START") or run["startTime"], run["endTime"])

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 2)

    tags = {t["key"]: t["value"] for t in run["tags"]}
    return {
        "run_id": run["runId"], "status": run["status"], "files": tags.get("sales_platform/files"),
        "files_landed": landed.get(run["runId"], 0),
        "created_s": seconds_from(t0, created), "dequeued_s": seconds_from(t0, dequeued),
        "run_start_s": seconds_from(t0, started), "first_step_s": seconds_from(t0, step_start),
        "end_s": seconds_from(t0, ended), "duration_s": span(created, ended),
        "queued_s": span(created, dequeued), "startup_s": span(dequeued, started),
        "wait_for_step_s": span(started, step_start), "steps_s": span(step_start, step_end),
        "after_steps_s": span(step_end, ended),
        "steps": {s["stepKey"]: span(s["startTime"], s["endTime"]) for s in steps},
    }


def summarise_runs(timelines: list[dict]) -> dict:
    def total(key: str) -> float:
        return round(sum(t[key] or 0 for t in timelines), 1)

    ends = [t["end_s"] for t in timelines if t["end_s"] is not None]
    return {
        "runs": len(timelines),
        "statuses": {s: sum(t["status"] == s for t in timelines) for s in {t["status"] for t in timelines}},
        "first_created_s": min((t["created_s"] for t in timelines), default=None),
        "first_start_s": min((t["run_start_s"] for t in timelines if t["run_start_s"] is not None),
                             default=None),
        "last_created_s": max((t["created_s"] for t in timelines), default=None),
        "last_end_s": max(ends, default=None),
        "durations_s": [t["duration_s"] for t in timelines],
        "files_landed": sum(t["files_landed"] for t in timelines),
        "runs_that_landed_files": sum(t["files_landed"] > 0 for t in timelines),
        "total_queued_s": total("queued_s"), "total_startup_s": total("startup_s"),
        "total_wait_for_step_s": total("wait_for_step_s"), "total_steps_s": total("steps_s"),
        "total_after_steps_s": total("after_steps_s"),
    }


def sensor_ticks(stack, e2e, name: str, t0: float) -> list[dict]:
    """A sensor's ticks since the drop: when, how long, how many runs they requested."""
    found = stack.gql(SENSOR_TICKS, selector=e2e.sensor_selector(name), limit=500)["sensorOrError"]
    ticks = found.get("sensorState", {}).get("ticks", []) if found.get("__typename") == "Sensor" else []
    return [{"at_s": seconds_from(t0, t["timestamp"]),
             "took_s": None if t["endTimestamp"] is None else round(t["endTimestamp"] - t["timestamp"], 2),
             "status": t["status"], "runs": len(t["runIds"]), "skip": t["skipReason"],
             "error": (t["error"] or {}).get("message", "")[:300] or None}
            for t in sorted(ticks, key=lambda t: t["timestamp"]) if t["timestamp"] >= t0 - 1]


def wait_for_sales(stack, engine, files: int, t0: float, timeout: float) -> dict:
    """Poll until ``sales`` holds ``files`` rows; the moments the counts changed, every second."""
    samples: list[tuple[float, int, int]] = []
    all_landed_s = first_row_s = None
    while True:
        now = time.time()
        rows, landed = warehouse_counts(engine)
        if not samples or samples[-1][1:] != (rows, landed):
            samples.append((round(now - t0, 1), rows, landed))
        if first_row_s is None and rows:
            first_row_s = round(now - t0, 1)
        if all_landed_s is None and landed >= files:
            all_landed_s = round(now - t0, 1)
        if rows >= files:
            return {"ok": True, "seconds": round(now - t0, 1), "all_files_in_ledger_s": all_landed_s,
                    "first_rows_in_sales_s": first_row_s, "samples_s_rows_files": samples}
        stopped = [f"{p.name} exited with {p.process.returncode}" for p in stack.processes
                   if not p.running]
        if stopped or now - t0 > timeout:
            reason = "; ".join(stopped) or f"timeout: {rows} of {files} rows in sales after {timeout:.0f} s"
            return {"ok": False, "failure": reason, "seconds": round(now - t0, 1),
                    "all_files_in_ledger_s": all_landed_s, "first_rows_in_sales_s": first_row_s,
                    "samples_s_rows_files": samples}
        time.sleep(POLL_S)


def drain(stack, timeout: float) -> bool:
    """Wait until no landing or load run is queued or running (a load run may still be writing
    its aggregates after the last row; a landing run queued before a load run landed its files
    still runs). False when the wait ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(r["status"] in BUSY for job in (LANDING_JOB, LOAD_JOB) for r in stack.runs(job)):
            return True
        time.sleep(2)
    return False


def collect(stack, e2e, engine, data: Path, t0: float) -> dict:
    """The runs the daemon launched (with the files each landed), the sensors' ticks, the rows."""
    result: dict = {}
    landed = fragments_by_run(engine)
    for label, job in (("landing", LANDING_JOB), ("load", LOAD_JOB)):
        details = stack.gql(RUNS_DETAIL, filter={"pipelineName": job})["runsOrError"]["results"]
        timelines = sorted((run_timeline(stack, r, t0, landed) for r in details),
                           key=lambda t: t["created_s"])
        result[f"{label}_runs"] = summarise_runs(timelines)
        result[f"{label}_run_detail"] = timelines
    result["sensor_ticks"] = {name: sensor_ticks(stack, e2e, name, t0) for name in e2e.SENSORS}
    result["rows_in_sales"] = warehouse_counts(engine)[0]
    result["landing_files_per_s_by_tenth"] = landing_rates(data / "archive")
    return result


def run_sensors(args: argparse.Namespace) -> int:
    import pytest  # the stack helpers report failures with pytest.fail
    from sqlalchemy import create_engine

    from sales_platform.core import settings
    from sales_platform_tests import e2e

    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()):
        print(f"--workdir {args.workdir} is not empty: the stack needs fresh state (keys, instance)")
        return 2
    work = Path(args.workdir) if args.workdir else scratch_dir("many-files-sensors")
    data = work / "data"  # running_stack's layout: <root>/data, <root>/dagster_home, <root>/warehouse.db
    db_url = args.db_url or f"sqlite:///{work / 'warehouse.db'}"
    overrides = {settings.SENSOR_INTERVAL_S: str(args.sensor_interval),
                 settings.SETTLE_S: str(args.settle), settings.DB_URL: db_url}
    if args.batch_files:
        overrides[settings.LANDING_BATCH_FILES] = str(args.batch_files)
    result: dict = {
        "files": args.files, "path": "sensors",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "settings": {
            "sensor_interval_s": args.sensor_interval,
            "sensor_interval_source": "the project's default (docs/configuration.md, README)"
            if args.sensor_interval == SENSOR_INTERVAL_DEFAULT_S else "--sensor-interval",
            "settle_s": args.settle,
            "landing_batch_files": args.batch_files or settings.DEFAULT_LANDING_BATCH_FILES,
            "landing_batch_source": "--batch-files" if args.batch_files else "the project's default",
            "instance": "the project's dagster.yaml (queued runs, max 4 at once; pools 2 per pool)",
            "warehouse": db_url.split("://")[0],
            "drop": "renamed from drop-staging/ right after a tick of incoming_files_sensor ended "
                    "(the longest wait for the first tick that sees the files)",
        },
    }
    ok = False
    engine = create_engine(db_url)

    def terminated(signum: int, frame) -> None:  # like Ctrl-C: the stack's groups are stopped
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        with user_settings(e2e, overrides), e2e.running_stack(work) as stack:
            staging = data / "drop-staging"
            write_drop(staging, args.files)  # the catalogue too, over the stack's generated one
            names = sorted(p.name for p in staging.iterdir())
            stack.wait_for_run(stack.launch_job("products_job", run_config=e2e.IN_PROCESS))
            sensors_on = time.time()
            for name in e2e.SENSORS:
                stack.start_sensor(name)
            stack.wait_for_ticks("incoming_files_sensor", after=sensors_on, count=1,
                                 timeout=args.sensor_interval + 60)
            result["load_before"] = os.getloadavg()
            t0 = time.time()
            for name in names:
                os.replace(staging / name, data / "incoming" / name)
            result["rename_s"] = round(time.time() - t0, 2)
            print(f"{args.files} files renamed into incoming/ in {result['rename_s']} s; waiting for "
                  f"sales (sensor interval {args.sensor_interval} s, settle {args.settle} s)", flush=True)
            outcome = wait_for_sales(stack, engine, args.files, t0, args.timeout)
            result["load_after"] = os.getloadavg()
            result.update(outcome)
            ok = outcome["ok"]
            if ok:
                result["drained"] = drain(stack, DRAIN_TIMEOUT_S)
            else:
                result["log_tails"] = stack.log_tails(60)
                print(f"FAILED: {outcome['failure']}\n{result['log_tails']}")
            try:
                result.update(collect(stack, e2e, engine, data, t0))
            except Exception as exc:  # after a failure the processes may be gone: keep the rest
                if ok:
                    raise
                result["collect_error"] = repr(exc)[:1000]
    except pytest.fail.Exception as exc:  # a helper's wait failed; it printed the log tails
        result.update(ok=False, failure=str(exc)[:4000])
        print(f"FAILED: {str(exc)[:4000]}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()
    result["machine"] = machine_facts()
    report(result)
    write_json(RESULTS_DIR / f"many-files-sensors-{args.files}{settings_suffix(args)}.json", result)
    if ok and not args.keep:
        remove_tree(work)
    elif not ok:
        print(f"kept for the logs: {work}")
    return 0 if ok else 1


def settings_suffix(args: argparse.Namespace) -> str:
    """"" with the default settings, else what differs (so a variant never overwrites them)."""
    parts = [f"-interval{args.sensor_interval}" if args.sensor_interval != SENSOR_INTERVAL_DEFAULT_S else "",
             f"-settle{args.settle:g}" if args.settle != SETTLE_DEFAULT_S else "",
             f"-batch{args.batch_files}" if args.batch_files else ""]
    return "".join(parts)


def report(result: dict) -> None:
    if "seconds" not in result:
        return
    print(f"{result['files']} files through the sensors: {result['seconds']} s until "
          f"{result.get('rows_in_sales')} rows in sales ({'ok' if result.get('ok') else 'FAILED'}); "
          f"all files in the ledger at {result.get('all_files_in_ledger_s')} s, first rows in sales "
          f"at {result.get('first_rows_in_sales_s')} s")
    for label in ("landing", "load"):
        runs = result.get(f"{label}_runs")
        if not runs:
            continue
        print(f"{label} runs: {runs['runs']} {runs['statuses']} ({runs['files_landed']} files landed by "
              f"{runs['runs_that_landed_files']} of them), first created {runs['first_created_s']} s, "
              f"first started {runs['first_start_s']} s, last created {runs['last_created_s']} s, "
              f"last ended {runs['last_end_s']} s; summed: queued {runs['total_queued_s']} s, start-up "
              f"{runs['total_startup_s']} s, waiting for the step {runs['total_wait_for_step_s']} s, "
              f"steps {runs['total_steps_s']} s, after the steps {runs['total_after_steps_s']} s")
    for name, ticks in result.get("sensor_ticks", {}).items():
        print(f"{name}: {len(ticks)} ticks since the drop; those that requested runs (at s, took s, "
              f"runs): {[(t['at_s'], t['took_s'], t['runs']) for t in ticks if t['runs']]}")
    print(f"landing files/s by tenth of the drop: {result.get('landing_files_per_s_by_tenth')}")
    print(f"load average before {result.get('load_before')}, after {result.get('load_after')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--path", choices=("cli", "sensors"), default="cli",
                        help="cli: `sales-platform run`; sensors: webserver + daemon, the drop sensors")
    parser.add_argument("--db-url", help="warehouse URL (default: a SQLite file in the workdir)")
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data dir")
    parser.add_argument("--sensor-interval", type=int, default=SENSOR_INTERVAL_DEFAULT_S,
                        help="sensors: SALES_PLATFORM_SENSOR_INTERVAL_S (default: the project's 30)")
    parser.add_argument("--settle", type=float, default=SETTLE_DEFAULT_S,
                        help="sensors: SALES_PLATFORM_SETTLE_S (default 1)")
    parser.add_argument("--batch-files", type=int,
                        help="sensors: SALES_PLATFORM_LANDING_BATCH_FILES (default: the project's)")
    parser.add_argument("--timeout", type=float, default=SENSORS_TIMEOUT_S,
                        help="sensors: seconds to wait for every row in sales (default 1800)")
    args = parser.parse_args(argv)
    return run_sensors(args) if args.path == "sensors" else run_cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
