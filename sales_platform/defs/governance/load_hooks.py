"""Hooks after a load commits: code that runs once per committed ``sales`` day, outside the load.

The extension point is :func:`load_commit_sensor`: give it a name and a function
``hook(commit: LoadCommit, data_dir: Path) -> None`` and add the returned sensor to
``governance/defs.py``. Each sensor keeps its own cursor (the storage id of the last ``sales``
materialization its hook handled), so a slow or failing hook never delays the load nor another
hook, and a hook that raises sees the same day again on the next tick, after the days it already
handled. The built-in use, :data:`load_commit_alert_sensor`, journals every commit to
``<DATA_DIR>/alerts/load_commits.jsonl`` and POSTs it to ``SALES_PLATFORM_ALERT_WEBHOOK``.

Why a plain sensor over the event log and not ``@asset_sensor``: an asset sensor sees only the
latest materialization per tick, and a range run materializes many days at once; reading every
record after the cursor gives each day its own call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from sales_platform.core import settings
from sales_platform.core.load_commits import (
    LoadCommit,
    append_commit,
    commit_from_metadata,
    post_commit,
    recorded_commit_ids,
)
from sales_platform.resources.platform import PlatformResource

SALES = dg.AssetKey("sales")
COMMITS_FILE = "alerts/load_commits.jsonl"
BATCH = 100  # records per tick: a year-long backfill drains over a few ticks, not one huge one

LoadCommitHook = Callable[[LoadCommit, Path], None]


def _commit(record: dg.EventLogRecord) -> LoadCommit | None:
    """The commit a sales materialization stands for; None for a day that loaded nothing because
    a newer run had already loaded it (``stale``), or an unpartitioned event."""
    materialization = record.asset_materialization
    if materialization is None or materialization.partition is None:
        return None
    metadata = materialization.metadata
    if getattr(metadata.get("stale"), "value", False):
        return None
    committed_at = datetime.fromtimestamp(record.timestamp, UTC).isoformat(timespec="seconds")
    return commit_from_metadata(materialization.partition, record.run_id, committed_at, metadata)


def run_hook(context: dg.SensorEvaluationContext, hook: LoadCommitHook, data_dir: Path) -> int:
    """Call ``hook`` for every sales materialization after the cursor, in commit order; return
    how many it handled. The cursor moves past each record only once its hook returned."""
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SALES, after_storage_id=after), limit=BATCH,
        ascending=True).records
    handled = 0
    for record in records:
        commit = _commit(record)
        if commit is not None:
            try:
                hook(commit, data_dir)
            except Exception as error:  # noqa: BLE001 (any hook failure: retry next tick)
                context.log.error(f"load-commit hook failed for {commit.day} (run {commit.run_id}); "
                                  f"retried next tick: {error}")
                break
            handled += 1
        context.update_cursor(str(record.storage_id))
    return handled


def load_commit_sensor(name: str, hook: LoadCommitHook, description: str = "",
                       default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    """A sensor calling ``hook`` once per committed sales day (the extension point)."""

    @dg.sensor(name=name, description=description or f"Calls {hook.__name__} once per committed "
               "sales day (after the day's load transaction committed).",
               default_status=default_status, minimum_interval_seconds=minimum_interval_seconds)
    def _sensor(context: dg.SensorEvaluationContext, platform: PlatformResource):
        handled = run_hook(context, hook, Path(platform.data_dir).expanduser().resolve())
        return dg.SkipReason(f"{hook.__name__}: {handled} committed day(s) handled")

    return _sensor


def notify_load_commit(commit: LoadCommit, data_dir: Path) -> None:
    """The built-in hook: POST the day's summary to the alert webhook (when set), then journal it.

    Journalled only after the POST succeeded, so a webhook that is down gets the same commit on
    the next tick; a commit already in the journal is neither posted nor written again."""
    path = data_dir / COMMITS_FILE
    if commit.commit_id in recorded_commit_ids(path):
        return
    webhook = settings.value(settings.ALERT_WEBHOOK)
    if webhook:
        post_commit(webhook, commit)
    append_commit(path, commit)


load_commit_alert_sensor = load_commit_sensor(
    "load_commit_alert_sensor", notify_load_commit,
    description="After each committed sales day: appends the day's counts (rows in sales, "
    "inserted, updated, rejected...) to <DATA_DIR>/alerts/load_commits.jsonl and POSTs them to "
    "SALES_PLATFORM_ALERT_WEBHOOK when set. Counts only, never ids.")
