"""Committed day loads as plain records: one per ``sales`` day-materialization, counts only.

The ``on_load_commit`` hook of staged ETL tools: after a day's load transaction commits, code that
is not part of the load (alerts, downstream refreshes, chat posts) hears about it once. This module
is the Dagster-free half: the record, its JSON-lines journal (exactly once per commit id) and the
webhook POST. ``governance/load_hooks.py`` feeds it from the sensor.

A record carries counts, the day and the run id, never transaction or customer ids (plaintext or
token): a summary that leaves the platform must not become a side channel for the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sales_platform.core.journal import append_once, recorded_ids

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
    return recorded_ids(path, "commit_id")


def append_commit(path: Path, commit: LoadCommit) -> bool:
    """Append one JSON line per commit id (False when already there)."""
    return append_once(path, commit.as_dict(), "commit_id")


def post_commit(url: str, commit: LoadCommit, timeout_s: float = 5.0) -> int:
    """POST the summary; a non-2xx reply raises so the caller can retry the same commit later."""
    import requests

    from sales_platform.core import settings
    from sales_platform.core.urls import require_secure

    url = require_secure(url, settings.ALERT_WEBHOOK).url  # no redirects: see alerts.post_alert
    reply = requests.post(url, json=commit.as_dict(), timeout=timeout_s, allow_redirects=False)
    reply.raise_for_status()
    return reply.status_code
