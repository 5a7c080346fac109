"""What per-day truth costs: the same three paths timed on two checkouts of the code, in one run.

    .venv/bin/python benchmarks/day_cost.py --before /path/to/old/checkout [--after .]

Paths (each on a fresh SQLite warehouse and DAGSTER_HOME, the same generated files for both
checkouts; the checkouts alternate so a slow minute of the machine hits both):
- ``cli_100``: a 100-row day through ``sales-platform run`` (products, landing, the day, rollups);
- ``cli_40``: 40 days of 3,000 rows through ``sales-platform run --first .. --last ..``;
- ``backfill_365``: 365 days of 3,000 rows in one ``dagster asset materialize --partition-range``.

Each checkout runs with its own ``sales_platform`` first on PYTHONPATH and the venv of this one.
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

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
CHAIN = "raw_sales,cleaned_sales,sales_rejects,encrypted_sales,sales"
START = date(2024, 1, 1)
PATHS = {"cli_100": (1, 100), "cli_40": (40, 3000), "backfill_365": (365, 3000)}


def _env(code: Path, root: Path, key: str) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(code / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "PYTHONPATH": str(code), "DAGSTER_HOME": str(home),
            "SALES_PLATFORM_DATA_DIR": str(root / "data"), "SALES_PLATFORM_ENCRYPTION_KEY": key,
            "SALES_PLATFORM_SETTLE_S": "0"}


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_path(name: str, code: Path, root: Path, key: str) -> float:
    days, rows = PATHS[name]
    env = _env(code, root, key)
    cli = str(BIN / "sales-platform")
    subprocess.run([cli, "generate", "--start", START.isoformat(), "--days", str(days),
                    "--rows-per-day", str(rows), "--defect-rate", "0.01"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    last = (START + timedelta(days=days - 1)).isoformat()
    if name.startswith("cli"):
        return _timed([cli, "run", "--first", START.isoformat(), "--last", last], env, code)
    dagster = [str(BIN / "dagster"), "asset", "materialize", "-m", "sales_platform.definitions"]
    _timed([*dagster, "--select", "products_json,products_api_upload,dim_products"], env, code)
    return _timed([*dagster, "--select", CHAIN, "--partition-range", f"{START}...{last}"], env, code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="checkout of the code before the change")
    parser.add_argument("--after", default=str(ROOT), help="checkout of the code after it")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--out", default=str(BENCH / "results" / "day-cost.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sales_platform.core.crypto import generate_key

    key = generate_key()
    codes = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    result: dict[str, dict[str, float]] = {}
    for name in args.paths.split(","):
        result[name] = {}
        for label, code in codes.items():
            with tempfile.TemporaryDirectory(prefix=f"day_cost_{label}_") as tmp:
                result[name][label] = round(run_path(name, code, Path(tmp), key), 1)
        result[name]["after_over_before"] = round(result[name]["after"] / result[name]["before"], 2)
        print(name, result[name], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"paths": result, "cpus": os.cpu_count(),
                                          "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                                         indent=2))


if __name__ == "__main__":
    main()
