"""The sales domain: cleaned_sales -> encrypted_sales -> sales, plus sales_rejects, day by day.

The four stay separate assets in the graph (own metadata, checks and code versions) and are computed
by one multi-asset step (``sales_pipeline``): a run of many days (a backfill) pays one step's start
and resource set-up. Inside it each day goes through its own pass (clean, then encrypt and load
unless the day is blocked) and gets its own materializations and check verdicts
(``sales_platform/checks.py``); a blocked or failed day stops only itself.
"""


import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from sales_platform.checks import day_materialization, day_verdict, latest_materialization
from sales_platform.core.crypto import Tokenizer
from sales_platform.core.landing import LANDED
from sales_platform.core.parallel import in_order, workers_for
from sales_platform.core.pipeline import (
    ENCRYPTED,
    REJECTS,
    DayCleaning,
    DayEncryption,
    Snapshot,
    clean_day,
    encrypt_day,
    iter_arrow_layer,
    iter_parquet_layer,
    layer_columns,
    read_snapshot,
)
from sales_platform.core.quality import over_reject_rate, reject_rate
from sales_platform.core.warehouse.artifacts import record_artifacts
from sales_platform.core.warehouse.checks import day_row_count, duplicate_transaction_ids
from sales_platform.core.warehouse.ledger import (
    BLOCKED,
    accounted_rows,
    clear_pending,
    landed_accounts,
    mark_blocked,
    purge_blocked_day,
    refresh_versions,
    request_days,
    versions_on_day,
)
from sales_platform.core.warehouse.loading import LoadStats, SalesLoader, extra_columns
from sales_platform.core.warehouse.products_dim import known_product_ids
from sales_platform.core.warehouse.rejects import cross_day_ids, replace_day_rejects
from sales_platform.core.warehouse.retry import describe_db_error, run_with_retries
from sales_platform.core.warehouse.schema_log import record_table_change, source_layouts
from sales_platform.core.warehouse.tables import sales as sales_table
from sales_platform.core.warehouse.tables import sales_rejects as rejects_table
from sales_platform.defs.aggregates.assets import DAILY_AGGREGATES
from sales_platform.defs.governance.alerts import report_blocked_day
from sales_platform.metadata import (
    column_schema,
    counts_table,
    markdown_table,
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


def _load_with_retries(context, warehouse: WarehouseResource, engine, day: str,
                       platform: PlatformResource):
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

    def load_once():  # each attempt reads the day's files afresh, under the layer's read lock
        with platform.areas.reading_layer(ENCRYPTED, day):
            snapshot[0] = read_snapshot(platform.areas, ENCRYPTED, day)
            extras = extra_columns(layer_columns(platform.areas, ENCRYPTED, day))
            stats = SalesLoader(engine, extras).load_day(
                date.fromisoformat(day), lambda: iter_arrow_layer(platform.areas, ENCRYPTED, day),
                datetime.now(), after=bookkeeping,
                conflicts_before=snapshot[0].conflicts_before if snapshot[0] else (),
                snapshot_ns=snapshot[0].snapshot_ns if snapshot[0] else None)
            return stats, snapshot[0]

    def log(n: int, exc: BaseException, delay: float) -> None:
        context.log.warning(f"{describe_db_error(exc, warehouse.display_url(), day)}; "
                            f"retry {n} in {delay:.1f}s")

    try:
        return run_with_retries(load_once, on_retry=log)
    except sa_exc.DBAPIError as exc:
        raise dg.Failure(description=describe_db_error(exc, warehouse.display_url(), day)) from None


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "description", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _record_stage_layers(context: dg.AssetExecutionContext, engine, passes: list) -> None:
    """The layer files this run published, in the data-object ledger: one insert per stage."""
    cleaned = [f for p in passes if p.cleaning is not None for f in p.cleaning.written]
    encrypted = [f for p in passes if p.encryption is not None for f in p.encryption.written]
    for key, written in ((CLEANED_KEY, cleaned), (ENCRYPTED_KEY, encrypted)):
        if written:
            _record_layers(context, engine, written, key)


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


# --- the four stages of one day, each versioned by its own code ---


@dataclass
class DayPass:
    """What one day's pass did: each stage's result, or why the pass stopped."""

    day: str
    cleaning: DayCleaning | None = None
    rejects_written: bool = True
    reject_rate: float = 0.0
    blocked: str | None = None  # the reject-rate block's detail
    encryption: DayEncryption | None = None
    load: LoadStats | None = None
    conservation: dict | None = None
    duplicates: list = field(default_factory=list)
    several_layouts: bool = False
    ledger: list[str] = field(default_factory=list)
    aggregates: dict[dg.AssetKey, dict] = field(default_factory=dict)
    superseded: bool = False  # a run that read newer landed rows cleaned the day first
    error: BaseException | None = None
    seconds: Counter[str] = field(default_factory=Counter)


def clean_one_day(platform: PlatformResource, engine, day: str, known, out: DayPass) -> None:
    """cleaned_sales of one day: every quality rule over its landed rows; its rejects written here
    (the step that decides a reject writes it); the day blocked when over the reject rate."""
    keyring = platform.keyring()
    before = cross_day_ids(engine, date.fromisoformat(day))
    result = clean_day(platform.areas, keyring, day, platform.rules(), known,
                       tuple(platform.contract().sensitive), before,
                       accounts=lambda: landed_accounts(engine, platform.max_reject_rate))
    if not result.published:  # its verdicts would be about rows that are no longer the day's
        out.superseded = True
        return
    with platform.areas.reading_layer(REJECTS, day):
        layer = read_snapshot(platform.areas, REJECTS, day)
        out.rejects_written = replace_day_rejects(
            engine, date.fromisoformat(day), iter_parquet_layer(platform.areas, REJECTS, day),
            datetime.now(), layer.snapshot_ns if layer else None) is not None
    rate_ = reject_rate(result.rows_read, dict(result.rejects_by_reason))
    if over_reject_rate(rate_, platform.max_reject_rate):
        failed = result.rows_rejected - result.rejects_by_reason.get("duplicate_identical", 0)
        detail = blocked_detail(day, failed, result.rows_read, rate_, platform.max_reject_rate)
        mark_blocked(engine, day, detail, datetime.now())
        purge_blocked_day(engine, day)
        out.blocked = detail
    out.cleaning, out.reject_rate = result, rate_  # the stage is done: its events may be told


def encrypt_one_day(platform: PlatformResource, day: str, out: DayPass) -> None:
    """encrypted_sales of one day: its cleaned rows with identifiers replaced by tokens."""
    out.encryption = encrypt_day(platform.areas, platform.keyring(), day,
                                 tuple(platform.contract().sensitive))


def load_one_day(context: dg.AssetExecutionContext, platform: PlatformResource,
                 warehouse: WarehouseResource, engine, day: str, out: DayPass) -> None:
    """sales of one day: its encrypted layer upserted atomically; what its checks verify."""
    stats, snapshot = _load_with_retries(context, warehouse, engine, day, platform)
    if stats.columns_added:
        record_table_change(engine, "sales", stats.columns_added,
                            f"added column(s) for source files of {day}", datetime.now())
    conservation = ({"landed": 0, "loaded": 0, "rejected": 0, "violations": {}}
                    if stats.stale else _conservation(engine, day, snapshot))
    duplicates = duplicate_transaction_ids(engine, [day])
    entries = versions_on_day(engine, day)
    out.ledger = [f"{e['file_name']} ({e['sha256'][:12]}, {e['status']})" for e in entries]
    out.several_layouts = len(source_layouts(engine, [e["sha256"] for e in entries])) > 1
    # the stage is done: its events may be told
    out.load, out.conservation, out.duplicates = stats, conservation, duplicates


def day_rejects(engine, day: str) -> dict[str, int]:
    """sales_rejects of one day, by reason (landing, cleaning and cross-day rejects)."""
    with engine.connect() as conn:
        return dict(conn.execute(
            select(rejects_table.c.reason, func.count())
            .where(rejects_table.c.sale_date == date.fromisoformat(day))
            .group_by(rejects_table.c.reason)).all())


def _aggregates_due(selected, out: DayPass) -> bool:
    """A day's aggregates are refreshed when its load stands (or the run loads nothing)."""
    if out.error is not None or out.blocked or out.superseded:
        return False
    return SALES_KEY not in selected or (out.load is not None and not out.load.stale)


def aggregate_one_day(engine, day: str, selected, out: DayPass) -> None:
    """The selected daily aggregates of one day, from its rows in sales."""
    now = datetime.now()
    for aggregate in DAILY_AGGREGATES:
        if aggregate.key in selected:
            out.aggregates[aggregate.key] = aggregate.refresh_day(engine, day, now)


def _timed(out: DayPass, stage: str, fn, *args) -> None:
    started = time.monotonic()
    try:
        fn(*args)
    finally:
        out.seconds[stage] += time.monotonic() - started


def _blocked_by_ledger(engine, day: str) -> str | None:
    """The block an earlier cleaning of ``day`` recorded on its live file versions, if any."""
    for entry in versions_on_day(engine, day):
        if entry["status"] == BLOCKED:
            for line in (entry["error"] or "").splitlines():
                if line.startswith(f"{day} "):
                    return line
    return None


class SalesCheckFailed(Exception):
    """A blocking check of the loaded day failed: a defect of the load, not of the data."""


def _failed_sales_checks(out: DayPass) -> list[str]:
    return [spec.name for spec, bad in ((conservation_check, (out.conservation or {}).get("violations")),
                                        (pk_check, out.duplicates)) if bad]


def pass_day(context: dg.AssetExecutionContext, platform: PlatformResource,
             warehouse: WarehouseResource, engine, day: str, known) -> DayPass:
    """The selected stages of one day, in order. A blocked day stops after its cleaning; an error
    stops only this day (it is kept on the result, the other days go on)."""
    selected, out = context.selected_asset_keys, DayPass(day)
    try:
        if CLEANED_KEY in selected:
            _timed(out, "clean", clean_one_day, platform, engine, day, known, out)
        else:
            out.blocked = _blocked_by_ledger(engine, day)
        if out.blocked or out.superseded:
            return out
        if ENCRYPTED_KEY in selected:
            _timed(out, "encrypt", encrypt_one_day, platform, day, out)
        if SALES_KEY in selected:
            _timed(out, "load", load_one_day, context, platform, warehouse, engine, day, out)
            if failing := _failed_sales_checks(out):  # blocking, selected or not: no aggregates
                raise SalesCheckFailed(f"{', '.join(failing)} failed on {day}")
    except Exception as exc:  # noqa: BLE001 - reported as the day's failure by the step
        out.error = exc
    return out


# --- the one step: cleaned_sales, sales_rejects, encrypted_sales and sales as separate assets ---

# Each asset's version is the hash of the stage it runs (a stage's version changes with its code
# and the core functions it calls, not with its neighbours').
STAGES = {"cleaned_sales": clean_one_day, "sales_rejects": day_rejects,
          "encrypted_sales": encrypt_one_day, "sales": load_one_day}
SPEC_COMMON = dict(partitions_def=daily_partitions, group_name="sales", owners=["team:data-platform"])

def _specs() -> list[dg.AssetSpec]:
    """The four assets of the step (in a function: the defs loader would take module-level
    specs for definitions of their own)."""
    return [
        dg.AssetSpec(
            CLEANED_KEY, deps=["raw_sales", "dim_products"], kinds={"pandas", "parquet"},
            tags={"layer": "cleaned"}, code_version=stage_code_version(clean_one_day),
            metadata={"lineage/reads": ["file:staging/landed", "table:dim_products"],
                      "lineage/writes": ["file:staging/cleaned", "file:staging/rejects",
                                         "table:sales_rejects", "table:file_ledger"]},
            description="Typed, validated rows of the day: identifiers trimmed and upper-cased, "
            "quantities checked, unknown products and duplicate transaction ids caught. Rejected rows "
            "go to sales_rejects with a reason; files stay sealed at rest.", **SPEC_COMMON),
        dg.AssetSpec(
            REJECTS_KEY, deps=[CLEANED_KEY], kinds=warehouse_kinds(), tags={"layer": "quality"},
            code_version=stage_code_version(day_rejects),
            metadata={"lineage/reads": ["table:sales_rejects"], "lineage/writes": []},
            description="Every rejected row of the day with its reason, source file and row number "
            "(identifiers as tokens). Written by the step that decides each reject: landing (no valid "
            "sale date, malformed records), cleaning (quality rules, duplicates) and the sales load "
            "(transaction ids on two days); this asset reports the day's rejects.", **SPEC_COMMON),
        dg.AssetSpec(
            ENCRYPTED_KEY, deps=[CLEANED_KEY], kinds={"parquet"}, skippable=True,
            tags={"layer": "encrypted", "pii": "tokenized"},
            code_version=stage_code_version(encrypt_one_day),
            metadata={"lineage/reads": ["file:staging/cleaned"],
                      "lineage/writes": ["file:staging/encrypted"]},
            description="Cleaned rows with customer_id and product_id replaced by deterministic AES-SIV "
            "tokens (Tink's format, base64url): equal ids give equal tokens, so they still group and join.",
            **SPEC_COMMON),
        dg.AssetSpec(
            SALES_KEY, deps=[ENCRYPTED_KEY], kinds=warehouse_kinds(), skippable=True,
            tags={"layer": "warehouse"}, code_version=stage_code_version(load_one_day),
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


def _selected(context: dg.AssetExecutionContext, spec: dg.AssetCheckSpec) -> bool:
    return spec.key in context.selected_asset_check_keys


def _cleaning_events(context: dg.AssetExecutionContext, platform: PlatformResource,
                     out: DayPass, known_applied: bool):
    result, day = out.cleaning, out.day
    reasons = dict(result.rejects_by_reason)
    yield day_materialization(context, CLEANED_KEY, day, {
        "dagster/row_count": result.rows_clean, "rows_read": result.rows_read,
        "rows_clean": result.rows_clean, "rows_rejected": result.rows_rejected,
        "rejected_by_reason": counts_table(reasons), "reject_rate": round(out.reject_rate, 4),
        "files": dg.MetadataValue.md("\n".join(f"- {f}: {n} rows" for f, n in
                                               sorted(result.files.items())) or "_none_"),
        "unknown_product_rule": "applied" if known_applied else "skipped: dim_products empty"})
    if _selected(context, reject_rate_check):
        yield day_verdict(context, reject_rate_check, day, passed=out.blocked is None,
                          description=out.blocked, metadata={
                              "reject_rate": round(out.reject_rate, 4),
                              # a setting, not a measurement: text, so the UI draws no flat plot
                              "threshold": dg.MetadataValue.text(
                                  f"{platform.max_reject_rate:g} (SALES_PLATFORM_MAX_REJECT_RATE)"),
                              "rows_read": result.rows_read,
                              "rejected_by_reason": counts_table(reasons)})
    if not out.rejects_written:
        context.log.warning(f"{day}: a run that read newer landed rows already wrote the day's "
                            "rejects; this run's are not written")


def _sales_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine,
                  out: DayPass, schema):
    stats, day, conservation = out.load, out.day, out.conservation
    if stats.stale:
        context.log.warning(f"{day}: not loaded: a run that read newer landed rows already "
                            "loaded the day (its result stands)")
        return
    if stats.columns_added:
        context.log.warning(f"sales table evolved: added {', '.join(stats.columns_added)}")
    if stats.conflicts_rejected or stats.conflicts_evicted:
        context.log.warning(f"{day}: {stats.conflicts_rejected} row(s) rejected and "
                            f"{stats.conflicts_evicted} row(s) of other days moved to "
                            "sales_rejects: transaction ids on two sale days")
    if stats.columns_added:
        schema[0] = column_schema(reflected_table(engine, "sales"))
    yield day_materialization(context, SALES_KEY, day, {
        **stats.as_dict(), "dagster/row_count": conservation["loaded"],
        "rejected": conservation["rejected"], "landed": conservation["landed"],
        "ledger_entries": dg.MetadataValue.md("\n".join(f"- {x}" for x in out.ledger) or "_none_"),
        "days_requested_again": dg.MetadataValue.json(sorted(stats.days_to_reload)),
        "columns_added": dg.MetadataValue.json(stats.columns_added),
        "preview": markdown_table(_preview(engine, day)),
        "table": sales_table.name, "database": warehouse.display_url(),
        "dagster/column_schema": schema[0]})
    target = latest_materialization(context, SALES_KEY, day)  # one lookup for the three checks
    if _selected(context, conservation_check):
        yield day_verdict(context, conservation_check, day, not conservation["violations"], {
            "landed": conservation["landed"], "loaded": conservation["loaded"],
            "rejected": conservation["rejected"],
            "violations": dg.MetadataValue.json(conservation["violations"])}, target=target)
    if _selected(context, pk_check):
        yield day_verdict(context, pk_check, day, not out.duplicates,
                          {"violations": dg.MetadataValue.json(out.duplicates)}, target=target)
    if _selected(context, schema_check):
        yield day_verdict(context, schema_check, day,
                          not stats.columns_added and not out.several_layouts,
                          {"columns_added": dg.MetadataValue.json(stats.columns_added),
                           "several_layouts": out.several_layouts},
                          severity=dg.AssetCheckSeverity.WARN, target=target)


def _day_events(context: dg.AssetExecutionContext, platform: PlatformResource,
                warehouse: WarehouseResource, engine, out: DayPass, known_applied: bool, schema):
    """The day's own materializations and verdicts, for the stages it finished (its aggregates
    and rejects come after every load of the run: ``_after_the_loads``)."""
    if out.superseded:
        context.log.warning(f"{out.day}: a run that read newer landed rows already cleaned the "
                            "day; its result stands and this run leaves the day alone")
    if out.cleaning is not None:
        yield from _cleaning_events(context, platform, out, known_applied)
    if out.blocked:
        context.log.error(out.blocked)
        try:  # an unreachable webhook must not stop the other days
            report_blocked_day(context, platform, out.day, reject_rate_check.key, out.blocked)
        except Exception as exc:  # noqa: BLE001 - logged; the alert file holds the alert
            context.log.warning(f"{out.day}: the alert could not be sent: {_one_line(exc)}")
    if out.encryption is not None and out.encryption.published:
        yield day_materialization(context, ENCRYPTED_KEY, out.day, {
            "dagster/row_count": out.encryption.rows, "rows": out.encryption.rows,
            "key_id": platform.keyring().active.key_id,
            "distinct_customer_tokens": out.encryption.distinct_customers,
            "distinct_product_tokens": out.encryption.distinct_products})
    elif out.encryption is not None:
        context.log.warning(f"{out.day}: a run that read newer cleaned rows already published "
                            "the day's encrypted layer; this run's is not published")
    if out.load is not None:
        yield from _sales_events(context, warehouse, engine, out, schema)


def _after_the_loads(context: dg.AssetExecutionContext, engine, passes: list[DayPass]):
    """Each day's aggregates and rejects once every load of the run is done: a later day's load
    can move an earlier day's rows to sales_rejects (a transaction id on two days)."""
    selected = context.selected_asset_keys
    for out in passes:
        if _aggregates_due(selected, out):
            try:
                _timed(out, "aggregate", aggregate_one_day, engine, out.day, selected, out)
            except Exception as exc:  # noqa: BLE001 - the day's failure, reported by the step
                out.error = exc
                context.log.error(f"{out.day} failed: " + "".join(traceback.format_exception(exc)))
            for key, numbers in out.aggregates.items():
                yield day_materialization(context, key, out.day, numbers)
        if REJECTS_KEY in selected and not out.superseded:  # in the table, whatever happened
            yield _rejects_materialization(context, engine, out.day)
    yield from _days_the_loads_reached(context, engine, passes)


def _rejects_materialization(context: dg.AssetExecutionContext, engine, day: str):
    reasons = day_rejects(engine, day)
    return day_materialization(context, REJECTS_KEY, day, {
        "dagster/row_count": sum(reasons.values()), "rows": sum(reasons.values()),
        "rejected_by_reason": counts_table(reasons), "table": rejects_table.name})


def _days_the_loads_reached(context: dg.AssetExecutionContext, engine, passes: list[DayPass]):
    """Days outside the run whose rows a load moved to sales_rejects (their transaction id turned
    up on a day of this run): their daily aggregates and rejects change too, so they are refreshed
    and reported like the run's own days."""
    in_run = {p.day for p in passes}
    reached = sorted({d for p in passes if p.load is not None and p.error is None
                      for d in p.load.days_evicted_from} - in_run)
    selected = context.selected_asset_keys
    for day in reached:
        out = DayPass(day)
        aggregate_one_day(engine, day, selected, out)
        for key, numbers in out.aggregates.items():
            yield day_materialization(context, key, day, numbers)
        if REJECTS_KEY in selected:
            yield _rejects_materialization(context, engine, day)
    if reached:
        context.log.info(f"refreshed the daily aggregates of {len(reached)} day(s) outside the run "
                         f"whose rows its loads moved to sales_rejects: {', '.join(reached)}")


def _run_summary(context: dg.AssetExecutionContext, passes: list[DayPass], elapsed: float) -> None:
    """Range-level numbers on the run (its log), not on any day."""
    seconds = sum((p.seconds for p in passes), Counter())
    loaded = sum((p.conservation or {}).get("loaded", 0) for p in passes)
    context.log.info(
        f"{len(passes)} day(s) in {elapsed:.1f}s ("
        + ", ".join(f"{stage} {s:.1f}s" for stage, s in seconds.items())
        + f"): {sum(p.load is not None and not p.load.stale for p in passes)} loaded with {loaded} "
        f"rows in sales, {sum(bool(p.blocked) for p in passes)} blocked, "
        f"{sum(p.error is not None for p in passes)} failed")


@dg.multi_asset(
    name="sales_pipeline",
    specs=[*_specs(), *(aggregate.spec() for aggregate in DAILY_AGGREGATES)],
    check_specs=[reject_rate_check, conservation_check, pk_check, schema_check],
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    # No step retry policy: a retry would redo every day of the run. Transient database errors are
    # retried around each day's load (run_with_retries).
    pool="warehouse_writes",
    description="Each day of the run on its own, from landed rows to the warehouse: clean -> "
    "(rejects) -> encrypt -> load -> daily aggregates. Each day gets its own materializations "
    "and check verdicts; a blocked or failed day stops only itself.",
)
def sales_pipeline(context: dg.AssetExecutionContext, platform: PlatformResource,
                   warehouse: WarehouseResource):
    if orphans := _checks_without_their_asset(context):  # e.g. "Execute" on a check alone
        raise dg.Failure(description="a check of the sales step is evaluated by the stage that "
                         "materializes its asset, not on its own: select the asset with its checks ("
                         + ", ".join(orphans) + ")", allow_retries=False)
    started, days = time.monotonic(), list(context.partition_keys)
    engine = run_with_retries(warehouse.engine)  # first connect (Azure serverless resumes: 40613)
    known = None
    if CLEANED_KEY in context.selected_asset_keys:
        known = known_product_ids(engine, Tokenizer(platform.keyring()))
        if known is None:
            context.log.warning("dim_products is empty: the unknown_product rule is not applied")
    schema = [column_schema(reflected_table(engine, "sales"))
              if SALES_KEY in context.selected_asset_keys else None]  # re-read when a load adds columns
    passes: list[DayPass] = []
    workers = _day_workers(platform, LANDED, days)
    for _, out in in_order(lambda d: pass_day(context, platform, warehouse, engine, d, known),
                           days, workers):
        passes.append(out)
        try:
            yield from _day_events(context, platform, warehouse, engine, out, known is not None,
                                   schema)
        except Exception as exc:  # noqa: BLE001 - reporting a day never stops the next one
            out.error = out.error or exc
        if out.error is not None:
            context.log.error(f"{out.day} failed: " + "".join(traceback.format_exception(out.error)))
    yield from _after_the_loads(context, engine, passes)
    _record_stage_layers(context, engine, passes)
    _run_summary(context, passes, time.monotonic() - started)
    if failed := [p for p in passes if p.error is not None]:
        raise dg.Failure(
            description="; ".join(f"{p.day}: {_one_line(p.error)}" for p in failed),
            metadata={"failed_days": dg.MetadataValue.json([p.day for p in failed])},
            allow_retries=False) from None  # each day's traceback is in the log above
