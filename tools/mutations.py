"""A small scripted mutation check: does the test suite catch deliberate bugs in sales_platform/core?

Each mutation replaces one exact snippet of one file (the snippet must occur exactly once, or the
script stops before running anything). The committed tree (``git archive HEAD``) is extracted once
into a temp dir: other sessions edit the working tree concurrently, and their half-done edits must
not enter a run; the report records the commit. Each mutation is applied to the copy, the chosen
tests run there, and the file is restored before the next one. The working tree of the repository
itself is never modified, except for the report file.

Two lists: the default one below (written next to the tests) and ``--set blind``
(tools/blind_mutations.py, written by someone who had not read the tests; its report is
tools/blind_mutation_report.md and its tests are the whole non-end-to-end suite, ``-m "not slow"``).

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
    python tools/mutations.py --set blind           # the blind list against the non-e2e suite
    python tools/mutations.py --set blind --only B07
"""

from __future__ import annotations

import argparse
import importlib.util
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
DEFAULT_PYTHON = sys.executable  # run as .venv/bin/python tools/mutations.py
DEFAULT_TESTS = (
    "sales_platform_tests/test_integrity.py sales_platform_tests/test_quality.py "
    "sales_platform_tests/test_landing.py sales_platform_tests/test_checks_can_fail.py "
    "sales_platform_tests/test_pipeline.py -k 'not postgresql' -x -q -p no:cacheprovider "
    "-p no:logging"
)
DEFAULT_REPORT = REPO / "tools" / "mutation_report.md"
TIMEOUT_S = 300

BLIND_LIST = REPO / "tools" / "blind_mutations.py"
BLIND_REPORT = REPO / "tools" / "blind_mutation_report.md"
BLIND_TIMEOUT_S = 1800
# The blind set runs the whole non-end-to-end suite (everything not marked slow), stopping at the
# first failure. Files are given in this order: the rule-level files first, so that a mutation is
# normally stopped by a test aimed at its rule (and quickly); then every other test file, in name
# order (listed at run time, so new files are included). Files absent at HEAD are left out.
BLIND_FIRST = (
    "test_quality.py", "test_rules_blind.py", "test_boundaries.py", "test_identifier_forms.py",
    "test_frames.py", "test_quarantine_reasons.py", "test_landing.py", "test_uploads.py",
    "test_blob_dropzone.py",
    "test_crypto.py", "test_stage_ledger.py", "test_rollup_checks.py", "test_categories_report.py",
    "test_products_and_exports.py", "test_schema_evolution.py", "test_checks_can_fail.py",
    "test_day_truth.py", "test_load_paths.py", "test_integrity.py", "test_pipeline.py",
)
# Not ``-p no:logging`` (the default set's flag): two non-e2e tests use the caplog fixture, which
# that plugin provides; without it they error at setup and the run would not be the whole suite.
BLIND_PYTEST_ARGS = '-m "not slow" -x -q -p no:cacheprovider'
BLIND_SELECTION = [
    "Selection: every test not marked `slow` (the repository's end-to-end marker: Dagster "
    "webserver/daemon stacks, browsers, Celery, kill/restart tests). Some unmarked files start a "
    "server of their own and are kept, being part of the non-e2e suite as CI runs it: "
    "test_api_fuzz.py, test_api_hostile.py, test_tls.py and one test of test_products_api.py "
    "(gunicorn or serve() in a subprocess), test_azure_blob.py, test_azure_pipeline.py, "
    "test_blob_dropzone.py (Azurite from the repository's .tools/, passed as AZURITE_BLOB_BIN), "
    "test_tls.py (a PostgreSQL with TLS). The PostgreSQL variants run against the server already "
    "up at 127.0.0.1:5432; test_mssql_integration.py skips (no SQL Server on this machine).",
]

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
    area: str = ""  # the blind list groups its entries by area of behaviour


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
    area: str = ""


def load_blind() -> list[tuple[str, ...]]:
    spec = importlib.util.spec_from_file_location("blind_mutations", BLIND_LIST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.BLIND_MUTATIONS)


def mutations(which: str = "default") -> list[Mutation]:
    return [Mutation(*m) for m in (load_blind() if which == "blind" else MUTATIONS)]


def blind_tests(root: Path) -> str:
    """The whole non-e2e suite of the copy at ``root``, rule-level files first."""
    present = sorted(p.name for p in (root / "sales_platform_tests").glob("test_*.py"))
    ordered = [n for n in BLIND_FIRST if n in present] + [n for n in present if n not in BLIND_FIRST]
    return " ".join(f"sales_platform_tests/{n}" for n in ordered) + " " + BLIND_PYTEST_ARGS


def validate(items: list[Mutation], root: Path, gone_ok: bool = False) -> list[str]:
    """Every snippet occurs exactly once in its file, ids are unique, replacements compile.

    With ``gone_ok`` (lists are not edited to follow the code), a snippet found
    nowhere is returned as gone instead of stopping the run: its code was rewritten since the list
    was written, and its earlier result, if any, stays in the report."""
    problems, gone = [], []
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
        if n == 0 and gone_ok:
            gone.append(m.id)
            continue
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
    return gone


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()


def copy_repo(dest: Path, commit: str) -> int:
    """Extract the committed tree of ``commit`` (not the working tree) into ``dest``."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return sum(1 for p in dest.rglob("*") if p.is_file())


def run_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    # Azurite is installed under the repository's ignored .tools/ (or node_modules/), which the
    # archive does not carry: point the copy's tests at the repository's install.
    if "AZURITE_BLOB_BIN" not in env:
        for folder in (REPO, REPO / ".tools"):
            candidate = folder / "node_modules" / ".bin" / "azurite-blob"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                env["AZURITE_BLOB_BIN"] = str(candidate)
                break
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


SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) \S")  # not a captured log line ("ERROR    name:...")


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if SUMMARY_LINE.match(line):
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


def table(outcomes: list[dict], blind: bool = False) -> str:
    if blind:
        rows = ["| id | area | file | description | result | first failing test | s |",
                "|---|---|---|---|---|---|---|"]
    else:
        rows = ["| id | file | description | result | first failing test | s |",
                "|---|---|---|---|---|---|"]
    for o in outcomes:
        failure = o["first_failure"].replace("|", "\\|")
        if len(failure) > 160:
            failure = failure[:157] + "..."
        result = f"**{o['result']}**" if o["result"] != "killed" else o["result"]
        area = f" {o.get('area', '')} |" if blind else ""
        description = o["description"].replace("|", "\\|")
        rows.append(f"| {o['id']} |{area} {o['path'].removeprefix('sales_platform/core/')} | "
                    f"{description} | {result} | {failure} | {o['seconds']:.0f} |")
    return "\n".join(rows)


def score_line(outcomes: list[dict]) -> str:
    killed = sum(o["result"] == "killed" for o in outcomes)
    counts = {k: sum(o["result"] == k for o in outcomes) for k in ("SURVIVED", "broken", "timeout")}
    extra = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    share = f" = {100 * killed / len(outcomes):.0f} %" if outcomes else ""
    return f"{killed} / {len(outcomes)} killed{share}" + (f" ({extra})" if extra else "")


def write_report(report: Path, outcomes: list[dict], meta: dict) -> None:
    blind = meta["set"] == "blind"
    title = ("# Blind mutation check (tools/blind_mutations.py)" if blind
             else "# Mutation check of `sales_platform/core/`")
    intro = ("Generated by `python tools/mutations.py --set blind`: the list in "
             "tools/blind_mutations.py was written by a session that had read README.md, "
             "ARCHITECTURE.md, docs/ and sales_platform/core/ but not the tests (its docstring says "
             "so); nothing in it was tuned to the tests. Each mutation is applied alone to a temp "
             "copy of the committed tree and the non-end-to-end suite runs against it."
             if blind else
             "Generated by `python tools/mutations.py` (deliberate bugs, one at a time, in a temp "
             "copy of the repository; the tests below run against the mutated copy).")
    lines = [
        title,
        "",
        intro,
        "",
        f"- run: {meta['when']}, on `git archive` of commit `{meta['commit']}` (the committed tree, "
        "not the working tree)",
        f"- interpreter: `{meta['python']}`; `python -m pytest` with cwd = the copy and "
        "`PYTHONPATH=<copy>`, `PYTHONDONTWRITEBYTECODE=1`",
        f"- tests: `{meta['tests']}`",
        f"- per-mutation time limit: {meta['timeout']} s; baseline (no mutation): {meta['baseline']}",
        "- isolation check (the copy, not the editable install in the repository, is imported):",
        *[f"  - `{line}`" for line in meta["isolation"]],
        *([""] + meta["selection"] if meta.get("selection") else []),
        "",
    ]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + report_body(outcomes, meta["set"]), encoding="utf-8")


def report_body(outcomes: list[dict], which: str) -> str:
    notes, aim = NOTES[which]
    lines = []
    snapshots = sorted({o.get("snapshot") or "?" for o in outcomes})
    if len(snapshots) > 1:  # --only runs merged into an earlier report
        lines += ["Results merged from runs on: " + "; ".join(
            f"`{s}` ({sum((o.get('snapshot') or '?') == s for o in outcomes)})" for s in snapshots),
            ""]
    lines += [
        f"**Score: {score_line(outcomes)}**",
        "",
        table(outcomes, blind=which == "blind"),
        "",
        "killed = pytest exited 1 on a failing test; SURVIVED = every selected test passed; "
        "broken = import/collection error (the mutation, not the tests, is at fault); timeout = "
        "no result within the limit.",
    ]
    # notes also for mutations without a full-suite result yet (confirmed by narrow runs only)
    described = {m.id: m.description for m in mutations(which)}
    ran = {o["id"] for o in outcomes}
    noted = [*(o for o in outcomes if o["id"] in notes),
             *({"id": i, "description": described[i] + "; no full-suite result yet"}
               for i in described if i in notes and i not in ran)]
    if noted:
        lines += ["", "## Survivors", "", SURVIVORS_PREFACE[which], ""]
        lines += [f"- **{o['id']}** ({o['description']}): {notes[o['id']]}" for o in noted]
    aimed = [o for o in outcomes if o["id"] in aim]
    if aimed:
        lines += ["", "## First failing test not aimed at the rule; snippets moved", ""]
        lines += [f"- **{o['id']}** ({o['description']}): {aim[o['id']]}" for o in aimed]
    lines += ["", f"{RESULTS_MARK}{json.dumps(outcomes)}-->", ""]
    return "\n".join(lines)


def rerender(report: Path, which: str) -> None:
    """Rebuild the score, table and survivor notes of an existing report (header kept)."""
    text = report.read_text(encoding="utf-8")
    start = min(i for i in (text.find("Results merged from"), text.find("**Score:")) if i >= 0)
    order = {m.id: i for i, m in enumerate(mutations(which))}
    outcomes = sorted((o for o in load_previous(report).values() if o["id"] in order),
                      key=lambda o: order[o["id"]])
    report.write_text(text[:start] + report_body(outcomes, which), encoding="utf-8")


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


# The blind set: survivors (a new test that kills it, or why it is equivalent) and killed
# mutations whose first failing test is not one aimed at the mutated rule.
AHEAD = "written ahead (predicted survivor, see the note at the top of this section): "
BLIND_SURVIVOR_NOTES: dict[str, str] = {
    "B14": AHEAD + (
        "test_rules_blind.py::test_a_record_of_empty_fields_is_a_numbered_row_not_a_blank_line: a "
        "`,,,,` record is row 2 (missing_timestamp), the blank line after it is not counted, the "
        "next record is row 3, on the fast path and on the exact path (a blank line before the "
        "header forces the exact path). No existing test put an all-empty record on the exact path."),
    "B17": AHEAD + (
        "test_rules_blind.py::test_a_file_whose_rows_all_fail_landing_lands_with_its_rejects: two "
        "rows, both without a valid day, land as a file with two landing rejects, not quarantined "
        "as 'header only' (test_landing.py's files always had a landed row)."),
    "B20": AHEAD + (
        "test_rules_blind.py::test_drop_zone_leaves_files_in_progress_alone, one case per suffix "
        "docs/operations.md lists (*.tmp, *.partial, *.part, *.crdownload); only *.tmp was tested "
        "on the platform (test_landing.py), the others only on the test oracle (test_oracle.py)."),
    "B21": AHEAD + (
        "test_rules_blind.py::test_a_file_rewritten_in_place_with_the_same_size_while_landing_stays_"
        "as_a_new_version: the drop is rewritten in place (same inode, same size, new mtime) while "
        "it lands; it must stay in the drop zone and land as the second version on the next run."),
    "B24": AHEAD + (
        "test_blob_dropzone.py::test_a_duplicate_blob_is_moved_to_the_archive_prefix_like_a_landed"
        "_one (Azurite): the same bytes as a.csv and b.csv; both blobs end under "
        "incoming-archive/<sha>/ and the next tick finds nothing. The existing duplicate test "
        "overwrote the duplicate blob with new content before looking, which hid the mutation."),
    "B25": AHEAD + (
        "test_rules_blind.py::test_upload_max_bytes_refuses_one_byte_over_the_limit_without_a_"
        "declared_length: core `receive` with max_bytes one under the body and no declared length "
        "(a chunked body read in one block) is 413 with nothing left. Perhaps not a survivor: "
        "test_uploads.py streams 7 KB in 1000-byte chunks against a 4096-byte limit, which a check "
        "one block late still refuses if the server hands the chunks over one read at a time; "
        "the new test states the rule without depending on that."),
    "B27": AHEAD + (
        "test_rules_blind.py::test_upload_max_bytes_takes_an_upload_of_exactly_the_limit: a body "
        "declaring and having exactly max_bytes is taken."),
    "B37": AHEAD + (
        "test_rules_blind.py::test_a_reload_deletes_every_row_that_vanished_from_the_day[one_gone]"
        ": T1-T3 loaded, reloaded as T1, T2: sales holds T1, T2 (also two and all three gone). "
        "test_load_paths.py's merge test has six vanished rows."),
    "B30": (
        "SURVIVED on c183061 (395 s, whole suite): a real gap, not equivalent. mark_blocked takes "
        "the live versions whose days_affected holds the day (_live_versions_on), then skips those "
        "without rows there (days_touched). The mutation tests days_affected again, so nothing is "
        "skipped: a version that only superseded rows on the blocked day (a corrected a.csv "
        "whose rows moved off that day) is marked blocked, with the day in its error, although it "
        "has nothing there. New test: test_rules_blind.py::test_a_blocked_day_blocks_only_versions"
        "_with_rows_on_that_day (a.csv on 03-01 and 03-02, b.csv on 03-01, a.csv again on 03-02 "
        "only; blocking 03-01 blocks b.csv alone, a.csv stays landed)."),
    "B31": (
        "SURVIVED on c183061 (395 s): a real gap. refresh_versions marks a version loaded when its "
        "own days are fully counted and no row of the version it superseded is left on the days "
        "only that one had (`others`). Checking `own` instead is vacuous once the own days are "
        "counted, so a corrected file whose rows left a day is called loaded while the old "
        "version's row is still in sales on that day (until that day is reloaded). New test: "
        "test_rules_blind.py::test_a_new_version_is_loaded_only_once_the_old_versions_rows_left_"
        "its_other_days (ledger and sales rows written by hand: landed while the old row is on "
        "03-01, loaded once it is gone)."),
    "B33": (
        "SURVIVED on c183061 (428 s): a real gap, narrow. versions_awaiting_load feeds only the "
        "load sensor's run tags (sales_platform/files and, for one file, sales_platform/file), so "
        "with the mutation a load of days held by a blocked version no longer names that file: "
        "what an operator searches runs by. Not equivalent (the tags differ for any blocked "
        "version). New test: test_rules_blind.py::test_versions_awaiting_load_are_the_landed_and_"
        "blocked_ones (landed and blocked listed, loaded and superseded not)."),
    "B50": (
        "not reached by run 2 (c183061, where it applied) and skipped since: 34aaf6a replaced the "
        "max(refreshed_at) test of changed months with a change log (agg_changes), so the "
        "snippet and the rule it inverts are gone. Not rewritten against the new code: a new "
        "mutation there would be written by someone who has read the tests, not a blind one."),
    "B52": (
        "as B50: not reached on c183061; 34aaf6a removed changed_years (exports now follow the "
        "change log), so the snippet is gone from later commits and the mutation is not "
        "rewritten."),
    "B63": AHEAD + (
        "test_rules_blind.py::test_report_window_is_report_days_long_ending_at_the_newest_day "
        "(agg_sales_daily 2024-01-10 and 03-01..03-20: 1, 7 and 20 days end at 03-20 and start "
        "at 03-20, 03-14, 03-01). test_categories_report.py's window always started at the first "
        "sale day, which hides one day too many."),
    "B64": AHEAD + (
        "test_rules_blind.py::test_report_revenue_by_category_holds_only_the_windows_months (a "
        "window in March 2024 holds March's categories, not January's)."),
    "B41": (
        "SURVIVED on 59cfa53 (421 s): a real gap. When a load finds an id on another day it "
        "turns that id's within-day duplicate rejects into duplicate_across_days; with the "
        "mutation only duplicate_conflicting ones, so an identical copy collapsed on Monday stays "
        "duplicate_identical (not counted in the reject rate, shown as a harmless re-send) while "
        "its kept copy is evicted as a cross-day conflict. New test: test_rules_blind.py::test_"
        "identical_copies_of_an_id_also_on_another_day_become_duplicate_across_days (T1 twice on "
        "06-15, once on 06-16, loaded in that order: all three copies duplicate_across_days, T2 "
        "alone in sales); confirmed to fail with the mutation, pass without (narrow run)."),
    "B42": (
        "SURVIVED on 357595b (409 s), found when the time box ended: NOT handled yet. Reading: "
        "a real gap, not equivalent. Without _live(r), a cross-day reject of a superseded "
        "version still counts as a copy on another day. Re-cleaning that day deletes such "
        "rejects, so it shows only while the day is not reloaded, the case the docstring names: "
        "a corrected a.csv (T1 gone from 06-15) while 06-15 is blocked; loading 06-16 must then "
        "load b.csv's T1, and with the mutation keeps it rejected as duplicate_across_days. Test "
        "to write: that sequence (block 06-15 by its reject rate), in test_rules_blind.py."),
    "B58": AHEAD + (
        "test_rules_blind.py::test_encryption_key_of_at_least_16_bytes_is_accepted: 15 bytes "
        "refused, 16 and 32 accepted (docs/configuration.md: base64 master key, at least 16 "
        "bytes); every test key was 32 bytes."),
    "B66": AHEAD + (
        "test_rules_blind.py::test_max_reject_rate_preflight_takes_a_fraction_between_0_and_1: "
        "preflight.check_numbers takes 0, 0.5 and 1 and names the variable for 1.5. "
        "test_boundaries.py tests the setting's reader, not the preflight table of check/run."),
    "B67": AHEAD + (
        "test_rules_blind.py::test_start_date_preflight_refuses_only_a_day_after_today: with "
        "today 2024-06-01, START_DATE 2024-06-01 passes, 2024-06-02 is named. test_operator.py "
        "tested tomorrow and 2030 only."),
}
BLIND_AIM_NOTES: dict[str, str] = {
    "B03": (
        "snippet moved: 7a9e149 moved normalize_identifiers to core/identifiers.py; the entry's "
        "file was changed to it (same snippet, same bug) and rerun there."),
    "B04": "snippet moved with B03 (core/identifiers.py); same snippet, same bug, rerun there.",
    "B09": (
        "(snippet changed: 7a9e149 folds API ids with normalize_id; the entry now mutates that "
        "line into a fold that only trims, the same bug) "
        "killed on baca481, but first by test_api_fuzz.py::test_rows_the_api_would_refuse_never_block"
        "_dim_products after 270 s, a fuzz test of the API, not a test of the rule. Now first killed "
        "by test_rules_blind.py::test_api_items_whose_ids_differ_only_in_case_are_one_product "
        "(products_from_items keeps the first of `p1` / ` P1 `, leaves the second out by position)."),
    "B38": (
        "first caught by test_schema_evolution.py::test_dba_added_column_is_left_alone (a reload "
        "with a DBA's extra column, which also changes a quantity); aimed test added: "
        "test_rules_blind.py::test_a_reload_with_a_corrected_quantity_updates_the_sale."),
    "B40": (
        "caught by test_checks_can_fail.py::test_a_row_that_no_file_version_holds_is_removed_by_"
        "the_next_load: a reload of the same snapshot that must still act, which is the rule, "
        "though seen through a check; no new test."),
    "B19": (
        "first caught by test_landing.py::test_a_fixed_quarantined_file_replays_under_its_original_"
        "name[ventes_été.CSV] (a replay test that happens to use .CSV); aimed test added: "
        "test_rules_blind.py::test_drop_zone_csv_suffix_is_case_insensitive."),
    "B29": (
        "first caught after 345 s by test_blob_dropzone.py::test_same_content_again_is_a_duplicate_"
        "new_content_a_new_version (a duplicate, but seen through the blob drop zone); aimed test "
        "added: test_rules_blind.py::test_a_duplicate_drop_never_overwrites_a_landed_ledger_entry "
        "(a.csv landed, the same a.csv again is skipped_duplicate, the ledger entry stays landed)."),
    "B13": (
        "on baca481 first caught by test_uploads.py::test_upload_lands_and_its_ledger_entry_follows "
        "(24 s), which compares the upload's rows with the oracle, source_row included; since "
        "test_rules_blind.py, the first red test is the source_row rule "
        "(test_a_record_of_empty_fields_is_a_numbered_row_not_a_blank_line[fast_path])."),
}

SURVIVORS_PREFACE = {
    "default": "Mutations that survived a run, and what was done about each (a test that now kills "
               "it, or why it is equivalent). A survivor whose new test kills it shows as killed in "
               "the table once it has been run again.",
    "blind": (
        "How the runs went (three, each on `git archive` of the HEAD of its start; the table "
        "keeps each mutation's latest full-suite result and its commit). Run 1, baca481, the suite "
        "as it was: B01-B13, all killed (B09 and B13 by tests not aimed at their rule, below). "
        "The run was then stopped and the rest of the list read against the tests (a grep for "
        "each rule's setting, suffix or message): twelve mutations whose rule no test seemed to "
        "state got a test aimed at the rule, in sales_platform_tests/test_rules_blind.py (one in "
        "test_blob_dropzone.py), each confirmed to fail with its mutation and to pass without "
        "(`--only ... --tests sales_platform_tests/test_rules_blind.py`). Run 2, c183061: B09, "
        "B13-B33; B30, B31 and B33 SURVIVED. Run 3, 59cfa53 (tests for those three added): B03, "
        "B04, B09 (snippets moved), B30, B31, B33 again (now killed), B34-B41; B41 SURVIVED, and "
        "its test was confirmed by a narrow run. Run 4, 357595b: B42 SURVIVED, then the time box "
        "ended (no test for it yet). For the entries marked "
        "\"written ahead\", survival under the older suite is a reading of the tests, not a "
        "measurement (one costs a full 6-10 min suite run per mutation).\n\n"
        "Score. Full-suite results for 42 of the 67: 40 killed, B41 (killing test added since) "
        "and B42 (open) survived. Measured survivors on first contact: B30, B31, B33, B41, B42, "
        "so 37 of 42 caught (88 %); with the new tests 41 of 42 (98 %). Of the first 41, "
        "counting the eight written-ahead mutations that the first full run found "
        "killed by a new test (B14, B17, B20, B21, B24, B25, B27, B37) as survivors too, the "
        "suite before this work caught at least 29 of these 41 (71 %); with the new tests, "
        "41 of 41. Not run on the whole suite within the time box: B43-B49, B51, B53-B67 (B58, "
        "B63, B64, B66, B67 only through their new tests: killed); B50 and B52 ran nowhere and "
        "no longer apply (code rewritten, notes below). Continue with `python tools/mutations.py "
        "--set blind --only B43 B44 ...`: results merge into this report."),
}

NOTES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "default": (SURVIVOR_NOTES, {}),
    "blind": (BLIND_SURVIVOR_NOTES, BLIND_AIM_NOTES),
}


def interpreter_label(python: str) -> str:
    """The interpreter as the report shows it: relative to the repository when inside it."""
    path = Path(python)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="which", choices=("default", "blind"), default="default",
                        help="which mutation list: the default one or tools/blind_mutations.py")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutations")
    parser.add_argument("--tests", help="pytest arguments (one string); default: per set")
    parser.add_argument("--extra", default="",
                        help="pytest arguments added to the set's tests, e.g. an --ignore to see "
                             "whether the suite without a new test file still kills a mutation")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="interpreter that runs pytest")
    parser.add_argument("--timeout", type=float, help="seconds per mutation; default: per set")
    parser.add_argument("--report", type=Path, help="default: per set")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--baseline-note", default="",
                        help="with --no-baseline: where and how the baseline was measured instead")
    parser.add_argument("--check", action="store_true", help="only validate the mutation list")
    parser.add_argument("--keep", action="store_true", help="keep the temp copy")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report's table and survivor notes from its stored results")
    args = parser.parse_args(argv)
    blind = args.which == "blind"
    report = args.report or (BLIND_REPORT if blind else DEFAULT_REPORT)
    timeout = args.timeout or (BLIND_TIMEOUT_S if blind else TIMEOUT_S)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # cleanup runs in finally

    if args.report_only:
        rerender(report, args.which)
        print(f"report rebuilt: {report}")
        return 0
    items = mutations(args.which)
    if args.only:
        unknown = set(args.only) - {m.id for m in items}
        if unknown:
            raise SystemExit(f"unknown mutation id(s): {', '.join(sorted(unknown))}")
        items = [m for m in items if m.id in args.only]
    copy = Path(tempfile.mkdtemp(prefix="sales-platform-mutations-"))
    try:
        commit = head_commit()
        print(f"copied {copy_repo(copy, commit)} files of {commit} to {copy}")
        # the committed tree: what the run mutates; a snippet whose code was rewritten since its
        # list was written is reported and skipped (either list), its earlier result kept
        gone = validate(items, copy, gone_ok=True)
        if gone:
            print(f"not run, snippet no longer in {commit[:12]} (code rewritten): {', '.join(gone)}")
            items = [m for m in items if m.id not in gone]
        print(f"{len(items)} mutation(s) valid")
        if args.check:
            return 0
        tests = args.tests or (blind_tests(copy) if blind else DEFAULT_TESTS)
        tests = f"{tests} {args.extra}".strip()
        test_args = shlex.split(tests)
        isolation = check_isolation(args.python, copy)
        print("isolation:", *isolation, sep="\n  ")
        selection = BLIND_SELECTION if blind and not args.tests else []
        baseline = f"not run here; {args.baseline_note}" if args.baseline_note else "skipped"
        if not args.no_baseline:
            started = time.monotonic()
            code, output = run_pytest(args.python, copy, test_args, timeout)
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
                code, output = run_pytest(args.python, copy, test_args, timeout)
                if code == 3 and "INTERNALERROR" in output:
                    # pytest crashed while rendering a failure (seen: CPython 3.11 "AST constructor
                    # recursion depth mismatch" after a failure in a thread): plain tracebacks
                    retried = True
                    code, output = run_pytest(args.python, copy, [*test_args, "--tb=native"],
                                              timeout)
            finally:
                (copy / m.path).write_bytes(original)
            took = time.monotonic() - started
            result, failure = classify(code, output)
            if retried:
                failure = f"{failure} (rerun with --tb=native after a pytest INTERNALERROR)"
            outcome = Outcome(m.id, m.path, m.description, result, failure, took, code,
                              commit[:12], m.area)
            outcomes.append(outcome)
            print(f"[{n}/{len(items)}] {m.id} {result:8} {took:5.0f}s  {m.description}"
                  + (f"\n      {failure}" if failure else ""), flush=True)
            if result == "broken":
                print("\n".join(output.splitlines()[-30:]))
            # written after every mutation: a long run interrupted keeps what it measured
            merged = load_previous(report)
            merged.update({o.id: asdict(o) for o in outcomes})
            order = {x.id: i for i, x in enumerate(mutations(args.which))}
            final = sorted((o for o in merged.values() if o["id"] in order),
                           key=lambda o: order[o["id"]])
            meta = {"when": datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": commit,
                    "python": interpreter_label(args.python), "tests": tests,
                    "timeout": int(timeout), "baseline": baseline, "isolation": isolation,
                    "selection": selection, "set": args.which}
            write_report(report, final, meta)
        if head_commit() != commit:
            print(f"note: HEAD moved during the run; the run used {commit}")
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)

    print()
    print(table([asdict(o) for o in outcomes], blind=blind))
    print(f"\nscore (this run): {score_line([asdict(o) for o in outcomes])}")
    if outcomes and len(final) != len(outcomes):
        print(f"score (report, merged with earlier runs): {score_line(final)}")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
