"""The definitions as a reviewed snapshot: asset keys, groups, kinds, owners, dependencies, partitions,
checks (blocking or not), jobs, sensors and schedules. An accidental change of the graph shows up here
in review; an intended one regenerates the file and its diff is read:

    .venv/bin/python -m sales_platform_tests.test_defs --write

The snapshot is computed from the loaded Definitions (what `dagster dev` and `dg` load); the
expected file is written once and reviewed, never produced by the test itself."""

from __future__ import annotations

import json
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


if __name__ == "__main__" and "--write" in sys.argv:
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
