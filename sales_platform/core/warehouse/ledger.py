"""The file-version ledger: one source of truth for what every dropped file became.

A file version is (exact file name, sha256 of its bytes). Its row in ``file_ledger`` holds its
current state; every change of state is also appended to ``file_events`` (history is never
overwritten). ``file_day_counts`` holds the rows the version landed per sale day, written once
when it lands. ``pending_days`` lists the days whose landed rows changed since their last load.

States: landed -> loaded | blocked (blocked -> loaded once the day loads); a version whose share of
records rejected at landing is over SALES_PLATFORM_MAX_REJECT_RATE is blocked when it lands (its
rows are not cleaned while the share stays over the limit: ``landed_accounts``); any live state ->
superseded (a newer version of the same name landed); quarantined and skipped_duplicate are
final for that drop. "loaded" is set only when every row the version landed is counted in
``sales`` or ``sales_rejects``, and no row of the versions it superseded is left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update

from sales_platform.core.landing import LandedAccounts, version_mark
from sales_platform.core.limits import stored_name
from sales_platform.core.quality import is_landing_block, landing_block
from sales_platform.core.warehouse.artifacts import Artifact, write_artifacts
from sales_platform.core.warehouse.conflicts import purge_superseded_rows
from sales_platform.core.warehouse.loading import SALES_LOAD_LOCK
from sales_platform.core.warehouse.locks import take_lock
from sales_platform.core.warehouse.rejects import DAY_STAGES, replace_file_rejects
from sales_platform.core.warehouse.tables import (
    file_day_counts,
    file_events,
    file_ledger,
    pending_days,
    sales,
    sales_rejects,
)

LANDED = "landed"
LOADED = "loaded"
BLOCKED = "blocked"
QUARANTINED = "quarantined"
DUPLICATE = "skipped_duplicate"
SUPERSEDED = "superseded"
REPROCESSED = "reprocessed"  # an event: the live version landed again under new settings
LIVE = (LANDED, LOADED, BLOCKED)  # the current version of a name is in one of these
LEDGER_LOCK = "file_ledger"


def now_ns() -> int:
    return time.time_ns()


def _ns_text(ns: int) -> str:
    return f"{ns:020d}"  # fixed width: text order is time order


@dataclass
class LandedVersion:
    file_name: str
    sha256: str
    size_bytes: int
    rows_read: int
    rows_rejected: int
    rows_by_day: Mapping[str, int]
    archive_path: str
    code_version: str
    rejects: pd.DataFrame | None = None  # landing rejects (no valid day, malformed records)
    columns: list[str] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)  # its landed fragments (data_objects)
    notes: list[str] = field(default_factory=list)  # read, but worth telling (an alias set aside)
    reprocessed: str | None = None  # why the live version is landed again (sales-platform reprocess)
    blocked: str | None = None  # quality.landing_block's line: over the reject rate at landing

    @property
    def rows_landed(self) -> int:
        return sum(self.rows_by_day.values())


def _event(conn: Connection, name: str, sha: str, status: str, detail: str | None,
           now: datetime) -> None:
    conn.execute(insert(file_events).values(file_name=name, sha256=sha, status=status,
                                            detail=detail, recorded_at=now))


def _key(name: str, sha: str):
    return and_(file_ledger.c.file_name == name, file_ledger.c.sha256 == sha)


def current_version_with_content(engine: Engine, sha: str) -> dict | None:
    """A current (live) version, under any name, whose content is ``sha``."""
    with engine.connect() as conn:
        row = conn.execute(select(file_ledger).where(file_ledger.c.sha256 == sha,
                                                     file_ledger.c.status.in_(LIVE))
                           .order_by(file_ledger.c.file_id)).mappings().first()
    return dict(row) if row else None


def live_versions_with_content(engine: Engine, shas: Sequence[str]) -> dict[str, str]:
    """sha256 -> the name of the first live version with that content, for the given shas (one
    query per 500, not one per file)."""
    found: dict[str, str] = {}
    unique = sorted(set(shas))
    with engine.connect() as conn:
        for start in range(0, len(unique), 500):
            rows = conn.execute(select(file_ledger.c.sha256, file_ledger.c.file_name).where(
                file_ledger.c.sha256.in_(unique[start:start + 500]),
                file_ledger.c.status.in_(LIVE)).order_by(file_ledger.c.file_id.desc())).all()
            found |= {sha: name for sha, name in rows}  # the first landed last: it wins
    return found


def quarantined_with_content(engine: Engine, sha: str) -> dict | None:
    """The newest quarantined version whose content is ``sha`` (a replay of an unchanged file)."""
    with engine.connect() as conn:
        row = conn.execute(select(file_ledger).where(file_ledger.c.sha256 == sha,
                                                     file_ledger.c.status == QUARANTINED)
                           .order_by(file_ledger.c.file_id.desc())).mappings().first()
    return dict(row) if row else None


def request_days(conn: Connection, days: Iterable[str], reason: str) -> None:
    """Mark days as needing a load (a later request replaces an earlier one's time)."""
    stamp = _ns_text(now_ns())
    for day in sorted(set(days)):
        value = date.fromisoformat(day)
        done = conn.execute(update(pending_days).where(pending_days.c.sale_date == value)
                            .values(requested_ns=stamp, reason=reason[:500])).rowcount
        if not done:
            conn.execute(insert(pending_days).values(sale_date=value, requested_ns=stamp,
                                                     reason=reason[:500]))


def pending_requests(engine: Engine) -> dict[str, str]:
    """Days waiting for a load -> the time of their latest request."""
    with engine.connect() as conn:
        rows = conn.execute(select(pending_days.c.sale_date, pending_days.c.requested_ns)).all()
    return {r.sale_date.isoformat(): r.requested_ns for r in rows}


def clear_pending(conn: Connection, day: str, snapshot_ns: int) -> None:
    """A load of ``day`` that read the landed rows as of ``snapshot_ns`` answers older requests."""
    conn.execute(delete(pending_days).where(pending_days.c.sale_date == date.fromisoformat(day),
                                            pending_days.c.requested_ns <= _ns_text(snapshot_ns)))


def record_landed(engine: Engine, version: LandedVersion, now: datetime) -> list[str]:
    """Record a landed version in one transaction; returns the days it asks to (re)load.

    Earlier live versions of the same name are superseded; the days they touched are requested
    too, so their rows leave the warehouse even on days the new version no longer has.
    """
    return record_landed_many(engine, [version], now)[0]


def record_landed_many(engine: Engine, versions: Sequence[LandedVersion],
                       now: datetime) -> list[list[str]]:
    """Record landed versions (a batch of one drop, in landing order) in one transaction, as
    ``record_landed`` does each: one commit and one lock for the batch, not one per file."""
    with engine.begin() as conn:
        take_lock(conn, LEDGER_LOCK)
        known = _names_in_ledger(conn, [v.file_name for v in versions])
        out: list[list[str]] = []
        plain: list[LandedVersion] = []
        for version in versions:
            if _plain(version, known):  # recorded together, in order with the others
                plain.append(version)
                out.append(sorted(version.rows_by_day))
                continue
            _record_plain(conn, plain, now)
            plain = []
            out.append(_record_landed(conn, version, now))
        _record_plain(conn, plain, now)
        return out


def _names_in_ledger(conn: Connection, names: Sequence[str]) -> set[str]:
    """The names among ``names`` the ledger has any version of (one query per 500)."""
    unique, found = sorted(set(names)), set()
    for start in range(0, len(unique), 500):
        found.update(conn.execute(select(file_ledger.c.file_name).distinct().where(
            file_ledger.c.file_name.in_(unique[start:start + 500]))).scalars())
    return found


def _plain(version: LandedVersion, known: set[str]) -> bool:
    """A first version of a new name, with rows on some day and nothing rejected or held: its
    record is a few inserts, which a batch makes together (``_record_plain``)."""
    return (version.file_name not in known and not version.reprocessed and not version.blocked
            and bool(version.rows_by_day) and not version.rows_rejected
            and (version.rejects is None or not len(version.rejects)))


def _record_plain(conn: Connection, versions: Sequence[LandedVersion], now: datetime) -> None:
    """What ``_record_landed`` records for plain versions, one statement per table for all."""
    if not versions:
        return
    conn.execute(insert(file_ledger), [dict(
        file_name=v.file_name, sha256=v.sha256, received_at=now, size_bytes=v.size_bytes,
        status=LANDED, rows_read=v.rows_read, rows_landed=v.rows_landed,
        rows_rejected=v.rows_rejected, days_touched=json.dumps(sorted(v.rows_by_day)),
        days_affected=json.dumps(sorted(v.rows_by_day)), error=None, archive_path=v.archive_path,
        code_version=v.code_version, processed_at=now) for v in versions])
    conn.execute(insert(file_day_counts), [
        {"file_name": v.file_name, "sha256": v.sha256, "sale_date": date.fromisoformat(d),
         "rows_landed": n} for v in versions for d, n in v.rows_by_day.items()])
    write_artifacts(conn, [a for v in versions for a in v.artifacts], now)
    conn.execute(insert(file_events), [dict(
        file_name=v.file_name, sha256=v.sha256, status=LANDED, recorded_at=now,
        detail=f"{v.rows_read} rows read, {v.rows_landed} landed on {len(v.rows_by_day)} day(s), "
        f"{v.rows_rejected} rejected at landing" + "".join(f"; note: {n}" for n in v.notes))
        for v in versions])
    reasons = {d: f"file {v.file_name} landed" for v in versions for d in sorted(v.rows_by_day)}
    for reason in dict.fromkeys(reasons.values()):
        request_days(conn, [d for d, r in reasons.items() if r == reason], reason)


def _record_landed(conn: Connection, version: LandedVersion, now: datetime) -> list[str]:
    own_days = sorted(version.rows_by_day)
    older = conn.execute(select(file_ledger).where(
        file_ledger.c.file_name == version.file_name, file_ledger.c.sha256 != version.sha256,
        file_ledger.c.status.in_(LIVE))).mappings().all()
    affected = set(own_days)
    if version.reprocessed:  # its rows leave the days the new settings no longer give them
        again = conn.execute(select(file_ledger.c.days_touched).where(
            _key(version.file_name, version.sha256))).scalar()
        affected.update(json.loads(again or "[]"))
        _event(conn, version.file_name, version.sha256, REPROCESSED, version.reprocessed, now)
    for row in older:
        affected.update(json.loads(row["days_touched"] or "[]"))
        conn.execute(update(file_ledger).where(file_ledger.c.file_id == row["file_id"])
                     .values(status=SUPERSEDED, processed_at=now))
        _event(conn, row["file_name"], row["sha256"], SUPERSEDED,
               f"superseded by version {version.sha256[:12]}", now)
    values = dict(
        size_bytes=version.size_bytes, status=LANDED, rows_read=version.rows_read,
        rows_landed=version.rows_landed, rows_rejected=version.rows_rejected,
        days_touched=json.dumps(own_days), days_affected=json.dumps(sorted(affected)),
        error=None, archive_path=version.archive_path, code_version=version.code_version,
        processed_at=now)
    key = _key(version.file_name, version.sha256)
    if conn.execute(select(file_ledger.c.file_id).where(key)).first():
        conn.execute(update(file_ledger).where(key).values(**values))  # dropped again later
    else:
        conn.execute(insert(file_ledger).values(file_name=version.file_name,
                                                sha256=version.sha256, received_at=now, **values))
    conn.execute(delete(file_day_counts).where(file_day_counts.c.file_name == version.file_name,
                                               file_day_counts.c.sha256 == version.sha256))
    if own_days:
        conn.execute(insert(file_day_counts), [
            {"file_name": version.file_name, "sha256": version.sha256,
             "sale_date": date.fromisoformat(d), "rows_landed": n}
            for d, n in version.rows_by_day.items()])
    replace_file_rejects(conn, version.file_name, version.sha256, version.rejects, now)
    write_artifacts(conn, version.artifacts, now)  # the fragments, with their ledger row
    _event(conn, version.file_name, version.sha256, LANDED,
           f"{version.rows_read} rows read, {version.rows_landed} landed on {len(own_days)} "
           f"day(s), {version.rows_rejected} rejected at landing"
           + "".join(f"; note: {n}" for n in version.notes), now)
    if version.blocked:  # its days are still requested: rows it supersedes must leave
        conn.execute(update(file_ledger).where(key).values(status=BLOCKED,
                                                           error=version.blocked))
        _event(conn, version.file_name, version.sha256, BLOCKED, version.blocked, now)
    if affected:
        request_days(conn, affected, f"file {version.file_name} "
                     + ("reprocessed" if version.reprocessed else "landed"))
    elif not version.blocked:  # every row rejected at landing, none to load: all counted
        conn.execute(update(file_ledger).where(key).values(status=LOADED))
        _event(conn, version.file_name, version.sha256, LOADED,
               "every row rejected at landing: nothing to load", now)
    return sorted(affected)


def record_not_landed(engine: Engine, name: str, sha: str, size: int, status: str, detail: str,
                      archive_path: str | None, code_version: str, now: datetime) -> None:
    """A drop that did not land (duplicate, quarantined): appended; a live entry is never
    overwritten (re-dropping a loaded file leaves its counts and state as they are)."""
    name = stored_name(name)  # a quarantined drop's shown name may be longer than any landed one
    with engine.begin() as conn:
        take_lock(conn, LEDGER_LOCK)
        row = conn.execute(select(file_ledger.c.file_id, file_ledger.c.status)
                           .where(_key(name, sha))).first()
        if row is None:
            conn.execute(insert(file_ledger).values(
                file_name=name, sha256=sha, size_bytes=size, status=status, error=detail,
                archive_path=archive_path, code_version=code_version, received_at=now,
                processed_at=now, days_touched="[]", days_affected="[]"))
        elif row.status not in LIVE:
            conn.execute(update(file_ledger).where(file_ledger.c.file_id == row.file_id)
                         .values(status=status, error=detail, processed_at=now))
        _event(conn, name, sha, status, detail, now)


def landed_accounts(engine: Engine, max_reject_rate: float) -> LandedAccounts:
    """The versions committed live rows account for, and those held back because their share of
    landing rejects is over ``max_reject_rate`` (the setting now: raising it releases them)."""
    with engine.connect() as conn:
        rows = conn.execute(select(file_ledger.c.file_name, file_ledger.c.sha256,
                                   file_ledger.c.rows_read, file_ledger.c.rows_rejected)
                            .where(file_ledger.c.status.in_(LIVE))).all()
    live = frozenset(version_mark(r.file_name, r.sha256) for r in rows)
    held = frozenset(version_mark(r.file_name, r.sha256) for r in rows
                     if landing_block(r.file_name, r.rows_read or 0, r.rows_rejected or 0,
                                      max_reject_rate))
    return LandedAccounts(live, held)


def blocked_at_landing(conn: Connection) -> list[dict]:
    """Live versions blocked at landing, oldest first: file_name, sha256, detail (the ledger's
    landing line) and days (those it has rows on; none when every row was rejected)."""
    rows = conn.execute(select(file_ledger.c.file_name, file_ledger.c.sha256, file_ledger.c.error,
                               file_ledger.c.days_touched)
                        .where(file_ledger.c.status == BLOCKED)
                        .order_by(file_ledger.c.file_id)).mappings().all()
    found = []
    for row in rows:
        line = next((x for x in (row["error"] or "").splitlines() if is_landing_block(x)), None)
        if line:
            found.append({"file_name": row["file_name"], "sha256": row["sha256"], "detail": line,
                          "days": json.loads(row["days_touched"] or "[]")})
    return found


def _live_versions_on(conn: Connection, day: str) -> list[dict]:
    rows = conn.execute(select(file_ledger).where(
        file_ledger.c.status.in_(LIVE), file_ledger.c.days_affected.like(f'%"{day}"%'))
    ).mappings().all()
    return [dict(r) for r in rows]


def blocked_days_detail(previous: str | None, was_blocked: bool, day: str, detail: str) -> str:
    """A version's error once ``day`` is blocked with ``detail`` (a line starting with the day):
    one line per blocked day, in day order, so a file spanning two blocked days names both; a day
    blocked again replaces its own line."""
    lines = [line for line in (previous or "").splitlines()
             if was_blocked and line and not line.startswith(f"{day} ")]
    return "\n".join(sorted([*lines, detail]))


def mark_blocked(engine: Engine, day: str, detail: str, now: datetime) -> list[str]:
    """Versions with rows on a day that the reject-rate check blocked; returns their names."""
    names = []
    with engine.begin() as conn:
        take_lock(conn, LEDGER_LOCK)
        for row in _live_versions_on(conn, day):
            if day not in json.loads(row["days_touched"] or "[]"):
                continue
            names.append(row["file_name"])
            error = blocked_days_detail(row["error"], row["status"] == BLOCKED, day, detail)
            conn.execute(update(file_ledger).where(file_ledger.c.file_id == row["file_id"])
                         .values(status=BLOCKED, error=error, processed_at=now))
            _event(conn, row["file_name"], row["sha256"], BLOCKED, detail, now)
    return names


def purge_blocked_day(engine: Engine, day: str) -> list[str]:
    """A blocked day loads nothing, but rows of versions superseded since its last load must still
    leave ``sales``; days whose cross-day conflict that ends are requested. Returns those days."""
    with engine.begin() as conn:
        take_lock(conn, SALES_LOAD_LOCK)
        released = purge_superseded_rows(conn, date.fromisoformat(day))
        if released:
            request_days(conn, released, f"superseded rows left blocked day {day}")
    return released


def accounted_rows(conn: Connection, day: str) -> dict[tuple[str, str], int]:
    """Rows of ``day`` in ``sales`` plus its cleaning/conflict rejects, per file version."""
    value = date.fromisoformat(day)
    counts: dict[tuple[str, str], int] = {}
    for table, where in ((sales, sales.c.sale_date == value),
                         (sales_rejects, and_(sales_rejects.c.sale_date == value,
                                              sales_rejects.c.stage.in_(DAY_STAGES)))):
        for name, sha, n in conn.execute(
                select(table.c.source_file, table.c.source_sha256, func.count())
                .where(where).group_by(table.c.source_file, table.c.source_sha256)).all():
            counts[(name, sha)] = counts.get((name, sha), 0) + n
    return counts


def landed_rows(conn: Connection, day: str) -> dict[tuple[str, str], int]:
    """Rows each live version landed on ``day``."""
    rows = conn.execute(
        select(file_day_counts.c.file_name, file_day_counts.c.sha256, file_day_counts.c.rows_landed)
        .select_from(file_day_counts.join(file_ledger, and_(
            file_ledger.c.file_name == file_day_counts.c.file_name,
            file_ledger.c.sha256 == file_day_counts.c.sha256)))
        .where(file_day_counts.c.sale_date == date.fromisoformat(day),
               file_ledger.c.status.in_(LIVE))).all()
    return {(r.file_name, r.sha256): r.rows_landed for r in rows}


def quarantined_files(conn: Connection) -> list[dict]:
    """Files whose newest version is in quarantine (a corrected drop of the same name clears
    one): name, sha256, reason and when, oldest first."""
    newest = select(func.max(file_ledger.c.file_id)).group_by(file_ledger.c.file_name)
    rows = conn.execute(
        select(file_ledger.c.file_name, file_ledger.c.sha256, file_ledger.c.error,
               file_ledger.c.processed_at)
        .where(file_ledger.c.file_id.in_(newest), file_ledger.c.status == QUARANTINED)
        .order_by(file_ledger.c.file_id)).mappings().all()
    return [dict(r) for r in rows]


def _older_rows_left(conn: Connection, name: str, sha: str, day: str) -> bool:
    """Whether rows of another version of ``name`` are still counted on ``day``."""
    return any(n for (file, other), n in accounted_rows(conn, day).items()
               if file == name and other != sha)


def refresh_versions(conn: Connection, day: str, now: datetime) -> dict[str, str]:
    """Re-derive the state of every live version that affects ``day`` from counts.

    A version is loaded when, on each of its days, the rows it landed equal its rows in sales plus
    its rejects, and on the days only the versions it superseded had, none of their rows is left.
    Returns name -> new state for versions whose state changed.
    """
    changed: dict[str, str] = {}
    cache: dict[str, tuple[dict, dict]] = {}
    for row in _live_versions_on(conn, day):
        if row["status"] == LOADED:
            continue
        own = json.loads(row["days_touched"] or "[]")
        others = sorted(set(json.loads(row["days_affected"] or "[]")) - set(own))
        ident = (row["file_name"], row["sha256"])
        complete = True
        for d in own:
            if d not in cache:
                cache[d] = (landed_rows(conn, d), accounted_rows(conn, d))
            landed, accounted = cache[d]
            if landed.get(ident, 0) != accounted.get(ident, 0):
                complete = False
                break
        if complete and any(_older_rows_left(conn, *ident, d) for d in others):
            complete = False
        if complete:
            conn.execute(update(file_ledger).where(file_ledger.c.file_id == row["file_id"])
                         .values(status=LOADED, error=None, processed_at=now))
            _event(conn, row["file_name"], row["sha256"], LOADED,
                   f"every landed row counted in sales or sales_rejects (last day {day})", now)
            changed[row["file_name"]] = LOADED
    return changed


def versions_awaiting_load(engine: Engine) -> list[dict]:
    """Live versions not loaded yet, with the days they affect (for run tags and reports)."""
    with engine.connect() as conn:
        rows = conn.execute(select(file_ledger.c.file_name, file_ledger.c.sha256,
                                   file_ledger.c.days_affected)
                            .where(file_ledger.c.status.in_((LANDED, BLOCKED)))
                            .order_by(file_ledger.c.file_id)).mappings().all()
    return [{**r, "days": json.loads(r["days_affected"] or "[]")} for r in rows]


def ledger_rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(file_ledger).order_by(file_ledger.c.file_id))
                .mappings().all()]


def versions_on_day(engine: Engine, day: str) -> list[dict]:
    with engine.connect() as conn:
        return _live_versions_on(conn, day)
