"""The load's fixed cost per day: many small days loaded one after another into one SQLite file.

    .venv/bin/python benchmarks/small_day_loads.py [--days 40] [--rows 3000]

A range run (a backfill) loads its days one by one in one process, so what a load costs besides
its rows (statement compilation, Table objects, the scratch file, the cross-day check, the commit)
is paid once per day. Prints the median per-day load time (the first 5 days left out as warm-up)
and the total. To compare two versions of the code in the same hour, run it with PYTHONPATH set
to another checkout's root (it then imports that checkout's sales_platform; the path is printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa


def day_table(day: date, rows: int) -> pa.Table:
    """One day of encrypted-layer-shaped rows (ids made unique per day)."""
    return pa.table({
        "transaction_id": [f"T{day:%Y%m%d}-{i}" for i in range(rows)],
        "customer_id": ["c" * 40] * rows, "product_id": ["p" * 40] * rows, "quantity": [1] * rows,
        "sale_ts": [datetime(day.year, day.month, day.day, 10)] * rows,
        "source_file": [f"{day}.csv"] * rows, "source_row": list(range(rows)),
        "source_sha256": ["0" * 64] * rows})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args(argv)
    import sales_platform.core.warehouse.loading as loading
    from sales_platform.core.warehouse.engine import make_engine

    print(f"code: {Path(loading.__file__).resolve().parents[3]}")
    with tempfile.TemporaryDirectory(prefix="sp-small-days-") as work:
        engine = make_engine(f"sqlite:///{Path(work) / 'warehouse.db'}")
        seconds = []
        for n in range(args.days):
            day = date(2024, 3, 1) + timedelta(days=n)
            table = day_table(day, args.rows)
            started = time.perf_counter()
            loading.SalesLoader(engine).load_day(day, lambda t=table: iter([t]), datetime(2024, 6, 1))
            seconds.append(time.perf_counter() - started)
        engine.dispose()
    warm = seconds[5:] or seconds
    print(f"{args.days} days x {args.rows} rows: median {statistics.median(warm) * 1000:.1f} ms per "
          f"day, total {sum(seconds):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
