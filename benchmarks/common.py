"""Shared helpers of the benchmark scripts: data generation, isolated subprocess runs, machine facts,
PostgreSQL scratch databases and table printing.

Every measured path runs in a fresh subprocess started by ``run_isolated``: its peak RSS is the
child's own high-water mark (VmHWM, reported by the child at exit; ``ru_maxrss`` from ``os.wait4`` is
kept for reference but counts the parent's memory copied at fork), so paths do not see each other's
memory, and warm caches or imports of one path never help another.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable
DEFAULT_DAY = date(2024, 3, 1)
DEFAULT_SEED = 42
DEFAULT_DEFECT_RATE = 0.01


# --- data ----------------------------------------------------------------------------------------

def generate_day(folder: Path, rows: int, day: date = DEFAULT_DAY, seed: int = DEFAULT_SEED,
                 defect_rate: float = DEFAULT_DEFECT_RATE) -> tuple[Path, Path, float]:
    """One day of ``rows`` rows plus the product catalogue; returns (csv, catalogue, seconds)."""
    from sales_platform.core.generator import GeneratorSettings, SalesGenerator, write_catalogue

    started = time.perf_counter()
    generator = SalesGenerator(GeneratorSettings(seed=seed, defect_rate=defect_rate))
    catalogue = write_catalogue(generator.catalogue, folder / "catalogue" / "products.csv",
                                datetime.combine(day, datetime.min.time()))
    csv_path = generator.write_day(folder / "source", day, rows)
    return csv_path, catalogue, time.perf_counter() - started


def add_range_arguments(parser, days: int, rows_per_day: int = 3000) -> None:
    """--days, --rows-per-day and --start: the range of generated days a range benchmark uses."""
    parser.add_argument("--days", type=int, default=days)
    parser.add_argument("--rows-per-day", type=int, default=rows_per_day)
    parser.add_argument("--start", default="2024-01-01")


def generate_days(data_dir: Path, key: str, start: str, days: int, rows_per_day: int) -> None:
    """The CLI's generator writes ``days`` daily files (1 % defects) into ``data_dir``'s drop zone."""
    subprocess.run([str(Path(PYTHON).parent / "sales-platform"), "generate", "--start", start,
                    "--days", str(days), "--rows-per-day", str(rows_per_day), "--defect-rate",
                    str(DEFAULT_DEFECT_RATE)],
                   env={**os.environ, "SALES_PLATFORM_DATA_DIR": str(data_dir),
                        "SALES_PLATFORM_ENCRYPTION_KEY": key}, check=True, stdout=subprocess.DEVNULL)


def remove_sqlite(path: Path) -> None:
    """A SQLite database file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def scratch_dir(prefix: str, base: str | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# --- a frozen copy of the code under test ---------------------------------------------------------

CODE_ENV = "BENCH_CODE_ROOT"
_IMPORT_CHECK = ("import sales_platform.core.intake, sales_platform.core.pipeline, "
                 "sales_platform.core.warehouse.loading, sales_platform.core.warehouse.aggregates, "
                 "sales_platform.core.products, sales_platform.core.generator")


def _tree_mtime(root: Path) -> float:
    return max((p.stat().st_mtime for p in root.rglob("*.py")), default=0.0)


def snapshot_code(work: Path, max_wait_s: float = 600, quiet_s: float = 15) -> Path:
    """Copy sales_platform/ and pyproject.toml into ``work`` once it imports and is unchanged for ``quiet_s``.

    The work tree is shared with other sessions that may be editing it; every path of one run must
    measure the same code, so the children import this copy (PYTHONPATH / BENCH_CODE_ROOT; the
    editable install's finder comes after sys.path, so the copy wins)."""
    source = PROJECT_ROOT / "sales_platform"
    deadline = time.monotonic() + max_wait_s
    while True:
        settled = time.time() - _tree_mtime(source) >= quiet_s
        target = work / "code"
        remove_tree(target)
        shutil.copytree(source, target / "sales_platform",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # the definitions load the defs/ folder through the project's [tool.dg] settings
        shutil.copy(PROJECT_ROOT / "pyproject.toml", target / "pyproject.toml")
        check = subprocess.run([PYTHON, "-c", _IMPORT_CHECK], cwd=target, capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": str(target)})
        if settled and check.returncode == 0 and _tree_mtime(source) <= _tree_mtime(target) + 1e-6 \
                and time.time() - _tree_mtime(source) >= quiet_s:
            return target
        if time.monotonic() > deadline:
            raise SystemExit("the sales_platform tree did not settle into an importable state: "
                             + (check.stderr.strip().splitlines() or ["still changing"])[-1])
        print("  waiting for the shared work tree to settle (being edited or not importable)",
              flush=True)
        time.sleep(quiet_s)


def code_env(code_root: Path | None) -> dict[str, str]:
    return {} if code_root is None else {"PYTHONPATH": str(code_root), CODE_ENV: str(code_root)}


# --- isolated runs -------------------------------------------------------------------------------

@dataclass
class ChildRun:
    ok: bool
    returncode: int
    wall_s: float  # interpreter start to exit, as the parent saw it
    peak_rss_mb: float  # the child's peak RSS since exec (its VmHWM; see run_isolated)
    result: dict = field(default_factory=dict)  # what the child wrote to its --out file
    stderr_tail: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ru_maxrss_mb: float = 0.0  # from os.wait4: inflated by the parent's RSS at fork, kept for reference
    child_cpu_s: float = 0.0  # user + system CPU of the child itself
    other_cpu_pct: float = 0.0  # machine-wide busy CPU not spent by the child, % of all cores

    def noise(self) -> dict:
        return {"loadavg_before": self.load_before, "loadavg_after": self.load_after,
                "child_cpu_s": round(self.child_cpu_s, 2),
                "other_cpu_pct_of_machine": round(self.other_cpu_pct, 1)}


def _busy_seconds() -> float:
    """Machine-wide non-idle CPU seconds since boot (from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_isolated(args: list[str], env: dict[str, str] | None = None, timeout: float = 7200,
                 cwd: Path = PROJECT_ROOT) -> ChildRun:
    """Run ``python <args> --out <file>`` in a fresh process; the child writes its JSON result."""
    out = Path(tempfile.mkstemp(prefix="bench-child-", suffix=".json")[1])
    err = Path(tempfile.mkstemp(prefix="bench-child-", suffix=".err")[1])
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    load_before = os.getloadavg()
    busy_before = _busy_seconds()
    started = time.perf_counter()
    with open(err, "wb") as err_handle:
        proc = subprocess.Popen([PYTHON, *args, "--out", str(out)], cwd=cwd, env=full_env,
                                stdout=err_handle, stderr=subprocess.STDOUT)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    busy = _busy_seconds() - busy_before
    child_cpu = usage.ru_utime + usage.ru_stime
    other_pct = max(0.0, busy - child_cpu) / (wall * (os.cpu_count() or 1)) * 100 if wall else 0.0
    try:
        text = out.read_text()
        result = json.loads(text) if text.strip() else {}
    except (OSError, json.JSONDecodeError):
        result = {}
    tail = err.read_text(errors="replace")[-4000:]
    out.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    # The child's own VmHWM when it reports one: ru_maxrss from wait4 also counts the parent's
    # address space copied at fork (Linux folds the pre-exec mm into it at exec).
    peak = result.get("vmhwm_mb") or usage.ru_maxrss / 1024
    return ChildRun(ok=proc.returncode == 0 and bool(result), returncode=proc.returncode,
                    wall_s=wall, peak_rss_mb=peak, result=result, ru_maxrss_mb=usage.ru_maxrss / 1024,
                    stderr_tail=tail, load_before=load_before, load_after=os.getloadavg(),
                    child_cpu_s=child_cpu, other_cpu_pct=other_pct)


def machine_busy_pct(sample_s: float = 2.0) -> float:
    """Share of all cores busy over a short sample (everything on the machine)."""
    before = _busy_seconds()
    time.sleep(sample_s)
    return (_busy_seconds() - before) / (sample_s * (os.cpu_count() or 1)) * 100


def wait_for_quiet(max_wait_s: float, threshold_pct: float = 30.0) -> float:
    """Wait (at most ``max_wait_s``) until the machine is below ``threshold_pct`` busy.

    The machine is shared: this does not make the numbers clean, it only avoids starting a
    measurement in the middle of a burst. Returns the last busy % seen."""
    deadline = time.monotonic() + max_wait_s
    busy = machine_busy_pct(1.0)
    while busy > threshold_pct and time.monotonic() < deadline:
        busy = machine_busy_pct(2.0)
    return busy


# --- PostgreSQL ----------------------------------------------------------------------------------

def pg_reachable(url: str) -> tuple[bool, str]:
    try:
        import psycopg

        with psycopg.connect(_libpq(url), connect_timeout=3) as conn:
            version = conn.execute("show server_version").fetchone()[0]
        return True, version
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        return False, f"{type(exc).__name__}: {exc}".strip()


def _libpq(url: str) -> str:
    """A libpq conninfo from a SQLAlchemy URL (postgresql+psycopg://...)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.host or "127.0.0.1", "port": u.port or 5432, "dbname": u.database or "postgres",
             "user": u.username or "postgres"}
    if u.password:
        parts["password"] = u.password
    return " ".join(f"{k}={v}" for k, v in parts.items())


class ScratchPgDatabase:
    """A fresh database created for one path and dropped afterwards (``with`` block)."""

    def __init__(self, admin_url: str, label: str) -> None:
        from sqlalchemy.engine import make_url

        self.admin_url = admin_url
        self.name = f"spbench_{label}_{uuid.uuid4().hex[:8]}".lower()
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> ScratchPgDatabase:
        import psycopg

        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        import psycopg

        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- machine facts -------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", None)
    except Exception:  # noqa: BLE001
        return None


def source_fingerprint(code_root: Path | None = None) -> dict:
    """sha256 over sales_platform/core/**/*.py, so a result can be tied to the code it measured
    (the work tree may change between runs)."""
    import hashlib

    root = code_root or PROJECT_ROOT
    digest = hashlib.sha256()
    files = sorted((root / "sales_platform" / "core").rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    newest = max((p.stat().st_mtime for p in files), default=0)
    return {"core_sha256": digest.hexdigest()[:16], "core_files": len(files),
            "core_newest_mtime": datetime.fromtimestamp(newest).isoformat(timespec="seconds")}


def machine_facts(pg_version: str | None = None, code_root: Path | None = None) -> dict:
    import pandas
    import pyarrow

    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": _version("numpy"),
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
        "duckdb": _version("duckdb"),
        "dlt": _version("dlt"),
        "cryptography": _version("cryptography"),
        "postgresql_server": pg_version,
        "loadavg_at_start": os.getloadavg(),
        "timestamp": datetime.now().isoformat(timespec="seconds"),
        "source": {**source_fingerprint(code_root), "code_root": "frozen copy" if code_root else "work tree"},
    }


# --- output --------------------------------------------------------------------------------------

def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain fixed-width text table (first column left aligned, the others right aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(r, widths, align, strict=False))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def fmt_int(value) -> str:
    return "-" if value is None else f"{int(round(value)):,}"


def fmt_float(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
