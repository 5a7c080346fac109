"""Where a range run's time goes: the platform's own work vs Dagster's per-partition events.

    .venv/bin/python benchmarks/range_profile.py --days 40 --rows-per-day 3000 \\
        [--instance-pg postgresql+psycopg2://postgres@127.0.0.1:5432/SCRATCH_DB]

Generates the days, loads the products, then runs the sales chain over the whole range as one run
(a single-run backfill, like ``dagster asset materialize --partition-range``) in this process
under pyinstrument, with a real on-disk DagsterInstance (SQLite storage, or PostgreSQL storage
with ``--instance-pg``: the database must exist and be empty; psycopg2, as in
``deploy/dagster.celery.yaml``). Reports the wall time, the time
inside the platform's asset code, the time Dagster spends storing events, and the events per day
by type. Writes ``benchmarks/results/range-profile-<days>.json`` and the pyinstrument text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    PROJECT_ROOT,
    RESULTS_DIR,
    add_range_arguments,
    generate_days,
    machine_facts,
    remove_tree,
    scratch_dir,
    write_json,
)

BIN = Path(sys.executable).parent
PLATFORM_CODE = str(PROJECT_ROOT / "sales_platform")
EVENT_STORE = "handle_new_event"  # DagsterInstance.handle_new_event: every event's write


def instance_yaml(pg_url: str | None) -> str:
    text = "telemetry:\n  enabled: false\n"
    if pg_url:
        text += f"storage:\n  postgres:\n    postgres_url: \"{pg_url}\"\n"
    return text


def split_time(frame) -> dict[str, float]:
    """Seconds in the platform's code (outermost frames only) and in Dagster's event writes."""
    out = {"platform_code_s": 0.0, "dagster_event_storage_s": 0.0}

    def walk(node) -> None:
        if node.function == EVENT_STORE:
            out["dagster_event_storage_s"] += node.time
            return
        if (node.file_path or "").startswith(PLATFORM_CODE):
            out["platform_code_s"] += node.time
            return
        for child in node.children:
            walk(child)

    walk(frame)
    return {k: round(v, 2) for k, v in out.items()}


def events_by_type(instance, run_id: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for entry in instance.all_logs(run_id):
        counts[entry.dagster_event.event_type_value if entry.dagster_event else "log message"] += 1
    return dict(counts.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_range_arguments(parser, days=40)
    parser.add_argument("--instance-pg", help="PostgreSQL URL of an empty database for the instance")
    parser.add_argument("--event-batch-size", type=int, default=0,
                        help="DAGSTER_EVENT_BATCH_SIZE for the run (0: each event stored alone; "
                        "PostgreSQL storage writes a batch at once, SQLite storage one by one anyway)")
    args = parser.parse_args()
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(args.event_batch_size)
    from pyinstrument import Profiler

    work = scratch_dir("range_profile_")
    home = work / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(args.instance_pg))
    os.environ["DAGSTER_HOME"] = str(home)
    from sales_platform.core.crypto import generate_key

    key = generate_key()
    os.environ.update(SALES_PLATFORM_DATA_DIR=str(work / "data"), SALES_PLATFORM_ENCRYPTION_KEY=key)
    generate_days(work / "data", key, args.start, args.days, args.rows_per_day)
    import dagster as dg

    from sales_platform.definitions import defs
    from sales_platform.partitions import partition_range_tags
    from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, resources_for

    try:
        instance = dg.DagsterInstance.get()
        resources = resources_for(work / "data", f"sqlite:///{work / 'warehouse.db'}", key)
        dg.materialize(list(defs.assets), selection=PRODUCTS, resources=resources, instance=instance)
        last = (date.fromisoformat(args.start) + timedelta(days=args.days - 1)).isoformat()
        profiler = Profiler()
        profiler.start()
        started = time.perf_counter()
        result = dg.materialize(list(defs.assets), selection=SALES_CHAIN, resources=resources,
                                instance=instance, tags=partition_range_tags(args.start, last))
        wall = time.perf_counter() - started
        profiler.stop()
        events = events_by_type(instance, result.run_id)
        split = split_time(profiler.last_session.root_frame())
    finally:
        remove_tree(work)
    payload = {"days": args.days, "rows_per_day": args.rows_per_day,
               "instance_storage": "postgresql" if args.instance_pg else "sqlite",
               "event_batch_size": args.event_batch_size,
               "wall_s": round(wall, 2), "per_day_s": round(wall / args.days, 3), **split,
               "events": events, "events_per_day": round(sum(events.values()) / args.days, 1),
               "machine": machine_facts()}
    print(json.dumps({k: v for k, v in payload.items() if k != "machine"}, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"range-profile-{args.days}" + ("-pg" if args.instance_pg else "") + (
        f"-batch{args.event_batch_size}" if args.event_batch_size else "")
    (RESULTS_DIR / f"{name}.txt").write_text(profiler.output_text(unicode=False, color=False))
    print(write_json(RESULTS_DIR / f"{name}.json", payload))


if __name__ == "__main__":
    main()
