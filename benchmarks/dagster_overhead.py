"""Fixed per-run cost of going through Dagster, apart from the per-row cost.

    .venv/bin/python benchmarks/dagster_overhead.py [--sizes 100,50000] [--repeat 3]

For each size and repetition, in fresh temp dirs (SALES_PLATFORM_DATA_DIR, a SQLite
SALES_PLATFORM_DB_URL, DAGSTER_HOME with the project's dagster.yaml, a fresh
SALES_PLATFORM_ENCRYPTION_KEY), one generated day is dropped into incoming/ and

    dagster asset materialize -m sales_platform.definitions \
        --select raw_sales,cleaned_sales,encrypted_sales,sales --partition 2024-03-01

runs as a subprocess. Separately: `python -c "pass"`, `python -c "import dagster"` and
`python -c "import sales_platform.definitions"`, and the same four stages called directly (no
Dagster) on the same sizes. A line wall = fixed + per_row * rows through the medians separates
the fixed per-run overhead from the per-row cost. JSON goes to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    PROJECT_ROOT,
    PYTHON,
    RESULTS_DIR,
    code_env,
    format_table,
    generate_day,
    machine_facts,
    remove_tree,
    run_isolated,
    scratch_dir,
    snapshot_code,
    wait_for_quiet,
    write_json,
)

SELECTION = "raw_sales,cleaned_sales,encrypted_sales,sales"
WORKER = str(Path(__file__).resolve().parent / "worker.py")


def _timed(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 1800
           ) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - started, proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def _env(root: Path, key: str, code: dict[str, str]) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALES_PLATFORM_")}
    env.update(code)
    env.update({"SALES_PLATFORM_DATA_DIR": str(root / "data"),
                "SALES_PLATFORM_DB_URL": f"sqlite:///{root / 'data' / 'warehouse.db'}",
                "SALES_PLATFORM_ENCRYPTION_KEY": key, "DAGSTER_HOME": str(home)})
    return env


def _loaded_rows(db: Path) -> int | None:
    import sqlite3

    try:
        con = sqlite3.connect(db)
        try:
            return con.execute("SELECT count(*) FROM sales").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None


def materialize_once(rows: int, base: str | None, key: str, code_root: Path | None,
                     defect_rate: float, selection: str, executor: str = "") -> dict:
    """``dagster asset materialize`` with the default executor (in-process), or with ``executor``
    set (e.g. ``multiprocess``: step processes forked from a forkserver that imports the code
    location a second time)."""
    root = scratch_dir(f"sp-dagster-{rows}-", base)
    try:
        env = _env(root, key, code_env(code_root))
        if executor:
            env["SALES_PLATFORM_EXECUTOR"] = executor
        csv, catalogue, _ = generate_day(root / "gen", rows, defect_rate=defect_rate)
        (root / "data" / "incoming").mkdir(parents=True)
        (root / "data" / "catalogue").mkdir(parents=True)
        shutil.move(csv, root / "data" / "incoming" / csv.name)
        shutil.move(catalogue, root / "data" / "catalogue" / "products.csv")
        dagster = str(Path(PYTHON).with_name("dagster"))
        command = [dagster, "asset", "materialize", "-m", "sales_platform.definitions",
                   "--select", selection, "--partition", DEFAULT_DAY.isoformat()]
        seconds, code, output = _timed(command, env, code_root or PROJECT_ROOT)
        loaded = _loaded_rows(root / "data" / "warehouse.db")
    finally:
        remove_tree(root)
    return {"rows": rows, "seconds": seconds, "ok": code == 0, "loaded_rows": loaded,
            "output_tail": output if code else output[-300:]}


def direct_once(rows: int, base: str | None, code_root: Path | None, defect_rate: float) -> dict:
    """The same stages without Dagster (worker.py platform), in a fresh process."""
    root = scratch_dir(f"sp-direct-{rows}-", base)
    try:
        csv, catalogue, _ = generate_day(root / "gen", rows, defect_rate=defect_rate)
        child = run_isolated([WORKER, "platform", "--csv", str(csv), "--catalogue", str(catalogue),
                              "--workdir", str(root / "run"), "--day", DEFAULT_DAY.isoformat(),
                              "--db-url", f"sqlite:///{root / 'run' / 'bench.db'}",
                              "--no-breakdown"], env=code_env(code_root))
    finally:
        remove_tree(root)
    st = child.result.get("stage_seconds", {})
    work = sum(st.get(s, 0.0) for s in ("land", "clean", "encrypt", "load"))
    return {"rows": rows, "ok": child.ok, "stages_s": work, "process_wall_s": child.wall_s,
            "error": None if child.ok else child.stderr_tail[-1500:]}


def _fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least squares wall = a + b * rows."""
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,50000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir")
    parser.add_argument("--settle", type=float, default=300)
    parser.add_argument("--quiet-below", type=float, default=45,
                        help="machine busy %% under which a measurement may start")
    parser.add_argument("--defect-rate", type=float, default=0.0,
                        help="default 0: with defects the selection above (no sales_rejects) fails "
                             "the blocking rows_conserved check; use --with-rejects to add it")
    parser.add_argument("--also-multiprocess", action="store_true",
                        help="also run each selection with SALES_PLATFORM_EXECUTOR=multiprocess")
    parser.add_argument("--with-rejects", action="store_true",
                        help="add sales_rejects to the selection")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import the live work tree instead of a frozen copy of sales_platform/")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    selection = SELECTION + (",sales_rejects" if args.with_rejects else "")
    code_work = scratch_dir("sp-dagster-code-", args.workdir)
    code_root = None if args.no_snapshot else snapshot_code(code_work)
    if code_root:
        sys.path.insert(0, str(code_root))
    from sales_platform.core.crypto import generate_key

    facts = machine_facts(code_root=code_root)
    key = generate_key()

    imports: dict[str, list[float]] = {}
    env = {**os.environ, **code_env(code_root)}
    for label, code in (("python -c pass", "pass"), ("import dagster", "import dagster"),
                        ("import sales_platform.definitions", "import sales_platform.definitions")):
        imports[label] = []
        for _ in range(args.repeat):
            seconds, rc, out = _timed([PYTHON, "-c", code], env, code_root or PROJECT_ROOT)
            if rc:
                print(f"{label} failed:\n{out}")
            imports[label].append(seconds)
        print(f"{label}: median {statistics.median(imports[label]):.2f} s", flush=True)

    runs: list[dict] = []
    multiprocess: list[dict] = []  # the --also-multiprocess runs
    direct: list[dict] = []
    for rows in sizes:
        for attempt in range(args.repeat):
            if args.settle > 0:
                wait_for_quiet(args.settle, args.quiet_below)
            run = materialize_once(rows, args.workdir, key, code_root, args.defect_rate, selection)
            runs.append(run)
            print(f"dagster materialize {rows:,} rows ({attempt + 1}/{args.repeat}): "
                  f"{run['seconds']:.2f} s, ok={run['ok']}, loaded {run['loaded_rows']}", flush=True)
            if not run["ok"]:
                print(run["output_tail"])
            if args.also_multiprocess:
                alt = materialize_once(rows, args.workdir, key, code_root, args.defect_rate,
                                       selection, executor="multiprocess")
                multiprocess.append(alt)
                print(f"  same command, SALES_PLATFORM_EXECUTOR=multiprocess: {alt['seconds']:.2f} s, "
                      f"ok={alt['ok']}, loaded {alt['loaded_rows']}", flush=True)
                if not alt["ok"]:
                    print(alt["output_tail"])
        d = direct_once(rows, args.workdir, code_root, args.defect_rate)
        direct.append(d)
        print(f"direct calls {rows:,} rows: stages {d['stages_s']:.2f} s, process "
              f"{d['process_wall_s']:.2f} s", flush=True)

    medians = {rows: statistics.median([r["seconds"] for r in runs if r["rows"] == rows and r["ok"]]
                                       or [float("nan")]) for rows in sizes}
    fit = _fit([(r["rows"], r["seconds"]) for r in runs if r["ok"]])
    direct_fit = _fit([(d["rows"], d["stages_s"]) for d in direct if d["ok"]])
    table = format_table(
        ["rows", "dagster materialize s (median)", "all runs s", "direct stages s",
         "direct process s", "dagster - direct process s"],
        [[f"{rows:,}", f"{medians[rows]:.2f}",
          " ".join(f"{r['seconds']:.1f}" for r in runs if r["rows"] == rows),
          f"{d['stages_s']:.2f}", f"{d['process_wall_s']:.2f}",
          f"{medians[rows] - d['process_wall_s']:.2f}"] for rows, d in zip(sizes, direct, strict=False)],
        align="rrrrrr")
    imp = format_table(["command", "median s", "runs"],
                       [[k, f"{statistics.median(v):.2f}", " ".join(f"{x:.2f}" for x in v)]
                        for k, v in imports.items()], align="lrr")
    remove_tree(code_work)
    text = [f"Dagster overhead ({facts['cpu_count']} CPU, {facts['cpu_model']}); selection "
            f"{selection}, partition {DEFAULT_DAY}, defect rate {args.defect_rate}; "
            f"sales_platform/core sha256 {facts['source']['core_sha256']}", "",
            "Imports (fresh interpreter each):", imp,
            "", "Runs:", table, ""]
    for rows in sizes:
        alt = [r["seconds"] for r in multiprocess if r["rows"] == rows and r["ok"]]
        if alt:
            text.append(f"{rows:,} rows, SALES_PLATFORM_EXECUTOR=multiprocess: median "
                        f"{statistics.median(alt):.2f} s (runs {' '.join(f'{x:.1f}' for x in alt)})")
    if fit:
        text.append(f"fit over dagster runs: fixed per-run overhead {fit[0]:.2f} s, per-row cost "
                    f"{fit[1] * 1e6:.1f} us/row ({1 / fit[1]:,.0f} rows/s marginal)" if fit[1] > 0
                    else f"fit over dagster runs: fixed {fit[0]:.2f} s, per-row slope not positive")
    if direct_fit:
        text.append(f"fit over direct calls: fixed {direct_fit[0]:.2f} s, per-row "
                    f"{direct_fit[1] * 1e6:.1f} us/row")
    text.append("import time of sales_platform.definitions is part of the fixed overhead; with "
                "the multiprocess executor a forkserver imports the code location a second time.")
    print("\n" + "\n".join(text))
    out = write_json(RESULTS_DIR / "dagster-overhead.json",
                     {"machine": facts, "imports": imports, "runs": runs, "multiprocess": multiprocess,
                      "direct": direct,
                      "fit_dagster": {"fixed_s": fit[0], "per_row_s": fit[1]} if fit else None,
                      "fit_direct": {"fixed_s": direct_fit[0], "per_row_s": direct_fit[1]}
                      if direct_fit else None, "text": "\n".join(text)})
    print(f"\nJSON: {out}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
