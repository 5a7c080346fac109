"""How fast sales-platform's mock-data generator writes a day of rows.

    .venv/bin/python benchmarks/generator_speed.py [--rows 10000000] [--defect-rate 0.01] [--cli]

Runs SalesGenerator.write_day (the code behind `sales-platform generate`) in a fresh subprocess,
into a temp dir that is removed afterwards; reports rows/s, MB/s and peak RSS, and writes
benchmarks/results/generator-<rows>.json. ``--cli`` also times the real command
(`sales-platform generate --days 1 --rows-per-day N`), imports included; it writes about N rows
(the day's count varies with weekday and season, as in production data).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT") or str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    DEFAULT_SEED,
    PROJECT_ROOT,
    RESULTS_DIR,
    code_env,
    format_table,
    machine_facts,
    remove_tree,
    run_isolated,
    scratch_dir,
    snapshot_code,
    wait_for_quiet,
    write_json,
)


def child(rows: int, defect_rate: float, folder: Path, out: Path) -> int:
    from sales_platform.core import generator as gen

    started = time.perf_counter()
    g = gen.SalesGenerator(gen.GeneratorSettings(seed=DEFAULT_SEED, defect_rate=defect_rate))
    gen.write_catalogue(g.catalogue, folder / "catalogue" / "products.csv",
                        datetime.combine(DEFAULT_DAY, datetime.min.time()))
    setup = time.perf_counter() - started
    # time chunk generation and CSV writing apart (same calls write_day makes)
    build = write = 0.0
    path = folder / "source" / f"sales_{DEFAULT_DAY:%Y-%m-%d}.csv"
    path.parent.mkdir(parents=True)
    writer = None
    chunks = g.chunks(DEFAULT_DAY, rows)
    while True:
        t0 = time.perf_counter()
        table = next(chunks, None)
        build += time.perf_counter() - t0
        if table is None:
            break
        t0 = time.perf_counter()
        if writer is None:
            writer = gen.pacsv.CSVWriter(path, table.schema, write_options=gen.pacsv.WriteOptions(
                quoting_style="needed"))
        writer.write_table(table)
        write += time.perf_counter() - t0
    writer.close()
    total = time.perf_counter() - started
    hwm = next((int(line.split()[1]) / 1024 for line in
                Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")), None)
    out.write_text(json.dumps({"rows": rows, "seconds": total, "setup_s": setup, "vmhwm_mb": hwm,
                               "build_chunks_s": build, "write_csv_s": write,
                               "bytes": path.stat().st_size, "chunk_rows": gen.CHUNK_ROWS}))
    return 0


def time_cli(rows: int, defect_rate: float, folder: Path, extra_env: dict[str, str]) -> dict:
    exe = Path(sys.executable).with_name("sales-platform")
    env = {**os.environ, **extra_env, "SALES_PLATFORM_DATA_DIR": str(folder)}
    started = time.perf_counter()
    proc = subprocess.run([str(exe), "generate", "--days", "1", "--rows-per-day", str(rows),
                           "--start", DEFAULT_DAY.isoformat(), "--defect-rate", str(defect_rate)],
                          env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    seconds = time.perf_counter() - started
    match = re.search(r"(\d+) rows", proc.stdout)
    written = int(match.group(1)) if match else None
    return {"ok": proc.returncode == 0, "rows": written, "seconds": seconds,
            "rows_per_s": written / seconds if written else None,
            "output": (proc.stdout + proc.stderr)[-1000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--defect-rate", type=float, default=0.01)
    parser.add_argument("--cli", action="store_true", help="also time `sales-platform generate`")
    parser.add_argument("--workdir")
    parser.add_argument("--settle", type=float, default=300)
    parser.add_argument("--quiet-below", type=float, default=45,
                        help="machine busy %% under which a measurement may start")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import the live work tree instead of a frozen copy of sales_platform/")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.rows, args.defect_rate, args.folder, args.out)

    work = scratch_dir("sp-generator-", args.workdir)
    code_root = None if args.no_snapshot else snapshot_code(work)
    facts = machine_facts(code_root=code_root)
    try:
        busy = wait_for_quiet(args.settle, args.quiet_below) if args.settle > 0 else None
        print(f"generating {args.rows:,} rows (defect rate {args.defect_rate})"
              + (f", machine {busy:.0f}% busy before start" if busy is not None else "") + " ...",
              flush=True)
        run = run_isolated([__file__, "--child", "--rows", str(args.rows), "--defect-rate",
                            str(args.defect_rate), "--folder", str(work / "lib")],
                           env=code_env(code_root), timeout=3600)
        cli = None
        if args.cli:
            remove_tree(work / "lib")
            cli = time_cli(args.rows, args.defect_rate, work / "cli", code_env(code_root))
    finally:
        remove_tree(work)
    if not run.ok:
        print(f"FAILED:\n{run.stderr_tail}")
        return 1
    r = run.result
    rows_table = [["SalesGenerator.write_day (library, in a fresh process)", f"{r['rows']:,}",
                   f"{r['seconds']:.1f}", f"{r['rows'] / r['seconds']:,.0f}",
                   f"{r['bytes'] / 2**20 / r['seconds']:.1f}", f"{run.peak_rss_mb:.0f}"]]
    if cli:
        rows_table.append(["`sales-platform generate --days 1` (imports included)",
                           f"{cli['rows']:,}" if cli["rows"] else "-", f"{cli['seconds']:.1f}",
                           f"{cli['rows_per_s']:,.0f}" if cli["rows_per_s"] else "FAILED", "-", "-"])
    text = [f"Generator speed ({facts['cpu_count']} CPU, {facts['cpu_model']}; "
            f"other CPU during the run {run.other_cpu_pct:.0f}% of the machine)", "",
            format_table(["what", "rows", "seconds", "rows/s", "MiB/s", "peak RSS MB"], rows_table,
                         align="lrrrrr"), "",
            f"split: setup (catalogue, customer weights) {r['setup_s']:.2f} s, building chunks "
            f"{r['build_chunks_s']:.1f} s, writing CSV {r['write_csv_s']:.1f} s "
            f"({r['chunk_rows']:,}-row chunks); file {r['bytes'] / 2**20:.0f} MiB",
            f"target 10M rows < 60 s: {'met' if r['seconds'] * 10_000_000 / r['rows'] < 60 else 'NOT met'} "
            f"(extrapolated to 10M: {r['seconds'] * 10_000_000 / r['rows']:.1f} s)"]
    print("\n" + "\n".join(text))
    out = write_json(RESULTS_DIR / f"generator-{args.rows}.json",
                     {"machine": facts, "library": {**r, "peak_rss_mb": run.peak_rss_mb,
                                                    "rows_per_s": r["rows"] / r["seconds"],
                                                    "noise": run.noise()},
                      "cli": cli, "defect_rate": args.defect_rate, "day": DEFAULT_DAY.isoformat(),
                      "text": "\n".join(text)})
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
