"""`sales-platform reprocess` and `rebuild`: landing again from the sealed archive
(core/archive_replay.py), then loading the days that changed as `run` does.

The commands get the running cli module (``__main__`` under ``python -m``), so the CliError they
raise is the one its ``main`` turns into a one-line error with exit code 2."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from types import ModuleType

from sales_platform.core import settings


def _archive_intake(command: str):
    """The platform's intake (today's settings) on a migrated warehouse; the ledger names the
    landing asset's code version."""
    import dagster as dg

    from sales_platform.definitions import defs
    from sales_platform.resources.factory import (
        blob_resource,
        platform_resource,
        resolved,
        warehouse_resource,
    )

    platform = resolved(platform_resource())
    platform.prepare()
    engine = resolved(warehouse_resource()).prepare()
    key = dg.AssetKey("landed_files")
    version = defs.get_assets_def(key).code_versions_by_key.get(key) or f"cli {command}"
    intake = platform.intake(engine, version, resolved(blob_resource()).put_file)
    intake.stage = "landed_files"
    return intake


def consecutive(days: list[str]) -> list[list[str]]:
    """``days`` (sorted) cut into runs of consecutive days: one daily_sales_job run each."""
    ranges: list[list[str]] = []
    for day in days:
        if ranges and date.fromisoformat(day) - date.fromisoformat(ranges[-1][-1]) == timedelta(1):
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return ranges


def load_days(cli: ModuleType, days: list[str], with_products: bool) -> bool:
    """daily_sales_job for each run of consecutive days (days outside the daily partitions are
    named and left), then rollups_job: what `run` does after landing."""
    import dagster as dg

    from sales_platform.cli_runs import run_job
    from sales_platform.partitions import partition_range_tags

    start, today = settings.start_date(), datetime.now(UTC).date().isoformat()
    outside = [d for d in days if not start <= d <= today]
    if outside:
        print(f"{cli.PROG}: warning: not loaded, outside the daily partitions ({start} .. {today}): "
              f"{', '.join(outside)}", file=sys.stderr)
    ranges = consecutive(sorted(d for d in days if start <= d <= today))
    jobs = [("products_job", {})] if with_products else []
    jobs += [("daily_sales_job", partition_range_tags(r[0], r[-1])) for r in ranges]
    jobs += [("rollups_job", {})] if ranges else []
    cli._ensure_dagster_home()
    ok = True
    with dg.DagsterInstance.get() as instance:
        for number, (job_name, tags) in enumerate(jobs, start=1):
            run_id, success = run_job(instance, job_name, tags, cli.QUIET)
            span = tags.get("dagster/asset_partition_range_start")
            what = f"{job_name} {span} .. {tags['dagster/asset_partition_range_end']}" if span \
                else job_name
            print(f"[{number}/{len(jobs)}] {what}: {'succeeded' if success else 'FAILED'} "
                  f"(run {run_id})", flush=True)
            if not success:
                cli._alert_failed_run(instance, run_id)
            ok = ok and success
    return ok


def cmd_reprocess(cli: ModuleType, args: argparse.Namespace) -> int:
    from sales_platform.core.archive_replay import ArchiveError, plan_reprocess, reprocess

    first, last = cli.partition_range(args.first, args.last, 1)
    cli._preflight()
    intake = _archive_intake("reprocess")
    plan = plan_reprocess(intake, first, last)
    if not plan:
        print(f"nothing to reprocess for {first} .. {last}: every version there was landed under "
              "today's landing settings")
        return 0
    print(f"{len(plan)} version(s) to land again from the archive under today's settings:")
    for item in plan:
        print(f"  {item.file_name} ({item.sha256[:12]}): {item.why}")
    if args.dry_run:
        return 0

    def said(item, outcome) -> None:
        told = outcome if isinstance(outcome, str) else f"landed again; days {', '.join(outcome)}"
        print(f"  {item.file_name}: {told}", flush=True)

    try:
        days = reprocess(intake, plan, said)
    except ArchiveError as exc:
        raise cli.CliError(str(exc)) from None
    ok = load_days(cli, sorted(days), with_products=False)
    if days:
        cli.print_summary(min(days), max(days))
    return 0 if ok else 1


def cmd_rebuild(cli: ModuleType, args: argparse.Namespace) -> int:
    from sales_platform.core.archive_replay import (
        ArchiveError,
        arrivals,
        rebuild,
        warehouse_contents,
    )
    from sales_platform.core.warehouse.ledger import DUPLICATE, LANDED, QUARANTINED, pending_requests

    cli._preflight()
    intake = _archive_intake("rebuild")
    records, unnamed = arrivals(intake)
    statuses = [r.status for r in records]
    print(f"{len(records)} arrival(s) in the archive's manifests ({statuses.count(LANDED)} to land, "
          f"{statuses.count(DUPLICATE)} duplicate(s), {statuses.count(QUARANTINED)} quarantined), "
          "replayed in arrival order; then their days are loaded")
    if unnamed:
        print(f"{len(unnamed)} archived file(s) without a manifest: {', '.join(unnamed[:3])}"
              + (" …" if len(unnamed) > 3 else ""))
    if args.dry_run:
        return 0
    if unnamed and not args.without_manifest:
        raise cli.CliError(f"{len(unnamed)} archived file(s) have no manifest (archived before "
                       "manifests: their names and order are unknown); pass --without-manifest to "
                       "land them after the others, in sha256 order, each named <sha256>.csv")
    contents = warehouse_contents(intake)
    if any(contents.values()) and not args.force:
        raise cli.CliError(f"the warehouse is not empty ({contents['file_ledger']} file version(s), "
                       f"{contents['sales']} sales rows, {contents['sales_rejects']} rejects): "
                       "rebuild is for a lost warehouse; pass --force to replay the archive onto it")
    try:
        report = rebuild(intake, records, unnamed if args.without_manifest else [],
                         clear_landed=not any(contents.values()))
    except ArchiveError as exc:
        raise cli.CliError(str(exc)) from None
    print(f"ledger rebuilt: {len(report.landed)} landing(s), {len(report.duplicates)} "
          f"duplicate(s), {len(report.quarantined)} quarantined")
    for name in report.refused:
        print(f"  {name}: refused under today's settings (recorded as quarantined)")
    days = sorted(pending_requests(intake.engine))
    ok = load_days(cli, days, with_products=True)
    if days:
        cli.print_summary(days[0], days[-1])
    return 0 if ok else 1


def add_commands(sub, new_command, iso_date, reprocess_cmd, rebuild_cmd) -> None:
    """The two commands' parsers (``new_command`` is cli._sub)."""
    again = new_command(sub, "reprocess", "land the live file versions of a range again from their "
                        "sealed archive copies under today's landing settings (time zone, start "
                        "date, schema contract), then load their old and new days", reprocess_cmd)
    again.add_argument("--first", type=iso_date, required=True, help="first day of the range")
    again.add_argument("--last", type=iso_date, required=True, help="last day of the range")
    again.add_argument("--dry-run", action="store_true", help="only list the versions and why")
    rebuilt = new_command(sub, "rebuild", "after a lost warehouse: rebuild the file ledger from the "
                          "archive's manifests (in arrival order) and load every day again; refuses "
                          "a warehouse that is not empty", rebuild_cmd)
    rebuilt.add_argument("--dry-run", action="store_true", help="only say what would be replayed")
    rebuilt.add_argument("--force", action="store_true",
                         help="replay the archive onto a warehouse that is not empty")
    rebuilt.add_argument("--without-manifest", action="store_true",
                         help="also land archived files without a manifest (archived before "
                         "manifests), after the others, in sha256 order, each named <sha256>.csv")
