"""Many small files dropped at once, through the CLI: how long until they are in ``sales``, and
does landing keep its speed as the drop grows?

    .venv/bin/python benchmarks/many_files.py [--files 20000] [--db-url URL] [--workdir DIR]

Writes ``--files`` one-row CSV files (one sale day) into a scratch data dir, then runs
``sales-platform run`` for that day (products, land_files_job, daily_sales_job, rollups_job) in
a subprocess with SALES_PLATFORM_SETTLE_S=0. Reports the total time, the rows in ``sales``, and
the landing rate per tenth of the drop (from file_ledger.processed_at: a rate that falls as the
drop grows means per-file work that grows with it), with the machine's load before and after.
Writes benchmarks/results/many-files-<n>.json. Not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS_DIR, machine_facts, remove_tree, scratch_dir, write_json  # noqa: E402

DAY = "2024-03-01"
HEADER = "transaction_id,customer_id,product_id,quantity,timestamp\n"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--db-url", help="warehouse URL (default: a SQLite file in the workdir)")
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data dir")
    args = parser.parse_args(argv)
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
        "stdout": done.stdout.splitlines()[:12], "stderr_tail": done.stderr.splitlines()[-5:],
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


if __name__ == "__main__":
    raise SystemExit(main())
