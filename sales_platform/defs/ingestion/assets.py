"""raw_sales: the drop zone landed, split into sealed per-day fragments."""


import time

import dagster as dg

from sales_platform.checks import day_verdict
from sales_platform.core import settings
from sales_platform.core.blob_dropzone import BlobIntake
from sales_platform.core.intake import WAITING, FileOutcome, Intake
from sales_platform.core.warehouse.ledger import (
    QUARANTINED,
    blocked_at_landing,
    landed_rows,
    quarantined_files,
)
from sales_platform.defs.governance.alerts import report_blocked_file
from sales_platform.partitions import daily_backfill_policy, daily_partitions
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_code_version, stage_version, versioned_asset

QUARANTINE_CHECK = "no_quarantined_files"
QUARANTINE_DESCRIPTION = ("Warns while any dropped file sits in quarantine (unreadable, unsafe or "
                          "refused at landing), naming each file and its reason; a corrected drop "
                          "of the same name, or `sales-platform replay`, clears it.")
landing_quarantine_check = dg.AssetCheckSpec(QUARANTINE_CHECK, asset="landed_files",
                                             description=QUARANTINE_DESCRIPTION)
raw_quarantine_check = dg.AssetCheckSpec(QUARANTINE_CHECK, asset="raw_sales",
                                         description=QUARANTINE_DESCRIPTION,
                                         partitions_def=daily_partitions)
LANDING_RATE_CHECK = "landing_reject_rate_below_threshold"
LANDING_RATE_DESCRIPTION = (
    "Fails while a current file version is blocked at landing: more of its rows rejected at "
    "landing (no valid sale day, malformed) than SALES_PLATFORM_MAX_REJECT_RATE, the same limit "
    "and comparison as a day's reject rate. Its rejects are in sales_rejects, its other rows are "
    "not loaded; a corrected version of the same name, or a raised limit and a re-run of its days, "
    "clears it. On raw_sales: the days the version has rows on (every day when it has none).")
landing_rate_check = dg.AssetCheckSpec(LANDING_RATE_CHECK, asset="landed_files",
                                       description=LANDING_RATE_DESCRIPTION)
raw_landing_rate_check = dg.AssetCheckSpec(LANDING_RATE_CHECK, asset="raw_sales",
                                           description=LANDING_RATE_DESCRIPTION,
                                           partitions_def=daily_partitions)


def quarantine_evidence(engine) -> tuple[bool, dict]:
    """Whether no file is in quarantine, and the files with their reasons as evidence."""
    with engine.connect() as conn:
        files = quarantined_files(conn)
    lines = [f"- {f['file_name']} ({f['sha256'][:12]}): {(f['error'] or 'no reason recorded')}"
             for f in files]
    return not files, {"quarantined": len(files),
                       "files": dg.MetadataValue.md("\n".join(lines) or "_none_")}


def landing_block_evidence(engine, day: str | None = None) -> tuple[bool, dict]:
    """Whether no version blocked at landing concerns ``day`` (any day: None), and the blocked
    versions' ledger lines as evidence."""
    with engine.connect() as conn:
        blocked = [b for b in blocked_at_landing(conn)
                   if day is None or not b["days"] or day in b["days"]]
    lines = [f"- {b['detail']} ({b['sha256'][:12]})" for b in blocked]
    return not blocked, {"blocked_versions": len(blocked),
                         "files": dg.MetadataValue.md("\n".join(lines) or "_none_")}


def report_blocked_versions(context: dg.AssetExecutionContext, platform: PlatformResource,
                            outcomes: list[FileOutcome], check_key: dg.AssetCheckKey) -> None:
    """One alert per version this run blocked at landing, as for a blocked day."""
    for o in outcomes:
        if not o.blocked:
            continue
        context.log.error(o.blocked)
        try:  # an unreachable webhook must not stop the landing
            report_blocked_file(context, platform, o.file_name, check_key, o.blocked)
        except Exception as exc:  # noqa: BLE001 - logged; the alert file holds the alert
            context.log.warning(f"{o.file_name}: the alert could not be sent: {exc}")


def outcome_lines(outcomes: list[FileOutcome]) -> dg.MetadataValue:
    lines = ["| file | status | rows read | landed | rejected | days | error |",
             "|---|---|---:|---:|---:|---:|---|"]
    for o in outcomes:
        lines.append(f"| {o.file_name} | {'blocked' if o.blocked else o.status} | {o.rows_read} | "
                     f"{o.rows_landed} | {o.rows_rejected} | {len(o.rows_by_day)} | "
                     f"{o.blocked or o.error or ''} |")
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
    check_specs=[landing_quarantine_check, landing_rate_check],
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
    report_blocked_versions(context, platform, outcomes, landing_rate_check.key)
    passed, evidence = quarantine_evidence(warehouse.engine())
    unblocked, blocks = landing_block_evidence(warehouse.engine())
    return dg.MaterializeResult(metadata={
        "files": outcome_lines(outcomes),
        "rows_read": sum(o.rows_read for o in outcomes),
        "days_touched": dg.MetadataValue.json(sorted({d for o in outcomes for d in o.rows_by_day})),
        "duration_s": round(time.monotonic() - started, 3),
    }, check_results=[dg.AssetCheckResult(check_name=QUARANTINE_CHECK, passed=passed,
                                          severity=dg.AssetCheckSeverity.WARN, metadata=evidence),
                      dg.AssetCheckResult(check_name=LANDING_RATE_CHECK, passed=unblocked,
                                          metadata=blocks)])


def _land_and_report_days(context: dg.AssetExecutionContext, platform: PlatformResource,
              warehouse: WarehouseResource, blob: BlobStorageResource):
    engine = warehouse.engine()
    outcomes = landing_intake(context, platform, engine, blob).run()
    _log_outcomes(context, outcomes)
    report_blocked_versions(context, platform, outcomes, raw_landing_rate_check.key)
    if outcomes:
        context.log.info(f"landed in this run: {len(outcomes)} file(s), "
                         f"{sum(o.rows_read for o in outcomes)} rows read")
    passed, evidence = quarantine_evidence(engine)
    days = list(context.partition_keys)
    with engine.connect() as conn:
        landed = {day: landed_rows(conn, day) for day in days}
    for day, versions in landed.items():  # every day of the range, each with its own numbers
        context.add_asset_metadata({
            "dagster/row_count": sum(versions.values()), "rows": sum(versions.values()),
            "files": dg.MetadataValue.md("\n".join(f"- {name} ({sha[:12]}): {n} rows" for
                                                   (name, sha), n in sorted(versions.items()))
                                         or "_none_")}, partition_key=day)
    yield dg.MaterializeResult(asset_key="raw_sales")
    if raw_quarantine_check.key in context.selected_asset_check_keys:
        # quarantined files have no sale date: the warning stands on every day until cleared
        for day in days:
            yield day_verdict(context, raw_quarantine_check, day, passed, evidence,
                              severity=dg.AssetCheckSeverity.WARN)
    if raw_landing_rate_check.key in context.selected_asset_check_keys:
        for day in days:  # the day's own files (a version without days: every day)
            yield day_verdict(context, raw_landing_rate_check, day,
                              *landing_block_evidence(engine, day))

# A multi-asset of one: its check output is optional (each day's verdict is a runtime event).
raw_sales = dg.multi_asset(
    name="raw_sales",
    specs=[dg.AssetSpec(
        "raw_sales", deps=[landed_files], skippable=True,
        code_version=stage_code_version(_land_and_report_days, (Intake,)),
        metadata={"lineage/reads": ["file:incoming/*.csv"],
                  "lineage/writes": ["file:staging/landed", "table:file_ledger", "table:file_events",
                                     "table:file_day_counts", "table:pending_days",
                                     "table:sales_rejects"]},
        group_name="ingestion", kinds={"csv", "parquet"}, owners=["team:data-platform"],
        tags={"layer": "raw"}, partitions_def=daily_partitions,
        description="Rows of the sale day from every CSV dropped so far. New files in "
        "<DATA_DIR>/incoming are landed first: fingerprinted, split by sale date into sealed "
        "fragments, recorded in the file_ledger table and archived (encrypted); unreadable files "
        "go to quarantine/ with a reason file.")],
    check_specs=[raw_quarantine_check, raw_landing_rate_check],
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
)(_land_and_report_days)
