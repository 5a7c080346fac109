"""Profile the platform's per-day path with pyinstrument and list its hot spots by file:line.

    .venv/bin/python benchmarks/profile_platform.py [--rows 1000000] [--db-url URL] [--top 10]

Generates the same day as run_benchmark.py (seed 42, defect rate 0.01), then profiles only
Intake -> clean_day -> encrypt_day -> SalesLoader.load_day -> refresh_daily (products and data
generation are done before the profiler starts). Writes to benchmarks/results/:

- profile-platform-<rows>.txt   pyinstrument's text tree (``-r text`` equivalent)
- profile-platform-<rows>.html  pyinstrument's interactive HTML
- profile-platform-<rows>.json  the hot-spot tables printed at the end
- profile-platform-<rows>.pyisession  the raw session (``pyinstrument --load FILE -r text``)

Hot spots are given two ways:
1. lines of sales_platform code, each with the time spent while that line was the innermost
   sales_platform line on the stack (its own work plus the library calls it makes), and the
   library calls that time went to;
2. the functions with the most self time anywhere (library code included).

pyinstrument samples the main thread; work that pyarrow/duckdb threads do while the main thread
waits is counted at the waiting call. The whole run can also be profiled with the CLI:
``.venv/bin/pyinstrument -r text benchmarks/profile_platform.py --rows 1000000 --no-profiler``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    RESULTS_DIR,
    format_table,
    generate_day,
    machine_busy_pct,
    machine_facts,
    remove_tree,
    scratch_dir,
    snapshot_code,
    wait_for_quiet,
    write_json,
)

CORE_MARK = "/sales_platform/"


def _short(path: str | None) -> str:
    if not path:
        return "?"
    if CORE_MARK in path:
        return "sales_platform/" + path.split(CORE_MARK, 1)[1]
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _is_core(frame) -> bool:
    path = frame.file_path or ""
    return CORE_MARK in path and "/benchmarks/" not in path


def _lines(frame) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, seconds in (getattr(frame, "attributes", None) or {}).items():
        if key.startswith("l"):
            try:
                out[int(key[1:])] = out.get(int(key[1:]), 0.0) + seconds
            except ValueError:
                pass
    return out


def _assign_children(frame) -> list[tuple[object, int | None]]:
    """Map each child call to the line of ``frame`` it was made from (greedy on sampled time:
    pyinstrument keeps one child node per call site, and the parent's line samples include it)."""
    residual = _lines(frame)
    pairs = []
    own = [c for c in frame.children if c.is_synthetic]  # the [self] leaf: placed last
    for child in sorted((c for c in frame.children if not c.is_synthetic),
                        key=lambda c: c.time, reverse=True):
        fits = [(r - child.time, line) for line, r in residual.items() if r >= child.time * 0.98]
        line = min(fits)[1] if fits else (max(residual, key=residual.get) if residual else None)
        if line is not None:
            residual[line] -= child.time
        pairs.append((child, line))
    for child in own:  # own-code time: the line with the most sampled time left unexplained
        line = max(residual, key=residual.get) if residual else None
        pairs.append((child, line))
    return pairs


def _has_core(frame, cache: dict) -> bool:
    key = id(frame)
    if key not in cache:
        cache[key] = _is_core(frame) or any(_has_core(c, cache) for c in frame.children)
    return cache[key]


def core_line_hotspots(root) -> tuple[list[dict], float]:
    """Time per innermost sales_platform line, with the non-core calls it went to."""
    lines: dict[tuple[str, int, str], float] = defaultdict(float)
    callees: dict[tuple[str, int, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cache: dict = {}

    def visit(frame) -> None:
        if _is_core(frame):
            for child, line in _assign_children(frame):
                key = (_short(frame.file_path), line or frame.line_no or 0, frame.function)
                if child.is_synthetic:
                    lines[key] += child.time
                    callees[key]["(own Python code)"] += child.time
                elif _is_core(child):
                    visit(child)
                else:
                    # a library call made from this line; core code reached again below it
                    # (callbacks) is attributed to that deeper core line instead
                    inner = _core_time_below(child, cache)
                    lines[key] += child.time - inner
                    module = Path(_short(child.file_path)).stem
                    callees[key][f"{module}.{child.function}"] += child.time - inner
                    if inner:
                        for grandchild in child.children:
                            _visit_below(grandchild)
            own = frame.total_self_time if not frame.children else 0.0
            if own:
                lines[(_short(frame.file_path), frame.line_no or 0, frame.function)] += own
        else:
            for child in frame.children:
                visit(child)

    def _visit_below(frame) -> None:
        if _is_core(frame):
            visit(frame)
        else:
            for child in frame.children:
                _visit_below(child)

    visit(root)
    total = root.time
    out = []
    for key, seconds in sorted(lines.items(), key=lambda kv: kv[1], reverse=True):
        top = sorted(callees[key].items(), key=lambda kv: kv[1], reverse=True)[:3]
        out.append({"file_line": f"{key[0]}:{key[1]}", "function": key[2], "seconds": seconds,
                    "share": seconds / total if total else 0.0,
                    "goes_to": [{"call": name, "seconds": s} for name, s in top if s > 0]})
    return out, total


def _core_time_below(frame, cache: dict) -> float:
    """Time of the nearest core frames under a non-core frame (callbacks into our code)."""
    if _is_core(frame):
        return frame.time
    if not _has_core(frame, cache):
        return 0.0
    return sum(_core_time_below(c, cache) for c in frame.children)


def self_time_hotspots(root) -> list[dict]:
    totals: dict[tuple[str, str, int], float] = defaultdict(float)

    def visit(frame, parent) -> None:
        if frame.is_synthetic:
            if parent is not None:
                totals[(parent.function, _short(parent.file_path), parent.line_no or 0)] += frame.time
            return
        if not frame.children:
            totals[(frame.function, _short(frame.file_path), frame.line_no or 0)] += frame.time
        for child in frame.children:
            visit(child, frame)

    visit(root, None)
    total = root.time
    return [{"function": k[0], "file_line": f"{k[1]}:{k[2]}", "seconds": v,
             "share": v / total if total else 0.0}
            for k, v in sorted(totals.items(), key=lambda kv: kv[1], reverse=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db-url", help="default: a fresh SQLite file in the temp dir")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--workdir")
    parser.add_argument("--settle", type=float, default=300)
    parser.add_argument("--quiet-below", type=float, default=45,
                        help="machine busy %% under which a measurement may start")
    parser.add_argument("--no-profiler", action="store_true",
                        help="run the path without the built-in profiler (for the pyinstrument CLI)")
    parser.add_argument("--no-snapshot", action="store_true")
    args = parser.parse_args(argv)

    work = scratch_dir(f"sp-profile-{args.rows}-", args.workdir)
    try:
        code_root = None if args.no_snapshot else snapshot_code(work)
        if code_root:
            sys.path.insert(0, str(code_root))
        from worker import run_platform

        facts = machine_facts(code_root=code_root)
        csv, catalogue, _ = generate_day(work / "input", args.rows)
        db_url = args.db_url or f"sqlite:///{work / 'run' / 'bench.db'}"
        if args.no_profiler:
            result = run_platform(csv, catalogue, work / "run", db_url, DEFAULT_DAY, breakdown=False)
            print({k: result[k] for k in ("rows", "seconds", "stage_seconds")})
            return 0
        from pyinstrument import Profiler

        if args.settle > 0:
            wait_for_quiet(args.settle, args.quiet_below)
        busy_before = machine_busy_pct(1.0)
        profiler = Profiler(interval=args.interval, async_mode="disabled")
        started = time.perf_counter()
        profiler.start()
        result = run_platform(csv, catalogue, work / "run", db_url, DEFAULT_DAY, breakdown=False)
        profiler.stop()
        wall = time.perf_counter() - started
    finally:
        remove_tree(work)

    session = profiler.last_session
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    txt = RESULTS_DIR / f"profile-platform-{args.rows}.txt"
    txt.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    html = RESULTS_DIR / f"profile-platform-{args.rows}.html"
    html.write_text(profiler.output_html())
    session.save(RESULTS_DIR / f"profile-platform-{args.rows}.pyisession")  # pyinstrument --load
    root = session.root_frame()
    core, total = core_line_hotspots(root)
    selfs = self_time_hotspots(root)
    n = args.top
    text = [f"Profile of the platform path, {args.rows:,} rows ({facts['cpu_count']} CPU, "
            f"{facts['cpu_model']}); profiled wall {wall:.1f} s, sampled {total:.1f} s; "
            f"e2e stages {result['seconds']:.1f} s; machine {busy_before:.0f}% busy just before; "
            f"sales_platform/core sha256 {facts['source']['core_sha256']}",
            "stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in result["stage_seconds"].items()),
            "", f"Top {n} lines of sales_platform code (innermost core line on the stack):",
            format_table(["#", "file:line", "function", "seconds", "share", "time goes to"],
                         [[str(i + 1), h["file_line"], h["function"], f"{h['seconds']:.2f}",
                           f"{h['share'] * 100:.1f}%",
                           "; ".join(f"{g['call']} {g['seconds']:.2f}s" for g in h["goes_to"][:2])]
                          for i, h in enumerate(core[:n])], align="rllrrl"),
            "", f"Top {n} functions by self time (any code):",
            format_table(["#", "function", "file:line", "seconds", "share"],
                         [[str(i + 1), h["function"], h["file_line"], f"{h['seconds']:.2f}",
                           f"{h['share'] * 100:.1f}%"] for i, h in enumerate(selfs[:n])],
                         align="rllrr"),
            "", f"pyinstrument text tree: {txt}", f"pyinstrument HTML: {html}"]
    print("\n".join(text))
    write_json(RESULTS_DIR / f"profile-platform-{args.rows}.json",
               {"rows": args.rows, "machine": facts, "profiled_wall_s": wall, "sampled_s": total,
                "stage_seconds": result["stage_seconds"], "core_lines": core[:50],
                "self_time": selfs[:50], "text": "\n".join(text)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
