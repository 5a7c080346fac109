"""OpenLineage run events from finished Dagster runs (run-status sensors, off the hot path).

When a run succeeds or fails, its event log says, per asset partition, when the step started and
whether the asset materialized; each becomes a START and a COMPLETE/FAIL event (``openlineage.py``)
sent to ``SALES_PLATFORM_OPENLINEAGE_URL`` when set, else appended to
``<DATA_DIR>/lineage/openlineage.jsonl``. The assets themselves never wait for a lineage backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from sales_platform.core import settings
from sales_platform.core.redact import redact_text
from sales_platform.defs.governance.alerts import _root_message, _secrets
from sales_platform.defs.governance.graph import lineage_nodes_from_defs
from sales_platform.defs.governance.lineage import LineageNode
from sales_platform.defs.governance.openlineage import AssetOutcome, client_for, run_events
from sales_platform.resources.platform import PlatformResource

if TYPE_CHECKING:
    from openlineage.client.event_v2 import RunEvent

ET = dg.DagsterEventType
_Key = tuple[str, str | None]  # (asset key, partition)


def _planned(event: dg.DagsterEvent) -> list[_Key]:
    data = event.event_specific_data
    key = data.asset_key.to_user_string()
    if getattr(data, "partitions_subset", None) is not None:  # a range planned as one event
        return [(key, p) for p in data.partitions_subset.get_partition_keys()]
    return [(key, data.partition)]


def outcomes_of_run(instance: dg.DagsterInstance, run_id: str) -> list[AssetOutcome]:
    """Per asset partition the run planned or materialized: materialized -> succeeded; planned in
    a step that failed -> failed with the step's root error; never started (skipped) -> left out."""
    started: dict[str, float] = {}
    failed: dict[str, tuple[float, str]] = {}
    step_of: dict[_Key, str] = {}
    done: dict[_Key, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == ET.STEP_START and event.step_key:
            started[event.step_key] = record.timestamp  # the last attempt's start wins
        elif kind == ET.STEP_FAILURE and event.step_key:
            error = event.event_specific_data.error if event.event_specific_data else None
            failed[event.step_key] = (record.timestamp, _root_message(error))
        elif kind == ET.ASSET_MATERIALIZATION_PLANNED and event.step_key:
            for key in _planned(event):
                step_of[key] = event.step_key
        elif kind == ET.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            key = (materialization.asset_key.to_user_string(), materialization.partition)
            done[key] = record.timestamp
            if event.step_key:
                step_of.setdefault(key, event.step_key)
    outcomes = []
    for (asset, partition), step in step_of.items():
        begin = started.get(step)
        if (asset, partition) in done:
            end = done[(asset, partition)]
            outcomes.append(AssetOutcome(asset, run_id, partition, begin or end, end, True))
        elif step in failed and begin is not None:
            end, error = failed[step]
            outcomes.append(AssetOutcome(asset, run_id, partition, begin, end, False,
                                         redact_text(error, _secrets())))
    return outcomes


def events_for_run(instance: dg.DagsterInstance, run_id: str,
                   nodes: dict[str, LineageNode]) -> list[RunEvent]:
    events: list[RunEvent] = []
    for outcome in outcomes_of_run(instance, run_id):
        node = nodes.get(outcome.asset_key) or LineageNode(key=outcome.asset_key)
        events += run_events(node, outcome)
    return events


def emit_for_run(context: dg.RunStatusSensorContext, platform: PlatformResource) -> int:
    """Send every event of the context's run; return how many."""
    if context.repository_def is None:
        raise RuntimeError("OpenLineage sensor evaluated without its code location's definitions")
    nodes = {n.key: n for n in lineage_nodes_from_defs(context.repository_def)}
    events = events_for_run(context.instance, context.dagster_run.run_id, nodes)
    client = client_for(Path(platform.data_dir).expanduser().resolve(),
                        settings.value(settings.OPENLINEAGE_URL) or None)
    for event in events:
        client.emit(event)
    context.log.info(f"run {context.dagster_run.run_id}: {len(events)} OpenLineage event(s) sent")
    return len(events)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, name="openlineage_success_sensor",
    description="OpenLineage START/COMPLETE events for every asset partition a successful run "
    "materialized: to SALES_PLATFORM_OPENLINEAGE_URL when set, else <DATA_DIR>/lineage/"
    "openlineage.jsonl.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def openlineage_success_sensor(context: dg.RunStatusSensorContext, platform: PlatformResource):
    emit_for_run(context, platform)


@dg.run_failure_sensor(
    name="openlineage_failure_sensor",
    description="OpenLineage events for a failed run: COMPLETE for what it materialized, FAIL "
    "(with the error) for the assets of its failed steps.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def openlineage_failure_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource):
    emit_for_run(context, platform)
