"""The platform path alone at several sizes: is throughput steady and memory flat?

    .venv/bin/python benchmarks/scaling.py [--sizes 100000,1000000,5000000] [--db-url URL]

Each size: one generated day (seed 42, defect rate 0.01), then Intake -> clean_day -> encrypt_day
-> SalesLoader.load_day -> refresh_daily in a fresh subprocess on a fresh SQLite file (or a fresh
PostgreSQL database with --pg-url). Reports rows/s and peak RSS per size, and writes
benchmarks/results/scaling-<sizes>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    RESULTS_DIR,
    ScratchPgDatabase,
    code_env,
    fmt_float,
    fmt_int,
    format_table,
    generate_day,
    machine_facts,
    pg_reachable,
    remove_tree,
    run_isolated,
    scratch_dir,
    snapshot_code,
    wait_for_quiet,
    write_json,
)

WORKER = str(Path(__file__).resolve().parent / "worker.py")
STAGES = ("land", "clean", "encrypt", "load", "aggregate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--pg-url", help="admin URL: measure on PostgreSQL instead of SQLite")
    parser.add_argument("--workdir")
    parser.add_argument("--settle", type=float, default=300)
    parser.add_argument("--quiet-below", type=float, default=45,
                        help="machine busy %% under which a measurement may start")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import the live work tree instead of a frozen copy of sales_platform/")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    backend = "postgresql" if args.pg_url else "sqlite"
    pg_version = None
    if args.pg_url:
        ok, pg_version = pg_reachable(args.pg_url)
        if not ok:
            print(f"PostgreSQL not reachable: {pg_version}")
            return 2
    code_work = scratch_dir("sp-scaling-code-", args.workdir)
    code_root = None if args.no_snapshot else snapshot_code(code_work)
    if code_root:
        sys.path.insert(0, str(code_root))
    env = code_env(code_root)
    facts = machine_facts(pg_version, code_root)
    records = []
    for rows in sizes:
        work = scratch_dir(f"sp-scaling-{rows}-", args.workdir)
        try:
            csv, catalogue, gen_s = generate_day(work / "input", rows)
            busy = wait_for_quiet(args.settle, args.quiet_below) if args.settle > 0 else None
            print(f"{rows:,} rows generated in {gen_s:.1f} s; running the platform path"
                  + (f" (machine {busy:.0f}% busy before start)" if busy is not None else "")
                  + " ...", flush=True)
            argv_ = [WORKER, "platform", "--csv", str(csv), "--catalogue", str(catalogue),
                     "--workdir", str(work / "run"), "--day", DEFAULT_DAY.isoformat()]
            if args.pg_url:
                with ScratchPgDatabase(args.pg_url, f"scaling_{rows}") as db:
                    child = run_isolated([*argv_, "--db-url", db.url], env=env,
                                         timeout=args.timeout)
            else:
                child = run_isolated([*argv_, "--db-url", f"sqlite:///{work / 'run' / 'bench.db'}"],
                                     env=env, timeout=args.timeout)
        finally:
            remove_tree(work)
        if not child.ok:
            print(f"  FAILED (exit {child.returncode}):\n{child.stderr_tail}")
        r = child.result
        rec = {"rows": rows, "ok": child.ok, "seconds": r.get("seconds"),
               "rows_per_s": rows / r["seconds"] if child.ok else None,
               "peak_rss_mb": round(child.peak_rss_mb, 1), "wall_s_incl_startup": child.wall_s,
               "stage_seconds": r.get("stage_seconds"),
               "peak_rss_after_stage_mb": r.get("peak_rss_after_stage_mb"),
               "rss_after_stage_mb": r.get("rss_after_stage_mb"),
               "load_breakdown_seconds": r.get("load_breakdown_seconds"),
               "load_stats": r.get("load_stats"), "noise": child.noise(), "generation_s": gen_s}
        records.append(rec)
        if child.ok:
            print(f"  {r['seconds']:.1f} s, {rec['rows_per_s']:,.0f} rows/s, peak RSS "
                  f"{child.peak_rss_mb:.0f} MB, other CPU {child.other_cpu_pct:.0f}%", flush=True)

    remove_tree(code_work)
    ok = [r for r in records if r["ok"]]
    table = format_table(
        ["rows", "seconds", "rows/s", "peak RSS MB", "RSS / 1M-row RSS", *[f"{s} s" for s in STAGES],
         "stage with peak", "other CPU"],
        [[fmt_int(r["rows"]), fmt_float(r["seconds"]), fmt_int(r["rows_per_s"]),
          fmt_int(r["peak_rss_mb"]), _rss_ratio(r, ok),
          *[fmt_float((r["stage_seconds"] or {}).get(s)) for s in STAGES], _peak_stage(r),
          f"{r['noise']['other_cpu_pct_of_machine']:.0f}%"] for r in records],
        align="r" * 12)
    targets = _targets(ok)
    text = [f"Scaling of the platform path on {backend} "
            f"({facts['cpu_count']} CPU, {facts['cpu_model']}); sales_platform/core sha256 "
            f"{facts['source']['core_sha256']}", "", table]
    if targets:
        text += ["", "Targets:", format_table(
            ["target", "measured", "goal", "met"],
            [[t["target"], t["measured"], t["goal"], "yes" if t["met"] else "NO"] for t in targets],
            align="lrrl")]
    text += ["", "peak RSS = the child's VmHWM; 'stage with peak' = first stage "
             "after which the process peak reached its final value; 'other CPU' = CPU used by other "
             "processes on the shared machine while the size ran, % of all cores."]
    print("\n" + "\n".join(text))
    name = "scaling-" + "-".join(str(s) for s in sizes) + ("-pg" if args.pg_url else "") + ".json"
    out = write_json(RESULTS_DIR / name, {"backend": backend, "machine": facts, "sizes": records,
                                          "targets": targets, "text": "\n".join(text)})
    print(f"\nJSON: {out}")
    return 0 if len(ok) == len(records) else 1


def _rss_ratio(r: dict, ok: list[dict]) -> str:
    base = next((x for x in ok if x["rows"] == 1_000_000), None)
    return "-" if base is None else f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}"


def _peak_stage(r: dict) -> str:
    peaks = r.get("peak_rss_after_stage_mb") or {}
    final = max(peaks.values(), default=None)
    return next((stage for stage, v in peaks.items() if v == final), "-")


def _targets(ok: list[dict]) -> list[dict]:
    out = []
    base = next((x for x in ok if x["rows"] == 1_000_000), None)
    for r in ok:
        if r["rows"] >= 5_000_000:
            out.append({"target": f"peak RSS at {r['rows']:,} rows", "measured":
                        f"{r['peak_rss_mb']:.0f} MB", "goal": "< 1024 MB",
                        "met": r["peak_rss_mb"] < 1024})
            if base:
                ratio = r["peak_rss_mb"] / base["peak_rss_mb"]
                out.append({"target": f"peak RSS {r['rows']:,} / 1,000,000 rows",
                            "measured": f"{ratio:.2f}x", "goal": "<= 1.3x", "met": ratio <= 1.3})
    if len(ok) >= 2:
        first, last = ok[0], ok[-1]
        ratio = last["rows_per_s"] / first["rows_per_s"]
        out.append({"target": f"rows/s at {last['rows']:,} vs {first['rows']:,} (info)",
                    "measured": f"{ratio:.2f}x", "goal": "~1x (linear)", "met": ratio >= 0.8})
    return out


if __name__ == "__main__":
    sys.exit(main())
