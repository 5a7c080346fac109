"""Event-driven ingestion: a drop sensor lands new files once, in bounded batches (one run per
batch); a load sensor loads their days.

State lives in the ledger (warehouse) and in run keys, not in the cursor: the cursor only caches
fingerprints, so losing it, or restarting the daemon, never processes a file twice.
"""

import hashlib
import json
import os

import dagster as dg

from sales_platform.core import settings
from sales_platform.core.blob_dropzone import scan_blobs
from sales_platform.core.dropzone import contiguous_ranges, landing_batches, scan
from sales_platform.core.intake import printable_name
from sales_platform.core.landing import name_id
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.ledger import (
    live_versions_with_content,
    pending_requests,
    versions_awaiting_load,
)
from sales_platform.defs import jobs  # the module, not its jobs: the defs loader collects each job once
from sales_platform.defs.ingestion.assets import landing_lease
from sales_platform.partitions import partition_range_tags
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.warehouse import WarehouseResource

INTERVAL_S = int(settings.env_number(settings.SENSOR_INTERVAL_S, 30, 1, integer=True))
BATCH_FILES = int(settings.env_number(settings.LANDING_BATCH_FILES,
                                      settings.DEFAULT_LANDING_BATCH_FILES, 1, integer=True))


@dg.sensor(
    job=jobs.land_files_job,
    minimum_interval_seconds=INTERVAL_S,
    description="Watches <DATA_DIR>/incoming and <DATA_DIR>/uploads: new, fully written files (by "
    "content sha256, name and mtime) are landed in batches of at most "
    "SALES_PLATFORM_LANDING_BATCH_FILES files, one landing run per batch. Temp files (*.tmp, "
    "*.partial) are ignored until renamed.",
)
def incoming_files_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource,
                          warehouse: WarehouseResource):
    cache = json.loads(context.cursor) if context.cursor else {}
    ready, unsettled, unsafe = scan(platform.areas.drop_folders, cache, settle_s=platform.settle_s)
    requests = []
    for entry in unsafe:  # a landing run moves it to quarantine/ and records why
        context.log.warning(entry.reason)
        try:
            mtime = os.lstat(entry.path).st_mtime_ns
        except FileNotFoundError:
            continue
        name = printable_name(entry.path.name)  # run config and tags hold text only
        requests.append(dg.RunRequest(
            run_key=f"unsafe:{name_id(entry.path.name)}:{mtime}",
            run_config=dg.RunConfig(ops={"landed_files": {"config": {"files": [name]}}}),
            tags={"sales_platform/file": name[:200]}))
    duplicates = live_versions_with_content(warehouse.engine(), [s.sha256 for s in ready])
    for seen in ready:
        if seen.sha256 in duplicates:
            context.log.info(f"{seen.name}: same content as already landed "
                             f"{duplicates[seen.sha256]}; it will be archived as a duplicate, "
                             "nothing reloaded")
    for key, batch in landing_batches(ready, cache, BATCH_FILES):
        names = sorted({seen.name for seen in batch})
        tags = {"sales_platform/files": str(len(batch))}
        if len(batch) == 1:  # lets an operator find the landing of a file by its name
            tags |= {"sales_platform/file": batch[0].name[:200],
                     "sales_platform/sha256": batch[0].sha256}
        requests.append(dg.RunRequest(
            run_key=retry_key(context.instance, key, platform.areas),
            run_config=dg.RunConfig(ops={"landed_files": {"config": {"files": names}}}),
            tags=tags))
    skip = None if requests else dg.SkipReason(
        f"no new files ready ({len(unsettled)} still being written)" if unsettled else "no new files")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cache), skip_reason=skip)


@dg.sensor(
    job=jobs.land_files_job,
    minimum_interval_seconds=INTERVAL_S,
    description="Watches the blob drop zone (SALES_PLATFORM_BLOB_INCOMING_PREFIX in the blob "
    "container): each settled blob upload (by name and etag) gets one landing run through the same "
    "intake as the folder; landed blobs move to <prefix>-archive/. Skips when the prefix is unset.",
)
def blob_dropzone_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource,
                         blob: BlobStorageResource):
    prefix = settings.value(settings.BLOB_INCOMING_PREFIX)
    if not prefix:
        return dg.SkipReason(f"{settings.BLOB_INCOMING_PREFIX} is not set: no blob drop zone")
    drops = scan_blobs(blob.drop_container(), prefix, platform.settle_s)
    requests = []
    for drop in drops:
        if drop.kind not in ("csv", "unsafe"):  # skipped names, or still being written
            continue
        if drop.reason:
            context.log.warning(drop.reason)
        requests.append(dg.RunRequest(
            run_key=retry_key(context.instance, drop.run_key, platform.areas),
            run_config=dg.RunConfig(ops={"landed_files": {"config": {"blobs": [drop.file_name]}}}),
            tags={"sales_platform/file": drop.file_name[:200],
                  "sales_platform/blob_etag": drop.info.etag.strip('"')[:200]}))
    unsettled = sum(d.kind == "unsettled" for d in drops)
    skip = None if requests else dg.SkipReason(
        f"no new blobs ready ({unsettled} still being written)" if unsettled else "no new blobs")
    return dg.SensorResult(run_requests=requests, skip_reason=skip)


DEAD_RUN_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def retry_key(instance: dg.DagsterInstance, run_key: str, areas: DataAreas) -> str:
    """The run key, with an attempt suffix once every earlier run of it died.

    Dagster launches a run key once, so a file still in the drop zone whose landing run died
    (killed with the daemon, a machine restart) would never land. A run counts as dead when it
    failed or was canceled, or when it is marked running but its landing lease (an flock the OS
    releases with the process) is free while its file is still waiting: that run is reported
    failed first. Landing is idempotent, so a new attempt can never land a file twice.
    """
    attempt, key = 0, run_key
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=5)
        for run in runs:
            if run.status == dg.DagsterRunStatus.STARTED and areas.lease_abandoned(
                    landing_lease(run.run_id)):
                instance.report_run_failed(run, "its process is gone: the landing lease was released "
                                                "without the file being landed")
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=5)
        if not runs or any(r.status not in DEAD_RUN_STATUSES for r in runs):
            return key
        attempt += 1
        key = f"{run_key}:attempt-{attempt}"


@dg.sensor(
    job=jobs.daily_sales_job,
    minimum_interval_seconds=INTERVAL_S,
    description="Loads the days whose landed rows changed (new or superseded file versions, "
    "conflicts that went away), one run per contiguous range of such days.",
)
def landed_days_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """One run per contiguous range of the days waiting in ``pending_days``.

    A day is waiting from the moment a file version touching it lands until a load whose snapshot
    of the landed rows is newer clears it; the run key names the range and the times of its
    requests, so the same requests are loaded once and a file landed later gets a new run.
    """
    pending = pending_requests(warehouse.engine())
    if not pending:
        return dg.SkipReason("no days waiting for a load")
    awaiting = versions_awaiting_load(warehouse.engine())
    requests = []
    for first, last in contiguous_ranges(list(pending)):
        stamps = "".join(f"{d}={pending[d]};" for d in sorted(pending) if first <= d <= last)
        digest = hashlib.sha256(stamps.encode()).hexdigest()[:16]
        files = sorted({v["file_name"] for v in awaiting if any(first <= d <= last for d in v["days"])})
        tags = {**partition_range_tags(first, last), "sales_platform/files": str(len(files))}
        if len(files) == 1:  # lets an operator find the load of a file by its name
            tags["sales_platform/file"] = files[0][:200]
        requests.append(dg.RunRequest(run_key=f"load:{first}:{last}:{digest}", tags=tags))
    return requests
