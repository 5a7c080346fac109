"""The platform's per-day path against its peers, on the same generated file.

    .venv/bin/python benchmarks/run_benchmark.py --rows 1000000 \
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--skip-dlt] [--repeat N]

Generates one day of ``--rows`` rows (seed 42, defect rate 0.01, catalogue written), then runs each
path in a fresh subprocess with a fresh SQLite file (and a fresh PostgreSQL database, created and
dropped, when the server is reachable):

- platform: Intake -> clean_day -> encrypt_day -> SalesLoader.load_day -> refresh_daily, per stage
- floor: benchmarks/floor.py, the same day's rules, tokens and insert into the indexed sales table
  in the leanest honest code (Arrow compute, ADBC ingest / COPY); its rows in sales must equal the
  platform's (a warning is printed when they differ)
- naive pandas: read_csv + to_datetime + to_sql (default method, chunksize None)
- raw ceilings: sqlite3 executemany / psycopg COPY of pre-parsed rows, DuckDB read_csv
- dlt: merge on transaction_id through the sqlalchemy destination (SQLite), if dlt is installed

Prints tables and writes benchmarks/results/benchmark-<rows>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    DEFAULT_DEFECT_RATE,
    DEFAULT_SEED,
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
FIXED_COST_ROWS = 100
RELOAD_STAGE = "reload, 10% of rows changed (merge path)"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FLOOR_PATH = "floor: Arrow rules, AES-SIV, one-transaction ingest (floor.py)"


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001
        return False


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, csv: Path, catalogue: Path,
                 code_root: Path | None) -> None:
        self.args, self.work, self.csv, self.catalogue = args, work, csv, catalogue
        self.env = code_env(code_root)
        self.records: list[dict] = []
        self.counter = 0

    def run(self, name: str, backend: str, worker_path: str, *, pg: bool = False,
            extra: list[str] | None = None, keep_workdir: bool = False) -> dict:
        """Run one path ``--repeat`` times (fresh workdir/db each), keep the median by seconds."""
        runs = []
        for attempt in range(self.args.repeat):
            self.counter += 1
            workdir = self.work / f"{self.counter:02d}-{worker_path}"
            argv = [WORKER, worker_path, "--csv", str(self.csv), "--catalogue", str(self.catalogue),
                    "--workdir", str(workdir), "--day", DEFAULT_DAY.isoformat(), *(extra or [])]
            busy = (wait_for_quiet(self.args.settle, self.args.quiet_below)
                    if self.args.settle > 0 else None)
            print(f"  running {name} [{backend}] ({attempt + 1}/{self.args.repeat})"
                  + (f", machine {busy:.0f}% busy before start" if busy is not None else "")
                  + " ...", flush=True)
            if pg:
                with ScratchPgDatabase(self.args.pg_url, worker_path.replace("-", "_")) as db:
                    child = run_isolated([*argv, "--db-url", db.url], env=self.env,
                                         timeout=self.args.timeout)
            else:
                child = run_isolated([*argv, "--db-url", f"sqlite:///{workdir / 'bench.db'}"],
                                     env=self.env, timeout=self.args.timeout)
            runs.append((child, workdir))
            if not child.ok:
                print(f"    FAILED (exit {child.returncode}):\n{child.stderr_tail}", flush=True)
                break
            r = child.result
            print(f"    {r['seconds']:.2f} s for {r['rows']:,} rows, peak RSS "
                  f"{child.peak_rss_mb:.0f} MB, other CPU load {child.other_cpu_pct:.0f}%",
                  flush=True)
        ok_runs = [(c, w) for c, w in runs if c.ok]
        if ok_runs:
            ok_runs.sort(key=lambda cw: cw[0].result["seconds"])
            child, workdir = ok_runs[len(ok_runs) // 2]
        else:
            child, workdir = runs[-1]
        for _c, w in runs:
            if w != workdir or not keep_workdir:
                remove_tree(w)
        record = {
            "path": name, "backend": backend, "worker": worker_path, "ok": child.ok,
            "rows": child.result.get("rows"), "seconds": child.result.get("seconds"),
            "rows_per_s": (child.result["rows"] / child.result["seconds"]) if child.ok else None,
            "peak_rss_mb": round(child.peak_rss_mb, 1), "ru_maxrss_mb": round(child.ru_maxrss_mb, 1),
            "wall_s_incl_startup": round(child.wall_s, 2),
            "all_seconds": [c.result.get("seconds") for c, _ in runs],
            "noise": child.noise(), "detail": child.result,
            "error": None if child.ok else child.stderr_tail[-2000:], "workdir": str(workdir),
        }
        self.records.append(record)
        return record


def stage_records(platform: dict, backend: str) -> list[dict]:
    d = platform["detail"]
    rows_for = {"land": d["rows_in"], "clean": d["rows_in"] - d["rows_rejected_landing"],
                "encrypt": d["encrypted_rows"], "load": d["load_stats"]["staged"],
                "aggregate": d["load_stats"]["staged"]}
    out = []
    for stage, seconds in d["stage_seconds"].items():
        rows = rows_for.get(stage)
        out.append({"backend": backend, "stage": stage, "rows": rows, "seconds": seconds,
                    "rows_per_s": rows / seconds if rows and seconds else None,
                    "share_of_e2e": seconds / d["seconds"] if stage in rows_for else None,
                    "rss_after_mb": d["rss_after_stage_mb"].get(stage),
                    "peak_after_mb": d["peak_rss_after_stage_mb"].get(stage)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL,
                        help="admin URL of a reachable PostgreSQL (scratch databases are created "
                             "and dropped through it); 'none' to skip")
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per path; the median is kept")
    parser.add_argument("--workdir", help="parent folder for the temp data (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--timeout", type=float, default=3600, help="per path, seconds")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import the live work tree instead of a frozen copy of sales_platform/")
    parser.add_argument("--settle", type=float, default=300,
                        help="before each path wait up to this many seconds for the shared "
                             "machine to drop below --quiet-below %% busy (0: do not wait)")
    parser.add_argument("--quiet-below", type=float, default=45,
                        help="machine busy %% under which a measurement may start")
    args = parser.parse_args(argv)

    pg_ok, pg_info = (False, "skipped") if args.skip_pg or args.pg_url == "none" \
        else pg_reachable(args.pg_url)
    work = scratch_dir(f"sp-bench-{args.rows}-", args.workdir)
    code_root = None if args.no_snapshot else snapshot_code(work)
    if code_root:
        sys.path.insert(0, str(code_root))
    facts = machine_facts(pg_info if pg_ok else None, code_root)
    notes: list[str] = []
    print(f"work dir {work}; PostgreSQL: {'reachable, ' + pg_info if pg_ok else pg_info}")
    csv, catalogue, gen_s = generate_day(work / "input", args.rows)
    print(f"generated {args.rows:,} rows in {gen_s:.1f} s ({csv.stat().st_size / 2**20:.1f} MiB)")
    bench = Bench(args, work, csv, catalogue, code_root)
    small_csv, small_catalogue, _ = generate_day(work / "small", FIXED_COST_ROWS)
    small = Bench(args, work / "small-runs", small_csv, small_catalogue, code_root)
    small.counter = 50
    try:
        small.run(f"platform, {FIXED_COST_ROWS}-row day (fixed cost)", "sqlite", "platform")
        small.run(f"floor, {FIXED_COST_ROWS}-row day (fixed cost)", "sqlite", "floor")
        bench.records += small.records
        platform_sqlite = bench.run("platform (end to end)", "sqlite", "platform", keep_workdir=True)
        bench.run(FLOOR_PATH, "sqlite", "floor")
        bench.run("naive pandas to_sql", "sqlite", "pandas")
        bench.run("raw sqlite3 executemany (CSV rows)", "sqlite", "sqlite-executemany")
        if platform_sqlite["ok"]:
            bench.run("raw sqlite3 executemany (platform rows -> sales)", "sqlite",
                      "sqlite-sales-shaped",
                      extra=["--platform-data", str(Path(platform_sqlite["workdir"]) / "data")])
        remove_tree(Path(platform_sqlite["workdir"]))
        if _importable("duckdb"):
            bench.run("duckdb read_csv -> table", "duckdb", "duckdb")
        else:
            notes.append("duckdb not installed: DuckDB path skipped")
        if args.skip_dlt:
            notes.append("dlt skipped (--skip-dlt)")
        elif not _importable("dlt"):
            notes.append("dlt not installed: dlt path skipped")
        else:
            rec = bench.run("dlt merge (sqlalchemy -> sqlite)", "sqlite", "dlt",
                            extra=["--dlt-destination", "sqlalchemy"])
            if not rec["ok"]:
                notes.append("dlt sqlalchemy destination failed offline; retried with duckdb: "
                             + (rec["error"] or "")[-300:])
                bench.run("dlt merge (duckdb)", "duckdb", "dlt", extra=["--dlt-destination", "duckdb"])
        if pg_ok:
            small.records.clear()
            small.run(f"platform, {FIXED_COST_ROWS}-row day (fixed cost)", "postgresql", "platform",
                      pg=True)
            small.run(f"floor, {FIXED_COST_ROWS}-row day (fixed cost)", "postgresql", "floor",
                      pg=True)
            bench.records += small.records
            platform_pg = bench.run("platform (end to end)", "postgresql", "platform", pg=True,
                                    keep_workdir=True)
            bench.run(FLOOR_PATH, "postgresql", "floor", pg=True)
            bench.run("naive pandas to_sql", "postgresql", "pandas", pg=True)
            bench.run("raw psycopg COPY write_row (CSV rows)", "postgresql", "pg-copy-rows", pg=True)
            bench.run("raw psycopg COPY pyarrow CSV bytes (CSV rows)", "postgresql",
                      "pg-copy-csvbytes", pg=True)
            if platform_pg["ok"]:
                bench.run("raw psycopg COPY write_row (platform rows -> sales)", "postgresql",
                          "pg-sales-shaped", pg=True,
                          extra=["--platform-data", str(Path(platform_pg["workdir"]) / "data")])
            remove_tree(Path(platform_pg["workdir"]))
        else:
            notes.append(f"PostgreSQL not measured: {pg_info}")
    finally:
        if not args.keep:
            remove_tree(work)

    report = build_report(args, facts, bench.records, gen_s, notes)
    print()
    print(report["text"])
    out = write_json(RESULTS_DIR / f"benchmark-{args.rows}.json", {k: v for k, v in report.items()
                                                                     if k != "text"})
    print(f"\nJSON: {out}")
    chart = write_chart(out.with_suffix(".png"), report["table"], args.rows)
    print(f"chart: {chart}" if chart else "chart: matplotlib not installed, no PNG")
    return 0 if all(r["ok"] for r in bench.records) else 1


def build_report(args, facts: dict, records: list[dict], gen_s: float, notes: list[str]) -> dict:
    platforms = {r["backend"]: r for r in records if r["worker"] == "platform" and r["ok"]
                 and r["rows"] and r["rows"] > FIXED_COST_ROWS}
    fixed = {r["backend"]: r for r in records if r["worker"] == "platform" and r["ok"]
             and r["rows"] and r["rows"] <= FIXED_COST_ROWS}
    floors = {r["backend"]: r for r in records if r["worker"] == "floor" and r["ok"]
              and r["rows"] and r["rows"] > FIXED_COST_ROWS}
    floor_fixed = {r["backend"]: r for r in records if r["worker"] == "floor" and r["ok"]
                   and r["rows"] and r["rows"] <= FIXED_COST_ROWS}
    by_worker = {(r["worker"], r["backend"]): r for r in records if r["ok"]}
    rows_table = []
    main_rows: list[dict] = []
    for r in records:
        base = platforms.get(r["backend"]) or platforms.get("sqlite")
        ratio = r["rows_per_s"] / base["rows_per_s"] if r["ok"] and base else None
        main_rows.append({**{k: r[k] for k in ("path", "backend", "rows", "seconds", "rows_per_s",
                                               "peak_rss_mb")}, "ratio_vs_platform": ratio,
                          "ok": r["ok"]})
        if r["worker"] == "platform" and r["ok"] and r is base:
            d = r["detail"]
            load_s = d["stage_seconds"]["load"]
            staged = d["load_stats"]["staged"]
            load_ratio = (staged / load_s) / base["rows_per_s"]
            main_rows.append({"path": "platform: load stage only (SalesLoader.load_day)",
                              "backend": r["backend"], "rows": staged, "seconds": load_s,
                              "rows_per_s": staged / load_s, "peak_rss_mb": None,
                              "ratio_vs_platform": load_ratio, "ok": True})
            reload_s = d["stage_seconds"].get(RELOAD_STAGE)
            if reload_s and r is base:
                n = d["reload_stats"]["staged"]
                main_rows.append({"path": "platform: reload, 10% changed (staging + merge)",
                                  "backend": r["backend"], "rows": n, "seconds": reload_s,
                                  "rows_per_s": n / reload_s, "peak_rss_mb": None,
                                  "ratio_vs_platform": (n / reload_s) / base["rows_per_s"],
                                  "ok": True})
    for m in main_rows:
        rows_table.append([m["path"], m["backend"], fmt_int(m["rows"]), fmt_float(m["seconds"]),
                           fmt_int(m["rows_per_s"]), fmt_int(m["peak_rss_mb"]),
                           fmt_float(m["ratio_vs_platform"]) if m["ok"] else "FAILED"])
    text = [f"Benchmark: {args.rows:,} generated rows (seed {DEFAULT_SEED}, defect rate "
            f"{DEFAULT_DEFECT_RATE}), day {DEFAULT_DAY}; generation took {gen_s:.1f} s",
            f"Machine: {facts['cpu_count']} CPU ({facts['cpu_model']}), {facts['memory_gib']} GiB, "
            f"Python {facts['python']}, pandas {facts['pandas']}, pyarrow {facts['pyarrow']}, "
            f"SQLite {facts['sqlite']}, PostgreSQL {facts['postgresql_server'] or '-'}",
            f"Code: sales_platform/core sha256 {facts['source']['core_sha256']} "
            f"(newest file {facts['source']['core_newest_mtime']})",
            "",
            format_table(["path", "db", "rows", "seconds", "rows/s", "peak RSS MB",
                          "x platform rows/s"], rows_table, align="llrrrrr"),
            "",
            "rows = input rows for end-to-end paths (platform, floor, pandas, duckdb, dlt), rows inserted "
            "for raw ceilings (first copy per transaction_id) and staged rows for the load stage. "
            "'x platform' = rows/s divided by the platform's end-to-end rows/s on the same database "
            "(SQLite for duckdb). Peak RSS is the child process's own VmHWM (the PostgreSQL "
            "server's memory is not included; raw ceilings hold all pre-parsed rows as tuples)."]
    row_counts = floor_row_counts(platforms, floors)
    if row_counts:
        text += ["", "Rows in sales, same input (the floor must do the same job as the platform):"]
        for c in row_counts:
            text.append(f"  {c['backend']}: platform {c['platform']:,}, floor {c['floor']:,}")
            if not c["equal"]:
                text.append(f"  WARNING: {c['backend']}: the floor stored {c['floor'] - c['platform']:+,} "
                            "rows against the platform: it is not doing the same job (see floor.py's "
                            "docstring for the rules it does not mirror)")
    if floors:
        text += ["", "Floor parts (floor.py, timed from reading the CSV to the commit):", format_table(
            ["db", "part", "seconds", "share"],
            [[b, part, fmt_float(sec), f"{sec / f['seconds'] * 100:.0f}%"]
             for b, f in floors.items() for part, sec in f["detail"]["stage_seconds"].items()],
            align="llrr")]
    stages = []
    for backend, p in platforms.items():
        stages += stage_records(p, backend)
    if stages:
        text += ["", "Platform stages:", format_table(
            ["db", "stage", "rows", "seconds", "rows/s", "share of e2e", "RSS after MB",
             "peak after MB"],
            [[s["backend"], s["stage"], fmt_int(s["rows"]), fmt_float(s["seconds"]),
              fmt_int(s["rows_per_s"]),
              f"{s['share_of_e2e'] * 100:.0f}%" if s["share_of_e2e"] is not None else "-",
              fmt_int(s["rss_after_mb"]), fmt_int(s["peak_after_mb"])] for s in stages],
            align="llrrrrrr")]
        breakdown = [[b, part, fmt_float(sec), f"{sec / p['detail']['stage_seconds']['load'] * 100:.0f}%"]
                     for b, p in platforms.items()
                     for part, sec in p["detail"].get("load_breakdown_seconds", {}).items()]
        if breakdown:
            text += ["", "Load stage breakdown:",
                     format_table(["db", "part of SalesLoader.load_day", "seconds", "share"],
                                  breakdown, align="llrr")]
    targets = evaluate_targets(platforms, by_worker, fixed, floors, floor_fixed)
    if targets:
        text += ["", "Targets:", format_table(
            ["target", "measured", "goal", "met"],
            [[t["target"], t["measured"], t["goal"], "yes" if t["met"] else "NO"] for t in targets],
            align="lrrl")]
    noise = [[r["path"], r["backend"], f"{r['noise']['other_cpu_pct_of_machine']:.0f}%",
              " / ".join(f"{x:.2f}" for x in r["noise"]["loadavg_before"][:1] +
                         r["noise"]["loadavg_after"][:1])] for r in records]
    text += ["", "Noise (CPU used by other processes while the path ran, % of all cores; "
             "for PostgreSQL paths this includes the server's own work):",
             format_table(["path", "db", "other CPU", "loadavg 1m before / after"], noise, "llrr")]
    if notes:
        text += ["", "Notes:", *(f"- {n}" for n in notes)]
    return {"rows_requested": args.rows, "seed": DEFAULT_SEED, "defect_rate": DEFAULT_DEFECT_RATE,
            "day": DEFAULT_DAY.isoformat(), "generation_seconds": gen_s, "machine": facts,
            "table": main_rows, "platform_stages": stages, "targets": targets,
            "rows_in_sales": row_counts,
            "paths": [{k: v for k, v in r.items() if k != "workdir"} for r in records],  # temp dirs
            "notes": notes, "repeat": args.repeat, "text": "\n".join(text)}


def floor_row_counts(platforms: dict, floors: dict) -> list[dict]:
    """Rows each of the platform and the floor left in ``sales`` for the same input, per database."""
    out = []
    for backend, f in floors.items():
        p = platforms.get(backend)
        if p:
            mine, theirs = f["detail"]["rows_stored"], p["detail"]["rows_stored"]
            out.append({"backend": backend, "platform": theirs, "floor": mine,
                        "equal": mine == theirs})
    return out


def _net_rows_per_s(platform: dict, fixed: dict | None) -> float:
    """Rows/s net of the fixed cost of a 100-row day on the same database."""
    seconds = platform["seconds"] - (fixed["seconds"] if fixed else 0.0)
    return platform["rows"] / seconds


def evaluate_targets(platforms: dict, by_worker: dict, fixed: dict | None = None,
                     floors: dict | None = None, floor_fixed: dict | None = None) -> list[dict]:
    """Issue 13's targets and the floor's, from the numbers of this run."""
    fixed, floors, floor_fixed = fixed or {}, floors or {}, floor_fixed or {}
    out = []

    def per_row_net_s(run: dict, fixed_run: dict | None) -> float:
        return 1 / _net_rows_per_s(run, fixed_run)
    sqlite_p = platforms.get("sqlite")
    pandas_s = by_worker.get(("pandas", "sqlite"))
    if sqlite_p and pandas_s:
        ratio = _net_rows_per_s(sqlite_p, fixed.get("sqlite")) / pandas_s["rows_per_s"]
        out.append({"target": "SQLite per-row net speed vs naive pandas", "measured": f"{ratio:.2f}x",
                    "goal": ">= 2.5x", "met": ratio >= 2.5, "value": ratio})
    shaped = by_worker.get(("sqlite-sales-shaped", "sqlite"))
    if sqlite_p and shaped:
        net_s = sqlite_p["rows"] / _net_rows_per_s(sqlite_p, fixed.get("sqlite"))
        ratio = net_s / shaped["seconds"]
        out.append({"target": "SQLite platform net time vs raw executemany of its final rows",
                    "measured": f"{ratio:.2f}x", "goal": "<= 1.3x", "met": ratio <= 1.3,
                    "value": ratio})
        d = sqlite_p["detail"]
        load_ratio = d["stage_seconds"]["load"] / shaped["seconds"]
        out.append({"target": "  (info) SQLite load stage vs that raw executemany",
                    "measured": f"{load_ratio:.2f}x", "goal": "-", "met": True, "value": load_ratio})
    floor_s = floors.get("sqlite")
    if sqlite_p and floor_s:
        ratio = per_row_net_s(sqlite_p, fixed.get("sqlite")) / per_row_net_s(
            floor_s, floor_fixed.get("sqlite"))
        out.append({"target": "SQLite platform per-row net time vs floor", "measured": f"{ratio:.2f}x",
                    "goal": "<= 1.3x", "met": ratio <= 1.3, "value": ratio})
    if floor_s and pandas_s:
        ratio = _net_rows_per_s(floor_s, floor_fixed.get("sqlite")) / pandas_s["rows_per_s"]
        out.append({"target": "  (info) floor vs naive pandas per row (SQLite, net rows/s)",
                    "measured": f"{ratio:.2f}x", "goal": "-", "met": True, "value": ratio})
    pg = platforms.get("postgresql")
    pandas_pg = by_worker.get(("pandas", "postgresql"))
    if pg and pandas_pg:
        ratio = pg["rows_per_s"] / pandas_pg["rows_per_s"]
        net = _net_rows_per_s(pg, fixed.get("postgresql")) / pandas_pg["rows_per_s"]
        out.append({"target": "PostgreSQL platform end to end vs naive pandas (rows/s)",
                    "measured": f"{ratio:.2f}x ({net:.2f}x net)", "goal": ">= 2x",
                    "met": ratio >= 2, "value": ratio})
    shaped_pg = by_worker.get(("pg-sales-shaped", "postgresql"))
    if pg and shaped_pg and pg["detail"].get("stage_seconds", {}).get("load"):
        ratio = pg["detail"]["stage_seconds"]["load"] / shaped_pg["seconds"]
        out.append({"target": "PostgreSQL load stage vs raw COPY of the same rows (time)",
                    "measured": f"{ratio:.2f}x", "goal": "<= 1.3x", "met": ratio <= 1.3,
                    "value": ratio})
    floor_pg = floors.get("postgresql")
    if pg and floor_pg:
        ratio = per_row_net_s(pg, fixed.get("postgresql")) / per_row_net_s(
            floor_pg, floor_fixed.get("postgresql"))
        out.append({"target": "  (info) PostgreSQL platform per-row net time vs floor",
                    "measured": f"{ratio:.2f}x", "goal": "-", "met": True, "value": ratio})
    if pg:
        d = pg["detail"]
        e2e = _net_rows_per_s(pg, fixed.get("postgresql"))
        out.append({"target": "PostgreSQL end to end rows/s (net of fixed cost)",
                    "measured": fmt_int(e2e), "goal": ">= 150,000", "met": e2e >= 150_000,
                    "value": e2e})
        load = d["load_stats"]["staged"] / d["stage_seconds"]["load"]
        out.append({"target": "PostgreSQL load stage rows/s (fresh day)", "measured": fmt_int(load),
                    "goal": ">= 250,000", "met": load >= 250_000, "value": load})
        reload_s = d["stage_seconds"].get(RELOAD_STAGE)
        if reload_s:
            ratio = reload_s / d["stage_seconds"]["load"]
            out.append({"target": "PostgreSQL reload with 10% changed vs fresh-day load (time)",
                        "measured": f"{ratio:.2f}x", "goal": "<= 2x", "met": ratio <= 2,
                        "value": ratio})
    dlt = by_worker.get(("dlt", "sqlite"))
    if sqlite_p and dlt:
        ratio = sqlite_p["rows_per_s"] / dlt["rows_per_s"]
        out.append({"target": "SQLite platform vs dlt merge (rows/s)", "measured": f"{ratio:.2f}x",
                    "goal": "> 1x", "met": ratio > 1, "value": ratio})
    for backend, p in platforms.items():
        out.append({"target": f"peak RSS of the platform path ({backend})",
                    "measured": f"{p['peak_rss_mb']:.0f} MB", "goal": "< 1024 MB (5M: scaling.py)",
                    "met": p["peak_rss_mb"] < 1024, "value": p["peak_rss_mb"]})
    for backend, f in fixed.items():
        out.append({"target": f"  (info) fixed cost of a {FIXED_COST_ROWS}-row day, direct calls "
                              f"({backend})", "measured": f"{f['seconds']:.2f} s", "goal": "-",
                    "met": True, "value": f["seconds"]})
    return out


def write_chart(path: Path, table: list[dict], rows: int) -> Path | None:
    """Horizontal bars of rows/s per path (log scale), coloured by database."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = [m for m in table if m["ok"] and m["rows_per_s"] and (m["rows"] or 0) > FIXED_COST_ROWS]
    colors = {"sqlite": "#4c72b0", "postgresql": "#55a868", "duckdb": "#c44e52"}
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(shown) + 1.4))
    y = range(len(shown))[::-1]
    values = [m["rows_per_s"] for m in shown]
    ax.barh(list(y), values, color=[colors.get(m["backend"], "#888888") for m in shown])
    ax.set_yticks(list(y), [f"{m['path']} [{m['backend']}]" for m in shown], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("rows per second (log scale)")
    ax.set_title(f"{rows:,}-row day, each path in a fresh process")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
