"""Landing again from the sealed archive, through the same intake and ledger as a drop.

- ``plan_reprocess`` / ``reprocess``: live versions landed under other landing settings than
  today's (time zone, start date, future tolerance, schema contract and policy, column limit) are
  landed again from their archived bytes, as a new landing of the same version: the ledger gets a
  ``reprocessed`` event saying why, and the days they had and the days they have now are requested.
- ``rebuild``: a lost warehouse's ledger and landed rows rebuilt from the archive's manifests,
  every arrival replayed in arrival order with the intake's own rules (a content that is current
  is a duplicate, a newer version of a name supersedes the older one, quarantined drops are
  recorded as they were), so superseded versions are in the ledger and their rows are not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

from sales_platform.core.archive_manifest import (
    ARRIVAL,
    REPROCESSED,
    Manifest,
    archived_without_manifest,
    changed_settings,
    read_manifests,
)
from sales_platform.core.crypto import archive_identity, open_platform_file
from sales_platform.core.intake import Intake
from sales_platform.core.landing import LANDED as LANDED_LAYER
from sales_platform.core.landing import FileRejected, fingerprint, name_id
from sales_platform.core.private_files import create_private, private_folder
from sales_platform.core.quality import route_timestamps
from sales_platform.core.store import fragment_files
from sales_platform.core.warehouse.ledger import (
    DUPLICATE,
    LANDED,
    LIVE,
    QUARANTINED,
    current_version_with_content,
    now_ns,
    record_not_landed,
)
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects

# A change of time zone moves a naive time by up to 26 hours (UTC-12 to UTC+14): versions with rows
# this close to the range may move into it.
ZONE_MARGIN = timedelta(days=2)
# Landing rejects whose verdict depends on the settings or the clock.
TIMESTAMP_REASONS = ("future_timestamp", "before_start_date", "invalid_timestamp")


class ArchiveError(ValueError):
    """The archive cannot give back what the ledger or a manifest names."""


@dataclass
class Candidate:
    file_name: str
    sha256: str
    why: str
    landed_ns: int


@dataclass
class RebuildReport:
    landed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # landed once, refused by today's settings
    days: set[str] = field(default_factory=set)


# --- archived bytes -------------------------------------------------------------------------------

def _spooled(intake: Intake, name: str, sha: str) -> Path:
    """The archived bytes of ``sha`` in the intake's private spool, checked against their sha256."""
    archived = intake.areas.archive / f"{sha}.csv.sealed"
    if not archived.is_file():
        raise ArchiveError(f"{name}: its archived copy archive/{archived.name} is missing")
    private_folder(intake.spool)
    copy = intake.spool / f"{now_ns()}-{name_id(name)}.csv"
    with os.fdopen(create_private(copy), "wb") as out:
        for chunk in open_platform_file(intake.keyring, archived, archive_identity(archived.name)):
            out.write(chunk)
    if fingerprint(copy)[0] != sha:
        copy.unlink(missing_ok=True)
        raise ArchiveError(f"{name}: archive/{archived.name} does not hold the bytes of its name")
    return copy


def _land_archived(intake: Intake, name: str, sha: str, landed_ns: int, when: datetime,
                   reprocessed: str | None = None) -> list[str]:
    copy = _spooled(intake, name, sha)
    try:
        return intake.land_again(copy, name, sha, landed_ns, when, reprocessed)
    finally:
        copy.unlink(missing_ok=True)


def _fragment_ns(intake: Intake, name: str, sha: str) -> int | None:
    """The landing key (ns) of the fragments a version has in place, if any."""
    mark = f"-{name_id(name)}-{sha[:16]}-"
    for folder in sorted((intake.areas.staging / LANDED_LAYER).glob("*")):
        for path in fragment_files(folder):
            if mark in path.name:
                return int(path.name.split("-", 1)[0])
    return None


# --- reprocess ------------------------------------------------------------------------------------

def _in(day: str, first: date, last: date) -> bool:
    return first <= date.fromisoformat(day) <= last


def _days_now_placed(intake: Intake, timestamps: list[str], first: date, last: date) -> list[str]:
    """Days in the range that today's rules give to timestamps rejected at landing."""
    if not timestamps:
        return []
    parsed, reasons = route_timestamps(pd.Series(timestamps, dtype=object), intake.lander.rules,
                                       intake.now)
    days = {str(ts.date()) for ts, r in zip(parsed, reasons, strict=True) if pd.isna(r)}
    return sorted(d for d in days if _in(d, first, last))


def _live_versions(intake: Intake) -> list[dict]:
    with intake.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(file_ledger).where(
            file_ledger.c.status.in_(LIVE)).order_by(file_ledger.c.file_id)).mappings()]


def _timestamp_rejects(intake: Intake) -> dict[tuple[str, str], list[str]]:
    with intake.engine.connect() as conn:
        rows = conn.execute(select(sales_rejects.c.source_file, sales_rejects.c.source_sha256,
                                   sales_rejects.c.timestamp)
                            .where(sales_rejects.c.stage == "landing",
                                   sales_rejects.c.reason.in_(TIMESTAMP_REASONS))).all()
    found: dict[tuple[str, str], list[str]] = {}
    for name, sha, text in rows:
        found.setdefault((name, sha), []).append(text or "")
    return found


def plan_reprocess(intake: Intake, first: date, last: date) -> list[Candidate]:
    """Live versions to land again for [first, last], in landing order: those with rows within
    ZONE_MARGIN of the range landed under other landing settings (or unknown ones), and those
    whose timestamps rejected at landing today's settings and clock place in the range."""
    import json

    records = list(read_manifests(intake.areas, intake.keyring))
    settings_of = {(m.file_name, m.sha256): m.settings for m in records if m.status == LANDED}
    arrival_ns = {(m.file_name, m.sha256): m.arrival_ns for m in records
                  if m.kind == ARRIVAL and m.status == LANDED}
    today = intake.landing_settings
    rejected = _timestamp_rejects(intake)
    wide_first, wide_last = first - ZONE_MARGIN, last + ZONE_MARGIN
    plan = []
    for row in _live_versions(intake):
        key = (row["file_name"], row["sha256"])
        touched = json.loads(row["days_touched"] or "[]")
        reasons = []
        changes = changed_settings(settings_of.get(key), today) \
            if any(_in(d, wide_first, wide_last) for d in touched) else []
        if changes:
            reasons.append(f"settings changed ({', '.join(changes)})")
        placed = _days_now_placed(intake, rejected.get(key, []), first, last)
        if placed:
            reasons.append(f"rows rejected at landing now fall on {', '.join(placed)}")
        if reasons:
            plan.append(Candidate(*key, "; ".join(reasons),
                                  _landing_ns(intake, *key, arrival_ns.get(key))))
    return plan


def _landing_ns(intake: Intake, name: str, sha: str, arrival: int | None) -> int:
    """The version's place in landing order (its arrival), one nanosecond off the fragments in
    place so that the new landing replaces them (a key of its own) without moving the version."""
    current = _fragment_ns(intake, name, sha)
    base = arrival if arrival is not None else current
    if base is None:
        return now_ns()
    return base ^ 1 if base == current else base


def reprocess(intake: Intake, plan: Iterable[Candidate],
              progress: Callable[[Candidate, list[str] | str], None] | None = None) -> set[str]:
    """Land each planned version again under today's settings; returns the days to load (those
    each version had and has now). A version today's settings refuse keeps its landing
    (``progress`` gets the reason) and is not recorded as reprocessed."""
    days: set[str] = set()
    with intake.areas.lock("intake"):
        for item in plan:
            when = datetime.now()
            try:
                requested = _land_archived(intake, item.file_name, item.sha256, item.landed_ns,
                                           when, f"reprocessed: {item.why}")
            except FileRejected as exc:
                if progress:
                    progress(item, f"refused under today's settings, kept as it was: {exc}")
                continue
            intake.remember(Manifest(item.file_name, item.sha256,
                                     (intake.areas.archive / f"{item.sha256}.csv.sealed").stat().st_size,
                                     LANDED, item.landed_ns, when.isoformat(), kind=REPROCESSED,
                                     detail=item.why), recorded_ns=now_ns())
            days.update(requested)
            if progress:
                progress(item, requested)
    return days


# --- rebuild --------------------------------------------------------------------------------------

def warehouse_contents(intake: Intake) -> dict[str, int]:
    """Rows in the tables a rebuild writes (all zero: the warehouse is empty)."""
    with intake.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (file_ledger, sales, sales_rejects)}


def arrivals(intake: Intake) -> tuple[list[Manifest], list[str]]:
    """The archive's arrivals in order, and the archived contents no manifest names."""
    records = [m for m in read_manifests(intake.areas, intake.keyring) if m.kind == ARRIVAL]
    return records, archived_without_manifest(intake.areas, records)


def rebuild(intake: Intake, records: list[Manifest], unnamed: list[str] = (),
            clear_landed: bool = True) -> RebuildReport:
    """Replay ``records`` (arrivals, in order), then ``unnamed`` archived contents in sha256 order
    under the name ``<sha256>.csv``. ``clear_landed``: the landed layer is emptied first (after a
    lost warehouse no ledger row accounts for what it holds)."""
    report = RebuildReport()
    with intake.areas.lock("intake"):
        if clear_landed:
            with intake.areas.lock("landing"):
                shutil.rmtree(intake.areas.staging / LANDED_LAYER, ignore_errors=True)
        for record in records:
            _replay(intake, record, report)
        for archived in unnamed:
            sha = archived.removesuffix(".csv.sealed")
            record = Manifest(f"{sha}.csv", sha, (intake.areas.archive / archived).stat().st_size,
                              LANDED, now_ns(), intake.now.isoformat(),
                              detail="archived before manifests: named by its sha256")
            intake.remember(record)
            _replay(intake, record, report)
    return report


def _replay(intake: Intake, record: Manifest, report: RebuildReport) -> None:
    when = datetime.fromisoformat(record.received_at)
    name, sha = record.file_name, record.sha256
    if record.status == QUARANTINED:
        record_not_landed(intake.engine, name, sha, record.size_bytes, QUARANTINED,
                          record.detail or "quarantined", record.quarantine_path,
                          intake.code_version, when)
        report.quarantined.append(name)
        return
    earlier = current_version_with_content(intake.engine, sha)
    if earlier is not None:  # the intake's own rule: content equal to a current version
        same = "the same file dropped again" if earlier["file_name"] == name else \
            f"same content as already landed file {earlier['file_name']}"
        record_not_landed(intake.engine, name, sha, record.size_bytes, DUPLICATE,
                          f"{name}: {same}; nothing reloaded", f"archive/{sha}.csv.sealed",
                          intake.code_version, when)
        report.duplicates.append(name)
        return
    try:
        report.days.update(_land_archived(intake, name, sha, record.arrival_ns, when))
        report.landed.append(name)
    except FileRejected as exc:
        record_not_landed(intake.engine, name, sha, record.size_bytes, QUARANTINED,
                          f"{exc} (rebuild: refused under today's settings; the original stays in "
                          f"archive/{sha}.csv.sealed)", f"archive/{sha}.csv.sealed",
                          intake.code_version, when)
        report.refused.append(name)
