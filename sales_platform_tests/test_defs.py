"""The definitions as a reviewed snapshot: asset keys, groups, kinds, owners, dependencies, partitions,
checks (blocking or not), jobs, sensors and schedules. An accidental change of the graph shows up here
in review; an intended one regenerates the file and its diff is read:

    .venv/bin/python -m sales_platform_tests.test_defs --write

The snapshot is computed from the loaded Definitions (what `dagster dev` and `dg` load); the
expected file is written once and reviewed, never produced by the test itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "fixtures" / "defs_snapshot.json"


def snapshot() -> dict:
    from sales_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(str(o) for o in node.owners),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "checks": sorted(
                f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in defs.jobs if not job.name.startswith("__")),
        "sensors": sorted(sensor.name for sensor in defs.sensors),
        "schedules": sorted(schedule.name for schedule in defs.schedules),
        "resources": sorted(defs.resources),
    }


def test_definitions_match_the_reviewed_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    actual = snapshot()
    assert actual == expected, "definitions changed: if on purpose, regenerate (see the module docstring)"


def dg_command(*args: str) -> subprocess.CompletedProcess:
    """`dg` from this virtualenv, in the project root (it reads [tool.dg] in pyproject.toml)."""
    venv = Path(sys.prefix)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "NO_COLOR": "1"}
    return subprocess.run([str(venv / "bin" / "dg"), *args], cwd=SNAPSHOT.parent.parent.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dg_check_defs_passes():
    result = dg_command("check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_lists_the_snapshot_definitions():
    result = dg_command("list", "defs", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    expected = json.loads(SNAPSHOT.read_text())
    assert sorted(a["asset_key"] for a in listed["assets"]) == sorted(expected["assets"])
    assert sorted(j["name"] for j in listed["jobs"]) == expected["jobs"]
    assert sorted(s["name"] for s in listed["sensors"]) == expected["sensors"]
    assert sorted(s["name"] for s in listed["schedules"]) == expected["schedules"]


if __name__ == "__main__" and "--write" in sys.argv:
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
