"""Backfill benchmark: a year of daily partitions in one run vs. one `dagster asset materialize` per day.

    .venv/bin/python benchmarks/backfill.py --days 365 --rows-per-day 3000 --separate-runs 10 \
        [--planned-subset]

Both paths go through the real Dagster CLI on the same generated files (fresh SQLite warehouse and
DAGSTER_HOME each). The per-day path is timed on --separate-runs days and extrapolated linearly to
--days (each of those runs pays the same process start and definition load); the output says so.

``--planned-subset`` times the single run once more with Dagster's
``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true``: one "materialization planned" event per
asset for the whole range instead of one per asset and day. Dagster's own caveat: the days of a
range run that fails are then not marked failed in the asset's partition status (the backfill
still lists them as failed and re-executes them). The platform does not set it; this measures
what an operator would trade.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_range_arguments, generate_days  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHAIN = "raw_sales,cleaned_sales,sales_rejects,encrypted_sales,sales"
PRODUCTS = "products_json,products_api_upload,dim_products"


def environment(root: Path, key: str) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "SALES_PLATFORM_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(home),
            "SALES_PLATFORM_ENCRYPTION_KEY": key}


PLANNED_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def materialize(env: dict[str, str], select: str, *partition: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "sales_platform.definitions",
                    "--select", select, *partition], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def prepare(root: Path, key: str, start: date, days: int, rows: int) -> dict[str, str]:
    env = environment(root, key)
    generate_days(root / "data", key, start.isoformat(), days, rows)
    materialize(env, PRODUCTS)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_range_arguments(parser, days=365)
    parser.add_argument("--separate-runs", type=int, default=10)
    parser.add_argument("--planned-subset", action="store_true",
                        help=f"also time the single run with {PLANNED_SUBSET}=true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sales_platform.core.crypto import generate_key

    start, key = date.fromisoformat(args.start), generate_key()
    last = start + timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory(prefix="backfill_bench_") as tmp:
        single_env = prepare(Path(tmp) / "single", key, start, args.days, args.rows_per_day)
        single = materialize(single_env, CHAIN, "--partition-range", f"{start}...{last}")
        subset = None
        if args.planned_subset:
            subset_env = {**prepare(Path(tmp) / "subset", key, start, args.days, args.rows_per_day),
                          PLANNED_SUBSET: "true"}
            subset = materialize(subset_env, CHAIN, "--partition-range", f"{start}...{last}")
        per_day_env = prepare(Path(tmp) / "per_day", key, start, args.days, args.rows_per_day)
        timings = [materialize(per_day_env, CHAIN, "--partition", str(start + timedelta(days=i)))
                   for i in range(args.separate_runs)]
    per_run = sum(timings) / len(timings)
    result = {
        "days": args.days, "rows_per_day": args.rows_per_day, "single_run_s": round(single, 1),
        "separate_runs_measured": len(timings), "separate_run_mean_s": round(per_run, 2),
        "separate_runs_extrapolated_s": round(per_run * args.days, 1),
        "speedup": round(per_run * args.days / single, 1), "cpus": os.cpu_count(),
    }
    if subset is not None:
        result["single_run_planned_subset_s"] = round(subset, 1)
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"backfill-{args.days}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
