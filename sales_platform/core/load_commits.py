"""Committed day loads as plain records: one per ``sales`` day-materialization, counts only.

The ``on_load_commit`` hook of staged ETL tools: after a day's load transaction commits, code that
is not part of the load (alerts, downstream refreshes, chat posts) hears about it once. This module
is the Dagster-free half: the record, its JSON-lines journal (exactly once per commit id) and the
webhook POST. ``governance/load_hooks.py`` feeds it from the sensor.

A record carries counts, the day and the run id, never transaction or customer ids (plaintext or
token): a summary that leaves the platform must not become a side channel for the data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# sales materialization metadata key -> LoadCommit field (per-partition metadata of the asset)
COUNT_FIELDS: dict[str, str] = {
    "dagster/row_count": "rows_in_sales", "landed": "rows_landed", "staged": "rows_staged",
    "inserted": "inserted", "updated": "updated", "unchanged": "unchanged", "deleted": "deleted",
    "rejected": "rejected",
}


@dataclass(frozen=True)
class LoadCommit:
    """What one committed day load did. ``commit_id`` (run id + day) is unique per
    day-materialization: receivers can use it to drop a repeated delivery."""

    commit_id: str
    day: str
    run_id: str
    committed_at: str
    rows_in_sales: int
    rows_landed: int
    rows_staged: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    rejected: int

    def as_dict(self) -> dict:
        return {"event": "sales_day_committed", **asdict(self)}


def commit_from_metadata(day: str, run_id: str, committed_at: str,
                         metadata: Mapping[str, object]) -> LoadCommit:
    """A record from a day's materialization metadata (values or MetadataValue wrappers).

    Raises ValueError naming the day and the key when a count is missing or not a whole number,
    so a renamed metadata key fails the hook loudly instead of reporting zeros."""
    counts: dict[str, int] = {}
    for key, field_name in COUNT_FIELDS.items():
        value = metadata.get(key)
        value = getattr(value, "value", value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"sales materialization of {day} (run {run_id}): metadata {key!r} "
                             f"is {value!r}, not a whole number")
        counts[field_name] = value
    return LoadCommit(commit_id=f"{run_id}:{day}", day=day, run_id=run_id,
                      committed_at=committed_at, **counts)


def recorded_commit_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)["commit_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line does not stop the journal
    return ids


def append_commit(path: Path, commit: LoadCommit) -> bool:
    """Append one JSON line per commit id (False when already there); O_APPEND keeps concurrent
    writers' lines whole."""
    if commit.commit_id in recorded_commit_ids(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(commit.as_dict(), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return True


def post_commit(url: str, commit: LoadCommit, timeout_s: float = 5.0) -> int:
    """POST the summary; a non-2xx reply raises so the caller can retry the same commit later."""
    import requests

    reply = requests.post(url, json=commit.as_dict(), timeout=timeout_s)
    reply.raise_for_status()
    return reply.status_code
