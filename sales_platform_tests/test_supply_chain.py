"""Supply chain: installs come from hashed locks, CI audits them, no dependency is declared unused."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCKS = {"runtime": REPO / "requirements" / "runtime.lock", "dev": REPO / "requirements" / "dev.lock",
         "tools": REPO / "requirements" / "tools.lock"}
# Dependencies used without an import of their own name, and how.
INDIRECT = {"psycopg": "SQLAlchemy's postgresql+psycopg driver",
            "tabulate": "pandas' DataFrame.to_markdown",
            "dagster-webserver": "`dagster dev` (make ui)"}
IMPORT_NAMES = {"SQLAlchemy": "sqlalchemy", "Faker": "faker", "Flask": "flask",
                "openlineage-python": "openlineage", "adbc-driver-sqlite": "adbc_driver_sqlite",
                "dagster-pandas": "dagster_pandas"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", spec).group(0)


def locked(lock: Path) -> dict[str, list[str]]:
    """{name: its hashes} of a lock file (entries span backslash-continued lines)."""
    entries: dict[str, list[str]] = {}
    for entry in re.split(r"\n(?=\S)", lock.read_text()):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        first = entry.splitlines()[0]
        assert "==" in first, f"{lock.name}: not pinned: {first}"
        entries[canonical(requirement_name(first))] = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
    return entries


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_every_locked_package_is_pinned_with_hashes(kind):
    entries = locked(LOCKS[kind])
    assert entries, f"{LOCKS[kind]} is empty"
    unhashed = sorted(name for name, hashes in entries.items() if not hashes)
    assert not unhashed, f"{LOCKS[kind].name}: packages without a hash: {unhashed}"


def test_the_locks_hold_every_declared_dependency():
    runtime, dev = locked(LOCKS["runtime"]), locked(LOCKS["dev"])
    declared = [canonical(requirement_name(d)) for d in project()["dependencies"]]
    extras = project()["optional-dependencies"]
    declared_dev = [canonical(requirement_name(d)) for d in extras["dev"] + extras["azure"]]
    assert [d for d in declared if d not in runtime] == []
    assert [d for d in declared + declared_dev if d not in dev and d != "sales-platform"] == []
    assert "setuptools" in runtime and "setuptools" in dev  # the build backend, installed locked
    assert set(runtime) <= set(dev), "the dev lock must be a superset of the runtime lock"


def test_installs_take_only_the_locks():
    """Every pip install in the Makefile is of a lock with --require-hashes, or of the project itself
    without its dependencies (they came from the lock)."""
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")  # continued lines joined
    installs = re.findall(r"pip install ([^\n]*)", makefile)
    assert len(installs) >= 4
    for command in installs:
        command = " ".join(command.split())
        assert "--no-deps" in command, command
        assert "--require-hashes -r requirements/" in command or command.endswith("-e ."), command
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make audit$", ci, flags=re.M), ".ci/run must run the audit"
    assert ci.index("\nmake audit") < ci.index("\nmake test")


def test_each_runtime_dependency_is_used():
    """A declared dependency is imported somewhere in sales_platform/, or has a named indirect use."""
    source = "\n".join(p.read_text() for p in (REPO / "sales_platform").rglob("*.py"))
    unused = []
    for spec in project()["dependencies"]:
        name = requirement_name(spec)
        module = IMPORT_NAMES.get(name, canonical(name).replace("-", "_"))
        if canonical(name) in INDIRECT or name in INDIRECT:
            continue
        if not re.search(rf"^\s*(?:import|from) {re.escape(module)}\b", source, flags=re.M):
            unused.append(name)
    assert unused == []


def test_the_audit_fails_on_a_vulnerability_and_never_reports_an_unchecked_lock_as_clean(
        monkeypatch, capsys, tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import audit
    finally:
        sys.path.pop(0)
    lock = tmp_path / "x.lock"
    vulnerable = {"dependencies": [
        {"name": "flask", "version": "3.0.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["3.0.1"]}]},
        {"name": "pandas", "version": "2.2.0", "vulns": []}]}
    unknown = {"dependencies": [{"name": "pandas", "skip_reason": "Dependency not found on PyPI"},
                                {"name": "flask", "version": "3.0.0", "vulns": []}]}
    clean = {"dependencies": [{"name": "flask", "version": "3.0.0", "vulns": []}]}
    for report, required, code, said in (
            (vulnerable, False, 1, "VULNERABLE flask 3.0.0: GHSA-x (fixed in 3.0.1)"),
            (unknown, False, 0, "1 of 2 locked packages could not be audited"),
            (unknown, True, 1, "NOT verified"),
            (None, True, 1, "could not check"),
            (clean, True, 0, "1 locked packages, no known vulnerabilities")):
        monkeypatch.setattr(audit, "run_audit", lambda _lock, report=report: (report, "offline"))
        if required:
            monkeypatch.setenv(audit.REQUIRE, "1")
        else:
            monkeypatch.delenv(audit.REQUIRE, raising=False)
        assert audit.main([str(lock)]) == code
        out = capsys.readouterr()
        assert said in out.out + out.err
        if report is unknown:
            assert "no known vulnerabilities" not in out.out + out.err
