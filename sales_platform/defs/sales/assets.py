"""The sales domain: cleaned_sales -> encrypted_sales -> sales, plus sales_rejects, in one step.

The four stay separate assets in the graph (own metadata, checks and code versions) and are computed
by one multi-asset step (``sales_pipeline``): a run pays one step's start, events and resource set-up,
and a subset (e.g. only ``sales``) runs only the stages selected. Each stage handles the run's whole
partition range (backfills run many days per run) and reports per-day outcomes, so one bad day
never hides the others.
"""


import time
from collections import Counter
from contextlib import nullcontext
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from sales_platform.checks import per_day_evaluations
from sales_platform.core.crypto import Tokenizer
from sales_platform.core.landing import LANDED
from sales_platform.core.parallel import in_order, workers_for
from sales_platform.core.pipeline import (
    CLEANED,
    ENCRYPTED,
    REJECTS,
    Snapshot,
    clean_day,
    encrypt_day,
    iter_arrow_layer,
    iter_parquet_layer,
    layer_columns,
    read_snapshot,
)
from sales_platform.core.quality import reject_rate
from sales_platform.core.warehouse.artifacts import record_artifacts
from sales_platform.core.warehouse.checks import day_row_count, duplicate_transaction_ids
from sales_platform.core.warehouse.ledger import (
    accounted_rows,
    clear_pending,
    mark_blocked,
    purge_blocked_day,
    refresh_versions,
    request_days,
    versions_on_day,
)
from sales_platform.core.warehouse.loading import SalesLoader, extra_columns
from sales_platform.core.warehouse.prefill import Prefills, encrypt_with_prefill
from sales_platform.core.warehouse.products_dim import known_product_ids
from sales_platform.core.warehouse.rejects import cross_day_ids, replace_day_rejects
from sales_platform.core.warehouse.retry import describe_db_error, run_with_retries
from sales_platform.core.warehouse.schema_log import record_table_change, source_layouts
from sales_platform.core.warehouse.tables import sales as sales_table
from sales_platform.core.warehouse.tables import sales_rejects as rejects_table
from sales_platform.metadata import (
    column_schema,
    counts_table,
    markdown_table,
    rate,
    reflected_table,
    warehouse_kinds,
)
from sales_platform.partitions import daily_backfill_policy, daily_partitions
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_code_version, stage_version

CLEANED_KEY, REJECTS_KEY, ENCRYPTED_KEY, SALES_KEY = (
    dg.AssetKey(name) for name in ("cleaned_sales", "sales_rejects", "encrypted_sales", "sales"))
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36),
                                           warn_window=timedelta(hours=26))

reject_rate_check = dg.AssetCheckSpec(
    "reject_rate_below_threshold", asset="cleaned_sales", blocking=True,
    partitions_def=daily_partitions,
    description="Share of rows rejected for a quality failure (collapsed identical duplicates "
    "excluded) stays at or below PlatformResource.max_reject_rate. Blocks loading when exceeded.",
)
conservation_check = dg.AssetCheckSpec(
    "rows_conserved", asset="sales", blocking=True, partitions_def=daily_partitions,
    description="Every row the day's load was built from (per file version) is in the sales table "
    "or in sales_rejects, and the day holds no row of any other version.",
)
schema_check = dg.AssetCheckSpec(
    "schema_unchanged", asset="sales", partitions_def=daily_partitions,
    description="Warns when this load added columns to the sales table or the day's files arrived "
    "in more than one column layout (schema evolution): see the schema_history table.",
)
pk_check = dg.AssetCheckSpec(
    "transaction_id_unique", asset="sales", blocking=True, partitions_def=daily_partitions,
    description="No loaded transaction id of the day has a conflicting copy (another sale day or "
    "different content, in any current file version) and none differs from its normalized "
    "(trimmed, upper-case) form: ids are case-insensitive.",
)


def blocked_detail(day: str, failed: int, read: int, rate_: float, limit: float) -> str:
    return (f"{day} blocked: {failed} of {read} rows rejected ({rate_:.0%} > {limit:.0%}); "
            "fix the file and drop a corrected version, or raise SALES_PLATFORM_MAX_REJECT_RATE "
            "and re-materialize the day")


def _days(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys)


def _layer_bytes(platform: PlatformResource, layer: str, days: list[str]) -> dict[str, int]:
    return {d: sum(p.stat().st_size for p in platform.areas.fragments(layer, d)) for d in days}


def _day_workers(platform: PlatformResource, layer: str, days: list[str]) -> int:
    """Days worked at once: the setting, or one at a time when a day's input is large."""
    return workers_for(list(_layer_bytes(platform, layer, days).values()), platform.day_workers)


# Helpers first: a stage's version hashes the module globals it names as they are when the asset
# is decorated, so a helper defined below an asset would be left out of its version.


def _record_layers(context: dg.AssetExecutionContext, engine, written: list,
                   asset_key: dg.AssetKey) -> None:
    """The layer files this run published, in the data-object ledger: one insert per run."""
    version, run_id = stage_version(context, asset_key), context.run.run_id
    record_artifacts(engine, [f.artifact(asset_key.to_user_string(), "layer", version, run_id)
                              for f in written])


def _check_selected(context: dg.AssetExecutionContext, spec: dg.AssetCheckSpec) -> bool:
    return spec.key in context.selected_asset_check_keys


# Runs over more days log one summary line instead of a line per day: each log line is an event
# Dagster stores (~13 ms on SQLite instance storage, ~1 in 17 of a range run's events per day).
# Each day's numbers stay in its partition's metadata and the per_day table either way.
PER_DAY_LOG_LINES_UP_TO = 31


def _report_day(context: dg.AssetExecutionContext, day: str, stats, conservation: dict,
                log: bool) -> None:
    """Per-day numbers scoped to their partition: in a range run each day's one materialization
    carries its own counts over the MaterializeResult's shared metadata (which alone would give
    every day the range's totals)."""
    context.add_asset_metadata(
        {**stats.as_dict(), "dagster/row_count": conservation["loaded"],
         "rejected": conservation["rejected"], "landed": conservation["landed"]},
        asset_key=SALES_KEY, partition_key=day)
    if log:
        context.log.info(f"{day}: {stats.as_dict().get('staged', 0)} staged, "
                         f"{conservation['loaded']} in sales, {conservation['rejected']} rejected")


def _load_with_retries(context, warehouse: WarehouseResource, engine, day: str,
                       platform: PlatformResource, prefills: Prefills | None = None):
    """One atomic load; transient errors (deadlock, dropped connection, lock) retried with backoff.

    In the load's own transaction: the day's pending requests that its snapshot answers are
    cleared, days whose conflicts went away are requested again, and the file versions on the day
    are re-derived (loaded once every landed row is counted)."""
    snapshot: list[Snapshot | None] = [None]

    def bookkeeping(conn, stats) -> None:
        clear_pending(conn, day, snapshot[0].snapshot_ns if snapshot[0] else 0)
        if stats.days_to_reload:
            request_days(conn, stats.days_to_reload, f"a conflict with {day} went away")
        refresh_versions(conn, day, datetime.now())

    def attempt():
        try:
            return load_once()
        except OSError:  # e.g. no temp space for the load's file beside those filled ahead
            if prefills is None or not prefills.drop_held():
                raise
            context.log.warning(f"{day}: the load's file did not fit in the temp space beside the "
                                "files filled ahead for later days; those are dropped (their loads "
                                "fill their own) and the load is tried again")
            return load_once()

    def load_once():  # each attempt reads the day's files afresh, under the layer's read lock
        with platform.areas.reading_layer(ENCRYPTED, day):
            snapshot[0] = read_snapshot(platform.areas, ENCRYPTED, day)
            extras = extra_columns(layer_columns(platform.areas, ENCRYPTED, day))
            # the file filled while this run encrypted the day, if the layer is still that one
            prefilled = prefills.take(day, platform.areas.fragments(ENCRYPTED, day),
                                      extras) if prefills is not None else None
            stats = SalesLoader(engine, extras).load_day(  # a factory: re-read only on fallback
                date.fromisoformat(day), lambda: iter_arrow_layer(platform.areas, ENCRYPTED, day),
                datetime.now(), after=bookkeeping,
                conflicts_before=snapshot[0].conflicts_before if snapshot[0] else (),
                snapshot_ns=snapshot[0].snapshot_ns if snapshot[0] else None, prefilled=prefilled)
            return stats, snapshot[0]

    def log(n: int, exc: BaseException, delay: float) -> None:
        context.log.warning(f"{describe_db_error(exc, warehouse.display_url(), day)}; "
                            f"retry {n} in {delay:.1f}s")

    try:
        return run_with_retries(attempt, on_retry=log)
    except sa_exc.DBAPIError as exc:
        raise dg.Failure(description=describe_db_error(exc, warehouse.display_url(), day)) from None


def _conservation(engine, day: str, snapshot: Snapshot | None) -> dict:
    """Every row the day's layers were built from (per file version, from the snapshot the cleaning
    read) is in sales or in the day's rejects, and sales holds no row of any other version."""
    versions = snapshot.versions if snapshot else {}
    with engine.connect() as conn:
        accounted = accounted_rows(conn, day)
        in_sales = day_row_count(conn, day)
    violations = {f"{name} ({sha[:12]})": {"landed": n, "accounted": accounted.get((name, sha), 0)}
                  for (name, sha), n in versions.items() if accounted.get((name, sha), 0) != n}
    strays = {k: n for k, n in accounted.items() if k not in versions}
    for (name, sha), n in strays.items():
        violations[f"{name} ({(sha or '')[:12]})"] = {"landed": 0, "accounted": n}
    return {"landed": sum(versions.values()), "loaded": in_sales,
            "rejected": sum(accounted.values()) - in_sales, "violations": violations}


def _preview(engine, day: str) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(sales_table).where(
            sales_table.c.sale_date == date.fromisoformat(day)).limit(5)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


# --- the four stages, each versioned by its own code (a change of one leaves the others' versions) ---


def clean_stage(context: dg.AssetExecutionContext, platform: PlatformResource,
                warehouse: WarehouseResource, days: list[str]):
    """cleaned_sales: every quality rule over the days' landed rows; rejects written by this step.
    Yields the asset's result and check verdicts; returns the days over the reject-rate threshold."""
    started = time.monotonic()
    keyring, rules = platform.keyring(), platform.rules()
    sensitive = tuple(platform.contract().sensitive)
    known = known_product_ids(warehouse.engine(), Tokenizer(keyring))
    if known is None:
        context.log.warning("dim_products is empty: the unknown_product rule is not applied")
    engine = warehouse.engine()
    read, clean, reasons, failing = 0, 0, Counter(), {}
    per_day, layers = [], []

    def clean_one(day: str):  # one day's layers and rejects; nothing here reads another day's
        before = cross_day_ids(engine, date.fromisoformat(day))
        result = clean_day(platform.areas, keyring, day, rules, known, sensitive, before)
        # the step that decides a reject writes it, before any check can stop the run
        with platform.areas.reading_layer(REJECTS, day):
            layer = read_snapshot(platform.areas, REJECTS, day)
            written = replace_day_rejects(engine, date.fromisoformat(day),
                                          iter_parquet_layer(platform.areas, REJECTS, day),
                                          datetime.now(), layer.snapshot_ns if layer else None)
        return result, written

    for day, (result, written) in in_order(clean_one, days, _day_workers(platform, LANDED, days)):
        layers += result.written
        if written is None:
            context.log.warning(f"{day}: a run that read newer landed rows already wrote the "
                                "day's rejects; this run's are not written")
        read, clean = read + result.rows_read, clean + result.rows_clean
        reasons.update(result.rejects_by_reason)
        day_rate = reject_rate(result.rows_read, dict(result.rejects_by_reason))
        per_day.append({"day": day, "read": result.rows_read, "clean": result.rows_clean,
                        "rejected": result.rows_rejected, "reject_rate": round(day_rate, 4)})
        if day_rate > platform.max_reject_rate:
            failing[day] = round(day_rate, 4)
            failed = result.rows_rejected - result.rejects_by_reason.get("duplicate_identical", 0)
            detail = blocked_detail(day, failed, result.rows_read, day_rate, platform.max_reject_rate)
            files = mark_blocked(engine, day, detail, datetime.now())
            purge_blocked_day(engine, day)
            context.log.error(f"{detail}; files: {', '.join(sorted(set(files))) or '-'}")
    _record_layers(context, engine, layers, CLEANED_KEY)
    elapsed = time.monotonic() - started
    yield dg.MaterializeResult(asset_key=CLEANED_KEY, metadata={
        "rows_read": read, "rows_clean": clean, "rows_rejected": sum(reasons.values()),
        "rejected_by_reason": counts_table(dict(reasons)),
        "per_day": markdown_table(pd.DataFrame(per_day), rows=40),
        "unknown_product_rule": "applied" if known is not None else "skipped: dim_products empty",
        "duration_s": round(elapsed, 3), "rows_per_s": rate(read, elapsed),
    })
    if _check_selected(context, reject_rate_check):
        yield dg.AssetCheckResult(
            asset_key=CLEANED_KEY, check_name=reject_rate_check.name, passed=not failing,
            # the threshold is a setting, not a measurement: text, so the UI draws no flat plot of it
            metadata={"threshold": dg.MetadataValue.text(f"{platform.max_reject_rate:g} "
                                                         "(SALES_PLATFORM_MAX_REJECT_RATE)"),
                      "overall_reject_rate": round(reject_rate(read, dict(reasons)), 4),
                      "days_over_threshold": dg.MetadataValue.json(failing),
                      "rejected_by_reason": counts_table(dict(reasons))},
        )
        yield from per_day_evaluations(context, reject_rate_check.name, failing, blocking=True,
                                       metadata={d["day"]: {"reject_rate": d["reject_rate"]}
                                                 for d in per_day}, asset_key=CLEANED_KEY)
    return failing


def report_rejects(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   days: list[str]) -> dg.MaterializeResult:
    """sales_rejects: written by the stages that decide rejects; this reports the days' rejects."""
    with warehouse.engine().connect() as conn:
        by_reason = dict(conn.execute(
            select(rejects_table.c.reason, func.count())
            .where(rejects_table.c.sale_date.in_([date.fromisoformat(d) for d in days]))
            .group_by(rejects_table.c.reason)).all())
    return dg.MaterializeResult(asset_key=REJECTS_KEY, metadata={
        "rows": sum(by_reason.values()), "rejected_by_reason": counts_table(by_reason),
        "table": rejects_table.name, "database": warehouse.display_url(),
        "dagster/column_schema": column_schema(rejects_table),
    })


def encrypt_stage(context: dg.AssetExecutionContext, platform: PlatformResource,
                  warehouse: WarehouseResource, days: list[str],
                  prefills: Prefills | None = None) -> dg.MaterializeResult:
    """encrypted_sales: the days' cleaned rows with identifiers replaced by tokens (with
    ``prefills``, each day's SQLite load file filled on the side: ``warehouse/prefill.py``)."""
    started = time.monotonic()
    keyring = platform.keyring()
    sensitive = tuple(platform.contract().sensitive)
    sizes = _layer_bytes(platform, CLEANED, days)

    def encrypt_one(day: str):
        return encrypt_with_prefill(prefills, day, sizes[day], lambda on_chunk: encrypt_day(
            platform.areas, keyring, day, sensitive, on_chunk=on_chunk))

    results = [result for _, result in in_order(encrypt_one, days,
                                                workers_for(list(sizes.values()), platform.day_workers))]
    for note in prefills.notes if prefills is not None else ():
        context.log.warning(note)
    _record_layers(context, warehouse.engine(), [f for r in results for f in r.written], ENCRYPTED_KEY)
    rows = sum(r.rows for r in results)
    last = next((d for d in reversed(days) if platform.areas.fragments(ENCRYPTED, d)), None)
    preview = next(iter_parquet_layer(platform.areas, ENCRYPTED, last), pd.DataFrame()) \
        if last else pd.DataFrame()
    elapsed = time.monotonic() - started
    return dg.MaterializeResult(asset_key=ENCRYPTED_KEY, metadata={
        "rows": rows, "key_id": keyring.active.key_id,
        "distinct_customer_tokens": max((r.distinct_customers for r in results), default=0),
        "preview": markdown_table(preview.drop(columns=["source_row"], errors="ignore")),
        "duration_s": round(elapsed, 3), "rows_per_s": rate(rows, elapsed),
    })


def _sales_verdicts(context: dg.AssetExecutionContext, conservation: dict, dup: list,
                    added: list[str], layouts: set[str], evolved_days: set[str]):
    """The selected checks of ``sales``: a verdict for the run and one per day. Returns the days
    each blocking check fails on, selected or not (a load never goes unverified)."""
    broken = {d: c for d, c in conservation.items() if c["violations"]}
    if _check_selected(context, conservation_check):
        yield dg.AssetCheckResult(asset_key=SALES_KEY, check_name=conservation_check.name,
                                  passed=not broken, metadata={"violations": dg.MetadataValue.json(broken)})
        yield from per_day_evaluations(context, conservation_check.name, broken, blocking=True,
                                       metadata={d: {"landed": c["landed"], "loaded": c["loaded"],
                                                     "rejected": c["rejected"]}
                                                 for d, c in conservation.items()}, asset_key=SALES_KEY)
    if _check_selected(context, pk_check):
        yield dg.AssetCheckResult(asset_key=SALES_KEY, check_name=pk_check.name, passed=not dup,
                                  metadata={"violations": dg.MetadataValue.json(dup)})
        yield from per_day_evaluations(context, pk_check.name, {d for d, _ in dup}, blocking=True,
                                       asset_key=SALES_KEY)
    if _check_selected(context, schema_check):
        yield dg.AssetCheckResult(asset_key=SALES_KEY, check_name=schema_check.name,
                                  passed=not added and not layouts,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"columns_added": dg.MetadataValue.json(added),
                                            "days_with_several_layouts": dg.MetadataValue.json(
                                                sorted(layouts))})
        yield from per_day_evaluations(context, schema_check.name, evolved_days | layouts,
                                       severity=dg.AssetCheckSeverity.WARN, asset_key=SALES_KEY)
    return {conservation_check.key: sorted(broken), pk_check.key: sorted({d for d, _ in dup})}


def load_stage(context: dg.AssetExecutionContext, platform: PlatformResource,
               warehouse: WarehouseResource, days: list[str], prefills: Prefills | None = None):
    """sales: each day's encrypted layer upserted atomically, in day order; then the checks."""
    started = time.monotonic()
    engine = run_with_retries(warehouse.engine)  # first connect (Azure serverless resumes: 40613)
    totals: Counter[str] = Counter()
    per_day, conservation, added, layouts, reloads = [], {}, [], set(), set()
    evolved_days: set[str] = set()
    ledger: list[str] = []
    for day in days:
        stats, snapshot = _load_with_retries(context, warehouse, engine, day, platform, prefills)
        if stats.columns_added:
            added += stats.columns_added
            evolved_days.add(day)
            record_table_change(engine, "sales", stats.columns_added,
                                f"added column(s) for source files of {day}", datetime.now())
            context.log.warning(f"sales table evolved: added {', '.join(stats.columns_added)}")
        if stats.conflicts_rejected or stats.conflicts_evicted:
            context.log.warning(f"{day}: {stats.conflicts_rejected} row(s) rejected and "
                                f"{stats.conflicts_evicted} row(s) of other days moved to "
                                "sales_rejects: transaction ids on two sale days")
        reloads.update(stats.days_to_reload)
        totals.update(stats.as_dict())
        per_day.append({"day": day, **stats.as_dict()})
        if stats.stale:
            context.log.warning(f"{day}: not loaded: a run that read newer landed rows already "
                                "loaded the day (its result stands)")
            conservation[day] = {"landed": 0, "loaded": 0, "rejected": 0, "violations": {},
                                 "stale": True}
        else:
            conservation[day] = _conservation(engine, day, snapshot)
        entries = versions_on_day(engine, day)
        ledger += [f"{e['file_name']} ({e['sha256'][:12]}, {e['status']})" for e in entries]
        if len(source_layouts(engine, [e["sha256"] for e in entries])) > 1:
            layouts.add(day)
        _report_day(context, day, stats, conservation[day], len(days) <= PER_DAY_LOG_LINES_UP_TO)
    if len(days) > PER_DAY_LOG_LINES_UP_TO:
        context.log.info(
            f"{len(days)} days, {days[0]} to {days[-1]}: {totals['staged']} staged, "
            f"{sum(c['loaded'] for c in conservation.values())} in sales, "
            f"{sum(c['rejected'] for c in conservation.values())} rejected (each day's numbers: "
            "its partition's metadata and the per_day table)")
    elapsed = time.monotonic() - started
    dup = duplicate_transaction_ids(engine, days)
    yield dg.MaterializeResult(asset_key=SALES_KEY, metadata={
        **{k: totals[k] for k in ("staged", "inserted", "updated", "unchanged", "relinked",
                                  "deleted", "conflicts_rejected", "conflicts_evicted")},
        "per_day": markdown_table(pd.DataFrame(per_day), rows=40),
        "table": sales_table.name, "database": warehouse.display_url(),
        "ledger_entries": dg.MetadataValue.md("\n".join(f"- {x}" for x in sorted(set(ledger)))
                                              or "_none_"),
        "days_requested_again": dg.MetadataValue.json(sorted(reloads)),
        "preview": markdown_table(_preview(engine, days[-1])),
        "dagster/column_schema": column_schema(reflected_table(engine, "sales")),
        "columns_added": dg.MetadataValue.json(added),
        "days_prefilled": prefills.taken if prefills is not None else 0,
        "duration_s": round(elapsed, 3), "rows_per_s": rate(totals["staged"], elapsed),
    })
    return (yield from _sales_verdicts(context, conservation, dup, added, layouts, evolved_days))


# --- the one step: cleaned_sales, sales_rejects, encrypted_sales and sales as separate assets ---

# Each asset's version is the hash of the stage it runs (a stage's version changes with its code
# and the core functions it calls, not with its neighbours').
STAGES = {"cleaned_sales": clean_stage, "sales_rejects": report_rejects,
          "encrypted_sales": encrypt_stage, "sales": load_stage}
SPEC_COMMON = dict(partitions_def=daily_partitions, group_name="sales", owners=["team:data-platform"])

def _specs() -> list[dg.AssetSpec]:
    """The four assets of the step (in a function: the defs loader would take module-level
    specs for definitions of their own)."""
    return [
        dg.AssetSpec(
            CLEANED_KEY, deps=["raw_sales", "dim_products"], kinds={"pandas", "parquet"},
            tags={"layer": "cleaned"}, code_version=stage_code_version(clean_stage),
            metadata={"lineage/reads": ["file:staging/landed", "table:dim_products"],
                      "lineage/writes": ["file:staging/cleaned", "file:staging/rejects",
                                         "table:sales_rejects", "table:file_ledger"]},
            description="Typed, validated rows of the day: identifiers trimmed and upper-cased, "
            "quantities checked, unknown products and duplicate transaction ids caught. Rejected rows "
            "go to sales_rejects with a reason; files stay sealed at rest.", **SPEC_COMMON),
        dg.AssetSpec(
            REJECTS_KEY, deps=[CLEANED_KEY], kinds=warehouse_kinds(), tags={"layer": "quality"},
            code_version=stage_code_version(report_rejects),
            metadata={"lineage/reads": ["table:sales_rejects"], "lineage/writes": []},
            description="Every rejected row of the day with its reason, source file and row number "
            "(identifiers as tokens). Written by the step that decides each reject: landing (no valid "
            "sale date, malformed records), cleaning (quality rules, duplicates) and the sales load "
            "(transaction ids on two days); this asset reports the day's rejects.", **SPEC_COMMON),
        dg.AssetSpec(
            ENCRYPTED_KEY, deps=[CLEANED_KEY], kinds={"parquet"}, skippable=True,
            tags={"layer": "encrypted", "pii": "tokenized"},
            code_version=stage_code_version(encrypt_stage),
            metadata={"lineage/reads": ["file:staging/cleaned"],
                      "lineage/writes": ["file:staging/encrypted"]},
            description="Cleaned rows with customer_id and product_id replaced by deterministic AES-SIV "
            "tokens (<key id>~<ciphertext>): equal ids give equal tokens, so they still group and join.",
            **SPEC_COMMON),
        dg.AssetSpec(
            SALES_KEY, deps=[ENCRYPTED_KEY], kinds=warehouse_kinds(), skippable=True,
            tags={"layer": "warehouse"}, code_version=stage_code_version(load_stage),
            freshness_policy=FRESHNESS,
            metadata={"lineage/reads": ["file:staging/encrypted"],
                      "lineage/writes": ["table:sales", "table:sales_rejects", "table:file_ledger",
                                         "table:pending_days"]},
            description="The sales table: one row per transaction_id, upserted idempotently per day "
            "(new rows inserted, changed rows updated, unchanged rows left alone, rows no longer in any "
            "file removed), atomically per day.", **SPEC_COMMON),
    ]


def _checks_without_their_asset(context: dg.AssetExecutionContext) -> list[str]:
    return sorted(f"{key.name} of {key.asset_key.to_user_string()}"
                  for key in context.selected_asset_check_keys
                  if key.asset_key not in context.selected_asset_keys)


def _blocking_failures_not_selected(context: dg.AssetExecutionContext,
                                    failing: dict[dg.AssetCheckKey, list[str]]) -> list[str]:
    """Blocking checks that failed although the run left them out: their block holds anyway."""
    return [f"{key.name} failed on {', '.join(days)}" for key, days in failing.items()
            if days and key not in context.selected_asset_check_keys]


def _prefills(platform: PlatformResource, warehouse: WarehouseResource,
              selected: set[dg.AssetKey]) -> Prefills | nullcontext:
    """SQLite loads of days this run encrypts get their load file filled during the encryption;
    the files not used are removed when the step ends."""
    if platform.load_prefill_mb and {ENCRYPTED_KEY, SALES_KEY} <= selected \
            and warehouse.engine().dialect.name == "sqlite":
        return Prefills(platform.load_prefill_mb << 20)
    return nullcontext(None)


def _stages(context: dg.AssetExecutionContext, platform: PlatformResource,
            warehouse: WarehouseResource, days: list[str],
            failing: dict[dg.AssetCheckKey, list[str]], prefills: Prefills | None):
    """The selected stages in order; ``failing`` gets the blocking checks' failed days."""
    selected = context.selected_asset_keys
    try:
        if CLEANED_KEY in selected:
            blocked = yield from clean_stage(context, platform, warehouse, days)
            failing[reject_rate_check.key] = sorted(blocked)
        if failing.get(reject_rate_check.key):  # the block, enforced in the step: no day of the
            context.log.error(  # run is encrypted or loaded
                f"encrypted_sales and sales not materialized in this run: "
                f"{', '.join(failing[reject_rate_check.key])} over the reject-rate threshold")
        else:
            if ENCRYPTED_KEY in selected:
                yield encrypt_stage(context, platform, warehouse, days, prefills)
            if SALES_KEY in selected:
                failing.update((yield from load_stage(context, platform, warehouse, days, prefills)))
    except Exception:
        if REJECTS_KEY in selected:  # the rejects written so far are in the table: report them
            yield report_rejects(context, warehouse, days)
        raise
    if REJECTS_KEY in selected:  # last: the load adds the day's cross-day rejects
        yield report_rejects(context, warehouse, days)


@dg.multi_asset(
    name="sales_pipeline",
    specs=_specs(),
    check_specs=[reject_rate_check, conservation_check, pk_check, schema_check],
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    # No step retry policy: a retry would clean and encrypt every day of the run again (and report
    # them twice). Transient database errors are retried around each day's load (run_with_retries).
    pool="warehouse_writes",
    description="One step from landed rows to the warehouse: clean -> (rejects) -> encrypt -> "
    "load for the run's days, each stage its own asset with its own metadata and checks.",
)
def sales_pipeline(context: dg.AssetExecutionContext, platform: PlatformResource,
                   warehouse: WarehouseResource):
    days, selected = _days(context), context.selected_asset_keys
    if orphans := _checks_without_their_asset(context):  # e.g. "Execute" on a check alone
        raise dg.Failure(description="a check of the sales step is evaluated by the stage that "
                         "materializes its asset, not on its own: select the asset with its checks ("
                         + ", ".join(orphans) + ")", allow_retries=False)
    failing: dict[dg.AssetCheckKey, list[str]] = {}
    with _prefills(platform, warehouse, selected) as prefills:
        yield from _stages(context, platform, warehouse, days, failing, prefills)
    if unselected := _blocking_failures_not_selected(context, failing):
        raise dg.Failure(description="blocking check(s) left out of the run failed, and block as "
                         "they would when selected: " + "; ".join(unselected), allow_retries=False)
