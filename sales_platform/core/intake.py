"""Intake of the drop zone: land every pending file once, archive it, quarantine what is unreadable.

A file is identified by its content (sha256). The same content under another name is skipped and
archived; a new version under the same name replaces the older version's rows. The whole intake
runs under an inter-process lock so concurrent runs never land the same file twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from sales_platform.core.crypto import Keyring, seal_file
from sales_platform.core.landing import (
    FileRejected,
    Lander,
    file_key,
    fingerprint,
    landing_rejects_of,
    same_file_name,
)
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.records import (
    LEDGER_DUPLICATE,
    LEDGER_LANDED,
    LEDGER_QUARANTINED,
    LedgerEntry,
    ledger_landed_by_sha,
    ledger_record,
    ledger_supersede,
    record_source_schema,
    replace_file_rejects,
)

log = logging.getLogger(__name__)
IGNORED_SUFFIXES = (".tmp", ".partial", ".part", ".crdownload")


@dataclass
class FileOutcome:
    file_name: str
    sha256: str
    status: str
    rows_read: int = 0
    rows_landed: int = 0
    rows_rejected: int = 0
    rows_by_day: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    columns: list[str] = field(default_factory=list)
    new_layout: bool = False


def pending_files(incoming: Path) -> list[Path]:
    """Files ready to land: not hidden, not a temp file still being written."""
    if not incoming.is_dir():
        return []
    return sorted(
        p for p in incoming.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IGNORED_SUFFIXES)
    )


class Intake:
    def __init__(self, areas: DataAreas, engine: Engine, keyring: Keyring,
                 contract: SchemaContract, rules: QualityRules, code_version: str,
                 now: datetime | None = None,
                 archive_sink: Callable[[str, Path], str] | None = None) -> None:
        self.areas = areas
        self.engine = engine
        self.keyring = keyring
        self.code_version = code_version
        self.archive_sink = archive_sink  # e.g. blob storage: a second, off-machine sealed copy
        self.now = now or datetime.now()
        self.lander = Lander(areas, keyring, contract, rules, self.now)

    def run(self, only: set[str] | None = None) -> list[FileOutcome]:
        """Land pending files (or only those named); returns one outcome per file handled."""
        with self.areas.lock("intake"):
            return [self.take(path) for path in pending_files(self.areas.incoming)
                    if only is None or path.name in only]

    def take(self, path: Path) -> FileOutcome:
        sha, size = fingerprint(path)
        earlier = ledger_landed_by_sha(self.engine, sha)
        if earlier is not None:
            return self._skip_duplicate(path, sha, size, earlier["file_name"])
        try:
            result = self.lander.land(path, sha, size)
        except FileRejected as exc:
            return self._quarantine(path, sha, size, str(exc))
        archive = self._archive(path, sha)
        rejects = landing_rejects_of(self.areas, path.name, sha)
        replace_file_rejects(self.engine, path.name, sha, rejects, self.now)
        ledger_supersede(self.engine, path.name, sha)
        new_layout = record_source_schema(self.engine, path.name, sha, result.columns, self.now)
        ledger_record(self.engine, LedgerEntry(
            file_name=path.name, sha256=sha, size_bytes=size, status=LEDGER_LANDED,
            rows_read=result.rows_read, rows_landed=result.rows_landed,
            rows_rejected=result.rows_rejected, days_touched=result.days,
            archive_path=str(archive.relative_to(self.areas.root)),
            code_version=self.code_version), self.now)
        _write_day_counts(self.areas, path.name, sha, dict(result.rows_by_day))
        path.unlink()
        log.info("landed %s: %d rows read, %d landed for %d day(s), %d rejected", path.name,
                 result.rows_read, result.rows_landed, len(result.days), result.rows_rejected)
        return FileOutcome(path.name, sha, LEDGER_LANDED, result.rows_read, result.rows_landed,
                           result.rows_rejected, dict(result.rows_by_day), columns=result.columns,
                           new_layout=new_layout)

    def _archive(self, path: Path, sha: str) -> Path:
        # content-addressed: the same content dropped under two names is archived once
        target = self.areas.archive / f"{sha}.csv.sealed"
        if not target.exists():
            seal_file(self.keyring.active, path, target)
            if self.archive_sink is not None:
                self.archive_sink(f"archive/{target.name}", target)
        return target

    def _skip_duplicate(self, path: Path, sha: str, size: int, first_name: str) -> FileOutcome:
        message = f"{path.name}: same content as already landed file {first_name}; skipped"
        log.info(message)
        archive = self._archive(path, sha)
        ledger_record(self.engine, LedgerEntry(
            file_name=path.name, sha256=sha, size_bytes=size, status=LEDGER_DUPLICATE,
            error=message, archive_path=str(archive.relative_to(self.areas.root)),
            code_version=self.code_version), self.now)
        path.unlink()
        return FileOutcome(path.name, sha, LEDGER_DUPLICATE, error=message)

    def _quarantine(self, path: Path, sha: str, size: int, reason: str) -> FileOutcome:
        log.error("quarantined %s", reason)
        target = self.areas.quarantine / f"{file_key(path.name, sha)}{path.suffix}"
        shutil.move(path, target)
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        ledger_record(self.engine, LedgerEntry(
            file_name=path.name, sha256=sha, size_bytes=size, status=LEDGER_QUARANTINED,
            error=reason, archive_path=str(target.relative_to(self.areas.root)),
            code_version=self.code_version), self.now)
        return FileOutcome(path.name, sha, LEDGER_QUARANTINED, error=reason)


def _counts_path(areas: DataAreas, name: str, sha: str) -> Path:
    return areas.staging / "landed_counts" / f"{file_key(name, sha)}.json"


def _write_day_counts(areas: DataAreas, name: str, sha: str, counts: dict[str, int]) -> None:
    path = _counts_path(areas, name, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.json"):
        if same_file_name(old.name, name):
            old.unlink()
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(counts))
    os.replace(tmp, path)


def landed_rows_for_day(areas: DataAreas, day: str) -> dict[str, int]:
    """Rows landed for ``day`` per current file version (from the landing counts)."""
    folder = areas.staging / "landed_counts"
    counts: dict[str, int] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            rows = json.loads(path.read_text()).get(day, 0)
            if rows:
                counts[path.stem] = rows
    return counts
