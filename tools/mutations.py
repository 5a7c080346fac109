"""A small scripted mutation check: does the test suite catch deliberate bugs in sales_platform/core?

Each mutation replaces one exact snippet of one file (the snippet must occur exactly once, or the
script stops before running anything). The repository (``git ls-files -co --exclude-standard``:
tracked plus untracked, not ignored) is copied once into a temp dir; each mutation is applied to
the copy, the chosen tests run there, and the file is restored before the next one. The working
tree of the repository itself is never modified, except for the report file.

The copy must shadow the editable install of ``sales_platform`` (a setuptools ``_EditableFinder``
appended to ``sys.meta_path``, mapping the package to the repository): pytest runs as
``python -m pytest`` with cwd = the copy and ``PYTHONPATH=<copy>``, so the regular path finder
finds the copy before the editable finder is asked. A probe test run inside the copy checks that
``sales_platform`` and ``sales_platform_tests`` are imported from the copy, and the script stops if
they are not. ``PYTHONDONTWRITEBYTECODE=1`` keeps a stale .pyc of a mutated file from outliving the
mutation (restores happen within the same second, with the same size).

    python tools/mutations.py                       # baseline, then every mutation
    python tools/mutations.py --only Q01 W02        # some mutations (merged into the report)
    python tools/mutations.py --tests "sales_platform_tests/test_quality.py -x -q"
    python tools/mutations.py --check               # only validate the snippets
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = "/work/main/.venv/bin/python"
DEFAULT_TESTS = (
    "sales_platform_tests/test_integrity.py sales_platform_tests/test_quality.py "
    "sales_platform_tests/test_landing.py sales_platform_tests/test_checks_can_fail.py "
    "sales_platform_tests/test_pipeline.py -k 'not postgresql' -x -q -p no:cacheprovider "
    "-p no:logging"
)
DEFAULT_REPORT = REPO / "tools" / "mutation_report.md"
TIMEOUT_S = 300

Q = "sales_platform/core/quality.py"
DD = "sales_platform/core/dedupe.py"
LA = "sales_platform/core/landing.py"
CR = "sales_platform/core/csvread.py"
IN = "sales_platform/core/intake.py"
PI = "sales_platform/core/pipeline.py"
LO = "sales_platform/core/warehouse/loading.py"
CO = "sales_platform/core/warehouse/conflicts.py"
LE = "sales_platform/core/warehouse/ledger.py"
RE = "sales_platform/core/warehouse/rejects.py"

# (id, file, exact original snippet, replacement, description)
MUTATIONS: list[tuple[str, str, str, str, str]] = [
    # --- quality.py: row rules ---------------------------------------------------------------
    ("Q01", Q,
     "(QUANTITY_NOT_POSITIVE, (quantity <= 0).to_numpy())",
     "(QUANTITY_NOT_POSITIVE, (quantity < 0).to_numpy())",
     "quantity 0 accepted (<= 0 became < 0)"),
    ("Q02", Q,
     "(QUANTITY_OUTLIER, (quantity > rules.max_quantity).to_numpy())",
     "(QUANTITY_OUTLIER, (quantity >= rules.max_quantity).to_numpy())",
     "quantity equal to max_quantity rejected as outlier (boundary)"),
    ("Q03", Q,
     "codes[(codes == 0) & hit] = len(names) - 1",
     "codes[hit] = len(names) - 1",
     "last failing rule wins instead of the first (reason codes)"),
    ("Q04", Q,
     "tid = normalize_identifiers(chunk[TRANSACTION_ID])",
     "tid = chunk[TRANSACTION_ID].str.strip().pipe(lambda s: s.where(s != '', None))",
     "transaction ids lose case-insensitivity (stripped, not upper-cased)"),
    # --- quality.py: timestamps (routing to days) ----------------------------------------------
    ("Q05", Q,
     r'''TIMESTAMP_SHAPE = (r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"''',
     r'''TIMESTAMP_SHAPE = (r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"''',
     "bare dates (no time of day) accepted as timestamps"),
    ("Q06", Q,
     r'''values = text[zoned_np].str.replace(r"([+-]\d{2})$", r"\1:00", regex=True)''',
     r'''values = text[zoned_np].str.replace(ZONE_SUFFIX, "", regex=True)''',
     "explicit UTC offset ignored: wall time kept as UTC (row moves to another day)"),
    ("Q07", Q,
     '.dt.tz_convert("UTC").dt.tz_localize(None))',
     ".dt.tz_localize(None))",
     "naive timestamps in source_timezone not converted to UTC (row moves day)"),
    ("Q08", Q,
     "limit = utc_naive(now) + rules.future_tolerance",
     "limit = utc_naive(now)",
     "future tolerance ignored (a sale 30 min ahead is rejected as future)"),
    ("Q09", Q,
     "aware = moment if moment.tzinfo else moment.astimezone()\n"
     "    return pd.Timestamp(aware.astimezone(UTC).replace(tzinfo=None))",
     "return pd.Timestamp(moment.replace(tzinfo=None))",
     "'now' taken as UTC wall time on a server outside UTC (wrong timezone conversion)"),
    # --- dedupe.py ---------------------------------------------------------------------------
    ("D01", DD,
     'CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_ts")',
     'CONTENT_COLUMNS = ("transaction_id", "customer_id", "product_id", "sale_ts")',
     "quantity left out of the content hash: conflicting copies collapse as identical"),
    ("D02", DD,
     "drop = np.setdiff1d(ordinals, ordinals[first_index])",
     "drop = np.setdiff1d(ordinals, ordinals[len(ordinals) - 1 - "
     "np.unique(tids[ordinals][::-1], return_index=True)[1]])",
     "identical duplicates keep the last copy instead of the first"),
    # --- csvread.py: row numbering -----------------------------------------------------------
    ("C01", CR,
     'frame.insert(0, "source_row", range(state.rows_read + 1, state.rows_read + len(frame) + 1))',
     'frame.insert(0, "source_row", range(state.rows_read, state.rows_read + len(frame)))',
     "fast path: source_row off by one (0-based)"),
    ("C02", CR,
     "                if not fields:\n"
     "                    continue  # blank line\n"
     "                state.rows_read += 1\n",
     "                state.rows_read += 1\n"
     "                if not fields:\n"
     "                    continue  # blank line\n",
     "exact path: blank lines counted in source_row"),
    # --- landing.py: routing and publishing --------------------------------------------------
    ("L01", LA,
     "return self.protect(bad)",
     "return self.protect(bad.iloc[:0])",
     "landing rejects (no valid day) dropped: frame of rejects never written"),
    ("L02", LA,
     "rejects.append(self._malformed(state.malformed, name))",
     "rejects.append(self._malformed([], name))",
     "malformed records dropped (counted, never written as rejects)"),
    ("L03", LA,
     'day = str(np.datetime64(day_value, "D"))',
     'day = str(np.datetime64(day_value, "D") + np.timedelta64(1, "D"))',
     "rows landed in the next day's partition (off-by-one day)"),
    ("L04", LA,
     "                old.unlink()",
     "                pass",
     "publishing a new version keeps the old version's fragments"),
    ("L05", LA,
     "result.rows_read = state.rows_read",
     "result.rows_read = state.rows_read + 1",
     "rows_read count off by one"),
    # --- intake.py: settle, duplicates, quarantine, links ------------------------------------
    ("I01", IN,
     "if 0 <= age < self.settle_s:",
     "if 0 <= age < 0:",
     "settle time ignored: files still being written are taken"),
    ("I02", IN,
     "        if earlier is not None:\n",
     '        if earlier is not None and earlier["file_name"] == name:\n',
     "same content under a new name is landed again (duplicate check by name)"),
    ("I03", IN,
     "st = os.lstat(path)",
     "st = os.stat(path)",
     "classify follows symlinks (stat instead of lstat)"),
    ("I04", IN,
     "os.replace(path, target)",
     "shutil.copy2(path, target)",
     "quarantine copies (following links) instead of moving the entry"),
    ("I05", IN,
     "if not name.lower().endswith(CSV_SUFFIXES):",
     "if not name.endswith(CSV_SUFFIXES):",
     "'.CSV' (upper case) quarantined as not a csv file"),
    # --- pipeline.py: cleaning ---------------------------------------------------------------
    ("P01", PI,
     "dup = verdict.classify(rows, first) if verdict.any else None",
     "dup = None",
     "dedupe skipped: duplicate transaction ids reach the load"),
    ("P02", PI,
     '_write_rejects(rejects_tmp / f"dup-{part:05d}.parquet", duplicates, tokenizer,',
     '_write_rejects(rejects_tmp / f"dup-{part:05d}.parquet", duplicates.iloc[:0], tokenizer,',
     "duplicate rejects dropped: the frame of duplicates is never written"),
    # --- warehouse/loading.py: upsert and delete-vanished ------------------------------------
    ("W01", LO,
     'columns = [frame["transaction_id"].tolist(), frame["customer_id"].tolist(),\n'
     '               frame["product_id"].tolist(),',
     'columns = [frame["transaction_id"].tolist(), frame["product_id"].tolist(),\n'
     '               frame["customer_id"].tolist(),',
     "customer and product token columns swapped when staging"),
    ("W02", LO,
     "return and_(t.c.sale_date == day,",
     "return and_(t.c.sale_date != day,",
     "delete-vanished deletes other days' rows instead of this day's"),
    ("W03", LO,
     "if stats.inserted or stats.updated or stats.relinked:",
     "if stats.inserted or stats.updated:",
     "upsert skipped when rows are only relinked to a new file version"),
    ("W04", LO,
     "compared = [*self.content_columns, *LINEAGE_COLUMNS]",
     "compared = [*self.content_columns]",
     "upsert ignores lineage changes (source file/sha/row not updated)"),
    ("W05", LO,
     "stats.staged -= stats.conflicts_rejected",
     "stats.staged -= 0",
     "inserted/unchanged counts ignore rows rejected as cross-day conflicts"),
    # --- warehouse/conflicts.py ---------------------------------------------------------------
    ("X01", CO,
     "conn.execute(delete(t).where(others))",
     "pass",
     "other day's copy of a conflicting id stays in sales (also rejected)"),
    ("X02", CO,
     "released = sorted(self.before - self.after)",
     "released = []",
     "a conflict that goes away never requests the other day again"),
    # --- warehouse/ledger.py: state and counts -------------------------------------------------
    ("G01", LE,
     "if landed.get(ident, 0) != accounted.get(ident, 0):",
     "if landed.get(ident, 0) < accounted.get(ident, 0):",
     "file marked loaded before all its rows are counted"),
    ("G02", LE,
     'affected.update(json.loads(row["days_touched"] or "[]"))',
     "affected.update([])",
     "days of a superseded version are not requested for reload"),
    ("G03", LE,
     "elif row.status not in LIVE:",
     "else:",
     "a duplicate drop overwrites the live (loaded) ledger entry"),
    ("G04", LE,
     '"sale_date": date.fromisoformat(d), "rows_landed": n}',
     '"sale_date": date.fromisoformat(d), "rows_landed": n + 1}',
     "rows landed per day off by one in file_day_counts"),
    # --- warehouse/rejects.py: rejects ----------------------------------------------------------
    ("R01", RE,
     "            if records:\n",
     "            if len(records) > 1:\n",
     "a day's reject frame with a single reject is not written"),
    ("R02", RE,
     "sales_rejects.c.source_file == file_name))",
     "sales_rejects.c.source_file == file_name,\n"
     "                                             sales_rejects.c.source_sha256 == sha))",
     "landing rejects of a superseded version are kept"),
]

PROBE_TEST = '''\
import os

import sales_platform
import sales_platform.core.quality
import sales_platform_tests


def test_mutation_probe():
    with open(os.environ["MUTATION_PROBE_OUT"], "w") as handle:
        handle.write("\\n".join([sales_platform.__file__, sales_platform.core.quality.__file__,
                                sales_platform_tests.__file__]))
'''

BROKEN_PATTERNS = re.compile(
    r"error during collection|ImportError|ModuleNotFoundError|SyntaxError|IndentationError|NameError")


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str
    original: str
    replacement: str
    description: str


@dataclass
class Outcome:
    id: str
    path: str
    description: str
    result: str  # killed | SURVIVED | broken | timeout
    first_failure: str
    seconds: float
    exit_code: int | None
    snapshot: str = ""  # what the copy was taken from


def mutations() -> list[Mutation]:
    return [Mutation(*m) for m in MUTATIONS]


def validate(items: list[Mutation], root: Path) -> None:
    """Every snippet occurs exactly once in its file, ids are unique, replacements compile."""
    problems = []
    ids = [m.id for m in items]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{dup}: duplicate id")
    for m in items:
        path = root / m.path
        if not path.is_file():
            problems.append(f"{m.id}: {m.path} does not exist")
            continue
        text = path.read_text(encoding="utf-8")
        n = text.count(m.original)
        if n != 1:
            problems.append(f"{m.id}: snippet found {n} times in {m.path} (must be exactly 1): "
                            f"{m.original!r}")
            continue
        if m.original == m.replacement:
            problems.append(f"{m.id}: replacement equals the original")
            continue
        try:
            compile(text.replace(m.original, m.replacement), m.path, "exec")
        except SyntaxError as exc:
            problems.append(f"{m.id}: mutated {m.path} does not compile: {exc}")
    if problems:
        raise SystemExit("mutation list invalid:\n  " + "\n  ".join(problems))


def snapshot_id() -> str:
    """HEAD and the number of changed files: what the copy was taken from."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "sales_platform",
                            "sales_platform_tests"], cwd=REPO, capture_output=True,
                           text=True).stdout.splitlines()
    return f"{head}" + (f" + {len(dirty)} uncommitted change(s) under sales_platform*"
                        if dirty else " (no uncommitted change under sales_platform*)")


def copy_repo(dest: Path) -> int:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    copied = 0
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree but still tracked
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        copied += 1
    return copied


def run_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_pytest(python: str, copy: Path, args: list[str], timeout: float,
               extra_env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(exit code or None on timeout, combined output); the whole process group is ended."""
    env = {**run_env(copy), **(extra_env or {})}
    proc = subprocess.Popen([python, "-m", "pytest", *args], cwd=copy, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): no pytest left behind
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def check_isolation(python: str, copy: Path) -> list[str]:
    """The copy's sales_platform (not the editable install) is what tests import."""
    plain = subprocess.run(
        [python, "-c", "import sales_platform, sales_platform_tests; "
                       "print(sales_platform.__file__); print(sales_platform_tests.__file__)"],
        cwd=copy, env=run_env(copy), capture_output=True, text=True, check=True).stdout.split()
    probe = copy / "sales_platform_tests" / "test_zz_mutation_probe.py"
    out_file = copy / ".mutation_probe_out"
    probe.write_text(PROBE_TEST)
    try:
        code, output = run_pytest(python, copy, [str(probe.relative_to(copy)), "-q",
                                                 "-p", "no:cacheprovider", "-p", "no:logging"], 300,
                                  {"MUTATION_PROBE_OUT": str(out_file)})
    finally:
        probe.unlink(missing_ok=True)
    if code != 0 or not out_file.exists():
        raise SystemExit(f"isolation probe failed (exit {code}):\n{output[-3000:]}")
    in_pytest = out_file.read_text().split("\n")
    out_file.unlink()
    lines = [f"python -c: {p}" for p in plain] + [f"inside pytest: {p}" for p in in_pytest]
    outside = [p for p in [*plain, *in_pytest] if not Path(p).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise SystemExit("the editable install shadows the copy:\n  " + "\n  ".join(lines))
    return lines


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:300]
    for line in output.splitlines():
        if "Timeout" in line or "Error" in line:
            return line.strip()[:300]
    return ""


def classify(code: int | None, output: str) -> tuple[str, str]:
    failure = first_failure(output)
    if code is None:
        return "timeout", failure or "no result within the time limit"
    if code == 0:
        return "SURVIVED", ""
    if code == 1 and not BROKEN_PATTERNS.search(failure) and "error during collection" not in output:
        return "killed", failure
    return "broken", failure or output.strip().splitlines()[-1][:300]


def apply(copy: Path, m: Mutation) -> bytes:
    path = copy / m.path
    original = path.read_bytes()
    text = original.decode("utf-8")
    if text.count(m.original) != 1:
        raise SystemExit(f"{m.id}: snippet not found exactly once in the copy of {m.path}")
    path.write_text(text.replace(m.original, m.replacement), encoding="utf-8")
    return original


# ---- report ---------------------------------------------------------------------------------------

RESULTS_MARK = "<!-- mutation-results:"


def load_previous(report: Path) -> dict[str, dict]:
    if not report.exists():
        return {}
    text = report.read_text(encoding="utf-8")
    start = text.find(RESULTS_MARK)
    if start < 0:
        return {}
    body = text[start + len(RESULTS_MARK): text.find("-->", start)]
    try:
        return {r["id"]: r for r in json.loads(body)}
    except (ValueError, KeyError):
        return {}


def table(outcomes: list[dict]) -> str:
    rows = ["| id | file | description | result | first failing test | s |",
            "|---|---|---|---|---|---|"]
    for o in outcomes:
        failure = o["first_failure"].replace("|", "\\|")
        if len(failure) > 160:
            failure = failure[:157] + "..."
        result = f"**{o['result']}**" if o["result"] != "killed" else o["result"]
        rows.append(f"| {o['id']} | {o['path'].removeprefix('sales_platform/core/')} | "
                    f"{o['description']} | {result} | {failure} | {o['seconds']:.0f} |")
    return "\n".join(rows)


def score_line(outcomes: list[dict]) -> str:
    killed = sum(o["result"] == "killed" for o in outcomes)
    counts = {k: sum(o["result"] == k for o in outcomes) for k in ("SURVIVED", "broken", "timeout")}
    extra = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return f"{killed} / {len(outcomes)} killed" + (f" ({extra})" if extra else "")


def write_report(report: Path, outcomes: list[dict], meta: dict) -> None:
    lines = [
        "# Mutation check of `sales_platform/core/`",
        "",
        "Generated by `python tools/mutations.py` (deliberate bugs, one at a time, in a temp copy of "
        "the repository; the tests below run against the mutated copy).",
        "",
        f"- run: {meta['when']}, on a copy of the working tree at `{meta['commit']}`",
        f"- interpreter: `{meta['python']}`; `python -m pytest` with cwd = the copy and "
        "`PYTHONPATH=<copy>`, `PYTHONDONTWRITEBYTECODE=1`",
        f"- tests: `{meta['tests']}`",
        f"- per-mutation time limit: {meta['timeout']} s; baseline (no mutation): {meta['baseline']}",
        "- isolation check (the copy, not the editable install in the repository, is imported):",
        *[f"  - `{line}`" for line in meta["isolation"]],
        "",
    ]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + report_body(outcomes, meta.get("notes") or {}),
                      encoding="utf-8")


def report_body(outcomes: list[dict], notes: dict[str, str]) -> str:
    lines = []
    snapshots = sorted({o.get("snapshot") or "?" for o in outcomes})
    if len(snapshots) > 1:  # --only runs merged into an earlier report
        lines += ["Results merged from runs on: " + "; ".join(
            f"`{s}` ({sum((o.get('snapshot') or '?') == s for o in outcomes)})" for s in snapshots),
            ""]
    lines += [
        f"**Score: {score_line(outcomes)}**",
        "",
        table(outcomes),
        "",
        "killed = pytest exited 1 on a failing test; SURVIVED = every selected test passed; "
        "broken = import/collection error (the mutation, not the tests, is at fault); timeout = "
        "no result within the limit.",
    ]
    survivors = [o for o in outcomes if o["result"] != "killed" and o["id"] in notes]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"- **{o['id']}** ({o['description']}): {notes[o['id']]}" for o in survivors]
    lines += ["", f"{RESULTS_MARK}{json.dumps(outcomes)}-->", ""]
    return "\n".join(lines)


def rerender(report: Path, notes: dict[str, str]) -> None:
    """Rebuild the score, table and survivor notes of an existing report (header kept)."""
    text = report.read_text(encoding="utf-8")
    start = min(i for i in (text.find("Results merged from"), text.find("**Score:")) if i >= 0)
    order = {m.id: i for i, m in enumerate(mutations())}
    outcomes = sorted((o for o in load_previous(report).values() if o["id"] in order),
                      key=lambda o: order[o["id"]])
    report.write_text(text[:start] + report_body(outcomes, notes), encoding="utf-8")


# Analysis of surviving mutations (shown in the report next to the table).
SURVIVOR_NOTES: dict[str, str] = {
    "Q05": (
        "a real gap, though narrow. Relaxing the shape does not let an ordinary bare date through: "
        "`2024-06-15` then ends in `-15`, which ZONE_SUFFIX takes for a UTC offset, and "
        "`2024-06-15:00` does not parse (rejected by accident, not by the rule); a bare date with "
        "a zone does not parse with format=ISO8601 either. But `_beyond_pandas_range` uses the same "
        "shape: with the mutation a bare far date is parsed by `datetime.fromisoformat`, so "
        "`9999-12-31` becomes future_timestamp and `1000-01-01` before_start_date instead of "
        "invalid_timestamp (checked by hand). Kill: in test_quality.py::test_timestamp_routing add "
        "`(\"9999-12-31\", q.INVALID_TIMESTAMP, None)` and `(\"1000-01-01\", q.INVALID_TIMESTAMP, "
        "None)` (or a `9999-12-31` row in "
        "test_whole_numbers_ids_blank_lines_and_far_years_follow_the_rules: the oracle says "
        "invalid_timestamp)."),
    "I03": (
        "a real gap, not equivalent, though the safety property still holds. With stat() a link "
        "to a regular file is classified as csv, and the second guard (os.open with O_NOFOLLOW in "
        "_read_once) fails with ELOOP, so the link is still quarantined and its target never "
        "read. The test's `\"symbolic link\" in error` still passes because the message is "
        "`cannot read: Too many levels of symbolic links`. What changes: a dangling link makes "
        "stat() raise FileNotFoundError, classify returns \"gone\", and the link stays in the drop "
        "zone forever, never quarantined or recorded. Kill: in "
        "test_links_and_special_files_are_never_followed assert the classify reason exactly "
        "(`\"symbolic link, not followed\" in ledger[name][\"error\"]` for passwd.csv and "
        "elsewhere.csv), and add a dangling link (`os.symlink(tmp_path / \"missing.csv\", "
        "harness.incoming / \"dangling.csv\")`) that must end quarantined; the test's final "
        "`os.listdir(harness.incoming) == []` then fails too."),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutations")
    parser.add_argument("--tests", default=DEFAULT_TESTS, help="pytest arguments (one string)")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="interpreter that runs pytest")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per mutation")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--check", action="store_true", help="only validate the mutation list")
    parser.add_argument("--keep", action="store_true", help="keep the temp copy")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report's table and survivor notes from its stored results")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # cleanup runs in finally

    if args.report_only:
        rerender(args.report, SURVIVOR_NOTES)
        print(f"report rebuilt: {args.report}")
        return 0
    items = mutations()
    validate(items, REPO)
    if args.only:
        unknown = set(args.only) - {m.id for m in items}
        if unknown:
            raise SystemExit(f"unknown mutation id(s): {', '.join(sorted(unknown))}")
        items = [m for m in items if m.id in args.only]
    print(f"{len(items)} mutation(s) valid")
    if args.check:
        return 0
    test_args = shlex.split(args.tests)
    copy = Path(tempfile.mkdtemp(prefix="sales-platform-mutations-"))
    try:
        commit = snapshot_id()
        print(f"copied {copy_repo(copy)} files of {commit} to {copy}")
        validate(items, copy)
        isolation = check_isolation(args.python, copy)
        print("isolation:", *isolation, sep="\n  ")
        baseline = "skipped"
        if not args.no_baseline:
            started = time.monotonic()
            code, output = run_pytest(args.python, copy, test_args, args.timeout)
            took = time.monotonic() - started
            summary = (output.strip().splitlines() or [""])[-1]
            baseline = f"exit {code} in {took:.0f} s ({summary.strip('= ')})"
            print(f"baseline: {baseline}")
            if code != 0:
                print(output[-5000:])
                raise SystemExit("the unmutated tests do not pass: mutation results would be "
                                 "meaningless")
        outcomes: list[Outcome] = []
        for n, m in enumerate(items, 1):
            original = apply(copy, m)
            started = time.monotonic()
            retried = False
            try:
                code, output = run_pytest(args.python, copy, test_args, args.timeout)
                if code == 3 and "INTERNALERROR" in output:
                    # pytest crashed while rendering a failure (seen: CPython 3.11 "AST constructor
                    # recursion depth mismatch" after a failure in a thread): plain tracebacks
                    retried = True
                    code, output = run_pytest(args.python, copy, [*test_args, "--tb=native"],
                                              args.timeout)
            finally:
                (copy / m.path).write_bytes(original)
            took = time.monotonic() - started
            result, failure = classify(code, output)
            if retried:
                failure = f"{failure} (rerun with --tb=native after a pytest INTERNALERROR)"
            outcome = Outcome(m.id, m.path, m.description, result, failure, took, code, commit)
            outcomes.append(outcome)
            print(f"[{n}/{len(items)}] {m.id} {result:8} {took:5.0f}s  {m.description}"
                  + (f"\n      {failure}" if failure else ""), flush=True)
            if result == "broken":
                print("\n".join(output.splitlines()[-30:]))
        for path in sorted({m.path for m in items}):  # the copy is back to what was copied
            if (copy / path).read_bytes() != (REPO / path).read_bytes():
                print(f"note: {path} changed in the repository during the run (the run used the "
                      "version copied at the start)")
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)

    merged = load_previous(args.report)
    merged.update({o.id: asdict(o) for o in outcomes})
    order = {m.id: i for i, m in enumerate(mutations())}
    final = sorted((o for o in merged.values() if o["id"] in order), key=lambda o: order[o["id"]])
    meta = {"when": datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": commit,
            "python": args.python, "tests": args.tests, "timeout": int(args.timeout),
            "baseline": baseline, "isolation": isolation, "notes": SURVIVOR_NOTES}
    write_report(args.report, final, meta)
    print()
    print(table([asdict(o) for o in outcomes]))
    print(f"\nscore (this run): {score_line([asdict(o) for o in outcomes])}")
    if len(final) != len(outcomes):
        print(f"score (report, merged with earlier runs): {score_line(final)}")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
