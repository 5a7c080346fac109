"""raw_sales: the drop zone landed, split into sealed per-day fragments."""


import time

import dagster as dg

from sales_platform.checks import per_day_evaluations
from sales_platform.core import settings
from sales_platform.core.blob_dropzone import BlobIntake
from sales_platform.core.intake import WAITING, FileOutcome, Intake
from sales_platform.core.warehouse.ledger import QUARANTINED, landed_rows
from sales_platform.metadata import counts_table, rate
from sales_platform.partitions import daily_backfill_policy, daily_partitions
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_version, versioned_asset

no_quarantined_files = dg.AssetCheckSpec(
    "no_quarantined_files",
    asset="raw_sales",
    description="Every file dropped in this run could be read (unreadable files are quarantined).",
    partitions_def=daily_partitions,
)


def outcome_lines(outcomes: list[FileOutcome]) -> dg.MetadataValue:
    lines = ["| file | status | rows read | landed | rejected | days | error |",
             "|---|---|---:|---:|---:|---:|---|"]
    for o in outcomes:
        lines.append(f"| {o.file_name} | {o.status} | {o.rows_read} | {o.rows_landed} | "
                     f"{o.rows_rejected} | {len(o.rows_by_day)} | {o.error or ''} |")
    return dg.MetadataValue.md("\n".join(lines) if outcomes else "_no new files_")


def _log_outcomes(context: dg.AssetExecutionContext, outcomes: list[FileOutcome]) -> None:
    for o in outcomes:
        if o.status == QUARANTINED:
            context.log.error(f"file quarantined: {o.error}")
        elif o.status == WAITING:
            context.log.warning(f"not taken yet: {o.error}")
        elif o.error:
            context.log.info(o.error)


def landing_lease(run_id: str) -> str:
    return f"landing-run-{run_id}"


class LandingConfig(dg.Config):
    files: list[str] = []  # names in incoming/ to land; empty: every ready file
    blobs: list[str] = []  # names in the blob drop zone to land instead (the blob sensor's runs)


def landing_intake(context: dg.AssetExecutionContext, platform: PlatformResource, engine,
                   blob: BlobStorageResource) -> Intake:
    """The intake, naming this asset, its code version and run in the ledgers it writes."""
    intake = platform.intake(engine, stage_version(context), blob.put_file)
    intake.stage, intake.run_id = context.asset_key.to_user_string(), context.run.run_id
    return intake


def blob_drop_zone(intake: Intake, blob: BlobStorageResource) -> BlobIntake:
    """The blob drop zone under SALES_PLATFORM_BLOB_INCOMING_PREFIX, landing through the same
    intake as the folder."""
    prefix = settings.value(settings.BLOB_INCOMING_PREFIX)
    if not prefix:
        raise settings.SettingError(f"{settings.BLOB_INCOMING_PREFIX} is not set: no blob drop zone")
    return BlobIntake(intake, blob.drop_container(), prefix)


@versioned_asset(
    covers=(Intake,),  # the landing code it runs through platform.intake()
    metadata={"lineage/reads": ["file:incoming/*.csv", "blob:incoming"],
              "lineage/writes": ["file:staging/landed", "file:archive", "file:quarantine",
                                 "table:file_ledger", "table:file_events", "table:file_day_counts",
                                 "table:pending_days", "table:sales_rejects", "blob:archive",
                                 "blob:incoming-archive"]},
    group_name="ingestion",
    kinds={"csv"},
    owners=["team:data-platform"],
    pool="landing",
    description="Files dropped in <DATA_DIR>/incoming (or blobs in the blob drop zone, "
    "SALES_PLATFORM_BLOB_INCOMING_PREFIX), landed: fingerprinted (sha256), split by "
    "sale date into sealed fragments, recorded in the file_ledger table and archived encrypted; "
    "unreadable files go to quarantine/ with a reason file. The drop sensor runs this per file.",
)
def landed_files(context: dg.AssetExecutionContext, config: LandingConfig,
                 platform: PlatformResource, warehouse: WarehouseResource,
                 blob: BlobStorageResource) -> dg.MaterializeResult:
    started = time.monotonic()
    intake = landing_intake(context, platform, warehouse.engine(), blob)
    with platform.areas.lease(landing_lease(context.run.run_id)):  # lets the sensor see a dead run
        if config.blobs:
            outcomes = blob_drop_zone(intake, blob).run(only=set(config.blobs))
        else:
            outcomes = intake.run(only=set(config.files) or None)
    _log_outcomes(context, outcomes)
    return dg.MaterializeResult(metadata={
        "files": outcome_lines(outcomes),
        "rows_read": sum(o.rows_read for o in outcomes),
        "days_touched": dg.MetadataValue.json(sorted({d for o in outcomes for d in o.rows_by_day})),
        "duration_s": round(time.monotonic() - started, 3),
    })


@versioned_asset(
    covers=(Intake,),  # the landing code it runs through platform.intake()
    metadata={"lineage/reads": ["file:incoming/*.csv"],
              "lineage/writes": ["file:staging/landed", "table:file_ledger", "table:file_events",
                                 "table:file_day_counts", "table:pending_days",
                                 "table:sales_rejects"]},
    partitions_def=daily_partitions,
    deps=[landed_files],
    backfill_policy=daily_backfill_policy,
    group_name="ingestion",
    kinds={"csv", "parquet"},
    owners=["team:data-platform"],
    tags={"layer": "raw"},
    check_specs=[no_quarantined_files],
    description="Rows of the sale day from every CSV dropped so far. New files in "
    "<DATA_DIR>/incoming are landed first: fingerprinted, split by sale date into sealed "
    "fragments, recorded in the file_ledger table and archived (encrypted); unreadable files "
    "go to quarantine/ with a reason file.",
)
def raw_sales(context: dg.AssetExecutionContext, platform: PlatformResource,
              warehouse: WarehouseResource, blob: BlobStorageResource):
    started = time.monotonic()
    engine = warehouse.engine()
    outcomes = landing_intake(context, platform, engine, blob).run()
    _log_outcomes(context, outcomes)
    quarantined = [o for o in outcomes if o.status == QUARANTINED]
    with engine.connect() as conn:
        per_day = {day: sum(landed_rows(conn, day).values()) for day in context.partition_keys}
    rows = sum(per_day.values())
    yield dg.MaterializeResult(
        metadata={
            "rows": rows,
            "rows_by_day": counts_table(per_day, "sale date"),
            "files_landed_this_run": outcome_lines(outcomes),
            "duration_s": round(time.monotonic() - started, 3),
            "rows_per_s": rate(sum(o.rows_read for o in outcomes), time.monotonic() - started),
        }
    )
    yield dg.AssetCheckResult(
        check_name="no_quarantined_files",
        passed=not quarantined,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": dg.MetadataValue.md(
            "\n".join(f"- {o.error}" for o in quarantined) or "_none_")},
    )
    # Quarantined files have no sale date: their verdict holds for every day of the run.
    yield from per_day_evaluations(context, "no_quarantined_files",
                                   context.partition_keys if quarantined else (),
                                   severity=dg.AssetCheckSeverity.WARN)
