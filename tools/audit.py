"""Known vulnerabilities in a hashed lock file: pip-audit against the lock, nothing resolved.

    python tools/audit.py requirements/dev.lock

Exit 1 when any locked version has a known vulnerability (each printed with its fix versions).
When the vulnerability service cannot be asked about some packages (unreachable, or an index
mirror it does not know), the audit is incomplete: that is a failure when
SALES_PLATFORM_REQUIRE_AUDIT=1 (the hosted CI workflow sets it) and a loud warning otherwise, so a
machine without the service can still run the suite while never reporting "no vulnerabilities".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REQUIRE = "SALES_PLATFORM_REQUIRE_AUDIT"


def run_audit(lock: Path) -> tuple[dict | None, str]:
    """pip-audit's JSON report for ``lock`` (None if it could not run) and its stderr."""
    pip_audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or "pip-audit"
    done = subprocess.run([pip_audit, "-r", str(lock), "--require-hashes", "--disable-pip",
                           "--progress-spinner", "off", "--format", "json"],
                          capture_output=True, text=True)
    try:
        return json.loads(done.stdout), done.stderr
    except ValueError:
        return None, done.stderr or done.stdout


def findings(report: dict) -> tuple[list[str], list[str], int]:
    """(vulnerabilities as lines, packages not audited, packages audited)."""
    vulnerable, skipped, audited = [], [], 0
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            skipped.append(dep["name"])
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix released"
            vulnerable.append(f"{dep['name']} {dep.get('version')}: {vuln.get('id')} (fixed in {fixes})")
    return vulnerable, skipped, audited


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    lock = Path(argv[0])
    required = os.environ.get(REQUIRE) == "1"
    report, errors = run_audit(lock)
    if report is None:
        print(f"audit: pip-audit could not check {lock}: {errors.strip()[-500:]}", file=sys.stderr)
        return 1 if required else 0
    vulnerable, skipped, audited = findings(report)
    for line in vulnerable:
        print(f"audit: VULNERABLE {line}", file=sys.stderr)
    if vulnerable:
        return 1
    if skipped:
        print(f"audit: WARNING: {len(skipped)} of {len(skipped) + audited} locked packages could not be "
              f"audited (the vulnerability service does not know them or cannot be reached), e.g. "
              f"{', '.join(skipped[:5])}: NOT verified. {REQUIRE}=1 makes this a failure.",
              file=sys.stderr)
        return 1 if required else 0
    print(f"audit: {audited} locked packages, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
