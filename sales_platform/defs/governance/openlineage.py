"""Lineage in today's standard: OpenLineage run events for each asset materialization.

Pure (no Dagster), like ``lineage.py``: an :class:`AssetOutcome` (one asset, one partition, one
Dagster run, how it ended) and the asset's :class:`LineageNode` become a START and a COMPLETE or
FAIL ``RunEvent``. The job is the asset key; inputs are the upstream assets plus its
``lineage/reads``, outputs the asset itself plus its ``lineage/writes`` - the same datasets the
Atlas export shows. ``openlineage_sensors.py`` reads the outcomes from the event log.

Dataset names: namespace ``sales_platform.<kind>`` (``asset``, ``warehouse``, ``files``,
``blob``) and the declared path as name, e.g. ``sales_platform.warehouse`` / ``sales``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from sales_platform.core import settings
from sales_platform.core.urls import require_secure
from sales_platform.defs.governance.lineage import PLATFORM, Dataset, LineageNode, process_io

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, RunEvent

# openlineage-python is imported where events are built (~0.6 s): every process that loads the
# code location would pay it, and only the run-status sensors build events.

EVENTS_FILE = "lineage/openlineage.jsonl"
# OpenLineage names datasets by (namespace, name); ours follow the Atlas qualified-name prefixes.
NAMESPACES = {"asset": f"{PLATFORM}.asset", "table": f"{PLATFORM}.warehouse",
              "file": f"{PLATFORM}.files", "blob": f"{PLATFORM}.blob"}
# uuid5 namespace for OpenLineage run ids: the same (Dagster run, asset, partition) always gets
# the same runId, so START and COMPLETE pair up even when written by different sensor ticks.
RUN_ID_NAMESPACE = uuid.UUID("5a1e5e11-0000-4000-8000-6f70656e6c69")


def _producer() -> str:
    try:
        release = version("sales_platform")
    except PackageNotFoundError:  # running from a source tree that was not installed
        release = "0"
    return f"urn:{PLATFORM}:{release}"


PRODUCER = _producer()


@dataclass(frozen=True)
class AssetOutcome:
    """How one asset partition fared in one Dagster run (times are POSIX seconds)."""

    asset_key: str
    dagster_run_id: str
    partition: str | None
    started_at: float
    ended_at: float
    succeeded: bool
    error: str = ""


def ol_dataset(ref: Dataset) -> tuple[str, str]:
    """(namespace, name) of a declared dataset."""
    return NAMESPACES[ref.scheme], ref.path


def ol_run_id(outcome: AssetOutcome) -> str:
    return str(uuid.uuid5(RUN_ID_NAMESPACE, "/".join(
        (outcome.dagster_run_id, outcome.asset_key, outcome.partition or ""))))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _nominal_time(partition: str | None) -> dict:
    """A daily partition is the run's nominal window [day, next day); other keys have none."""
    try:
        day = date.fromisoformat(partition or "")
    except ValueError:
        return {}
    from openlineage.client.facet_v2 import nominal_time_run

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {"nominalTime": nominal_time_run.NominalTimeRunFacet(
        nominalStartTime=_iso(start.timestamp()),
        nominalEndTime=_iso((start + timedelta(days=1)).timestamp()), producer=PRODUCER)}


def _job(node: LineageNode, namespace: str) -> Job:
    from openlineage.client.event_v2 import Job
    from openlineage.client.facet_v2 import documentation_job, job_type_job

    facets: dict = {"jobType": job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="DAGSTER", jobType="ASSET", producer=PRODUCER)}
    if node.description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(
            description=node.description, producer=PRODUCER)
    return Job(namespace=namespace, name=node.key, facets=facets)


def run_events(node: LineageNode, outcome: AssetOutcome, namespace: str = PLATFORM) -> list[RunEvent]:
    """START then COMPLETE (or FAIL with the error) for one asset partition of one Dagster run."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run

    inputs, outputs = process_io(node)
    job = _job(node, namespace)
    ins = [InputDataset(*ol_dataset(d)) for d in inputs]
    outs = [OutputDataset(*ol_dataset(d)) for d in outputs]
    run_facets = _nominal_time(outcome.partition)
    start = RunEvent(eventType=RunState.START, eventTime=_iso(outcome.started_at),
                     run=Run(runId=ol_run_id(outcome), facets=run_facets), job=job,
                     inputs=ins, outputs=outs, producer=PRODUCER)
    end_facets = dict(run_facets)
    if not outcome.succeeded:
        end_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=outcome.error or "step failed", programmingLanguage="PYTHON", producer=PRODUCER)
    end = RunEvent(eventType=RunState.COMPLETE if outcome.succeeded else RunState.FAIL,
                   eventTime=_iso(outcome.ended_at),
                   run=Run(runId=ol_run_id(outcome), facets=end_facets), job=job,
                   inputs=ins, outputs=outs, producer=PRODUCER)
    return [start, end]


def client_for(data_dir: Path, url: str | None = None) -> OpenLineageClient:
    """HTTP transport to ``url`` (an OpenLineage API such as Marquez: events go to
    ``<url>/api/v1/lineage``) when given, else one JSON event per line in
    ``<data_dir>/lineage/openlineage.jsonl``."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    if url:
        url = require_secure(url, settings.OPENLINEAGE_URL).url  # the platform's one URL policy
        return OpenLineageClient(transport=HttpTransport(HttpConfig(url=url, timeout=10.0)))
    path = Path(data_dir) / EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
