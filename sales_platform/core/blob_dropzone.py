"""The drop zone in blob storage: blobs under an incoming prefix land through the folder's rules.

A blob is taken through the very same ``Intake.take`` as a dropped file, so nothing about landing
is forked: the blob is downloaded into a private spool under the blob's own name, with the blob's
last-modified time as the file's mtime (the settle rule is the folder's), and ``Intake`` hashes,
lands, archives (sealed), records the ledger entry and removes the spooled copy.

What the blob side adds:

- Identity of a version is the ledger's (exact name + content sha256); the blob's etag names
  *this upload* of it. The download is made with ``if_match=etag`` (the SDK keeps that condition
  on every range request) and the etag is read again afterwards: a blob overwritten while being
  read is left where it is and taken on a later tick with its new content.
- Settled means last-modified at least ``settle_s`` ago (checked before any byte is downloaded).
- After the landing (or a duplicate) is recorded, the blob is moved to the archive prefix: a
  server-side copy conditioned on the source etag, then a delete conditioned on the same etag, so
  a blob overwritten meanwhile (a new version) is never deleted. Quarantined blobs move to the
  quarantine prefix. A crash between landing and the move only means the next tick downloads it
  again and the ledger calls it a duplicate: nothing lands twice.
- Only names directly under the incoming prefix are drops (the ledger's names have no folders);
  deeper names are reported and left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sales_platform.core.intake import WAITING, FileOutcome, Intake, name_kind, printable_name
from sales_platform.core.landing import name_id
from sales_platform.core.warehouse.ledger import (
    DUPLICATE,
    LANDED,
    QUARANTINED,
    now_ns,
    record_not_landed,
)

log = logging.getLogger(__name__)
DEFAULT_INCOMING_PREFIX = "incoming/"
SKIPPED = "skipped"  # not a drop (temp, hidden, in a sub-folder): left alone, nothing recorded


@dataclass(frozen=True)
class BlobInfo:
    """One blob as listed: ``name`` relative to the storage resource's own prefix."""

    name: str
    etag: str
    last_modified: datetime  # timezone-aware (UTC)
    size: int


class BlobChangedError(OSError):
    """The blob is not (or no longer) the version with the etag that was asked for."""


class DropContainer(Protocol):
    """What the blob drop zone needs from a container (AzureBlobStorage implements it)."""

    def list_blobs(self, prefix: str) -> list[BlobInfo]: ...

    def download_to(self, name: str, etag: str, target: Path) -> None:
        """Write the blob's bytes to ``target``; BlobChangedError when its etag is not ``etag``."""

    def etag_of(self, name: str) -> str | None: ...

    def move_if_unchanged(self, name: str, etag: str, target: str) -> bool:
        """Copy ``name`` to ``target`` and delete it, both only while its etag is ``etag``;
        False (and the blob left where it is) when it changed."""


def same_etag(a: str | None, b: str | None) -> bool:
    """Listings and property calls quote etags differently; the value is what counts."""
    return a is not None and b is not None and a.strip('"') == b.strip('"')


def normalized_prefix(prefix: str) -> str:
    """``incoming`` and ``/incoming/`` both mean ``incoming/``; the root of the container is ''."""
    prefix = prefix.strip().strip("/")
    if any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(f"blob prefix {prefix!r}: '.' and '..' are not folders in a container")
    return f"{prefix}/" if prefix else ""


@dataclass(frozen=True)
class BlobDrop:
    """A listed blob with the drop zone's verdict on its name and age."""

    info: BlobInfo
    file_name: str  # the name the ledger knows it by (no folders)
    kind: str  # "csv", "unsafe" (quarantined without reading), "skip", "unsettled"
    reason: str | None = None

    @property
    def run_key(self) -> str:
        """One landing run per upload: the etag changes with every write of the blob."""
        return f"blob:{name_id(self.info.name)}:{self.info.etag.strip(chr(34))}"


def scan_blobs(container: DropContainer, incoming_prefix: str, settle_s: float,
               now: datetime | None = None) -> list[BlobDrop]:
    """Every blob under the prefix, classified by the folder's name rules and the settle rule.
    Cheap: one listing, no download."""
    prefix = normalized_prefix(incoming_prefix)
    now = now or datetime.now(UTC)
    drops = []
    for info in container.list_blobs(prefix):
        raw = info.name[len(prefix):]
        name = printable_name(raw)  # what the ledger, logs and run tags show
        if "/" in raw:
            drops.append(BlobDrop(info, name, "skip", f"{printable_name(info.name)}: in a sub-folder "
                                  f"of the drop zone {prefix or '(container root)'}; only direct "
                                  "names are taken"))
            continue
        kind, reason = name_kind(raw)
        if kind in ("temp", "hidden"):
            drops.append(BlobDrop(info, name, "skip", reason))
            continue
        age = (now - info.last_modified).total_seconds()
        if kind == "csv" and 0 <= age < settle_s:
            drops.append(BlobDrop(info, name, "unsettled", f"{name}: modified {age:.1f}s ago; "
                                  f"waits until unchanged for {settle_s:g}s"))
            continue
        drops.append(BlobDrop(info, name, kind, reason))
    return drops


class BlobIntake:
    """Lands the blob drop zone through an ``Intake`` (same lock, spool, ledger and archive)."""

    def __init__(self, intake: Intake, container: DropContainer,
                 incoming_prefix: str = DEFAULT_INCOMING_PREFIX, archive_prefix: str | None = None,
                 quarantine_prefix: str | None = None) -> None:
        self.intake = intake
        self.container = container
        self.incoming_prefix = normalized_prefix(incoming_prefix)
        base = self.incoming_prefix.rstrip("/") or "dropzone"
        self.archive_prefix = normalized_prefix(archive_prefix or f"{base}-archive")
        self.quarantine_prefix = normalized_prefix(quarantine_prefix or f"{base}-quarantine")
        if self.incoming_prefix in ("", self.archive_prefix, self.quarantine_prefix) or \
                self.archive_prefix.startswith(self.incoming_prefix) or \
                self.quarantine_prefix.startswith(self.incoming_prefix):
            raise ValueError(f"blob drop zone: the incoming prefix {self.incoming_prefix!r} must be "
                             f"a folder of its own, apart from the archive ({self.archive_prefix!r}) "
                             f"and quarantine ({self.quarantine_prefix!r}) prefixes")

    @property
    def spool(self) -> Path:
        return self.intake.areas.staging / "blob-spool"

    def run(self, only: set[str] | None = None) -> list[FileOutcome]:
        """Take every settled drop (or only the file names given); one outcome per drop taken."""
        outcomes = []
        with self.intake.areas.lock("intake"):  # the folder intake's lock: one lander at a time
            shutil.rmtree(self.spool, ignore_errors=True)  # left by a process that died
            for drop in scan_blobs(self.container, self.incoming_prefix, self.intake.settle_s):
                if only is not None and drop.file_name not in only:
                    continue
                if drop.kind == "skip":
                    if drop.reason:
                        log.warning(drop.reason)
                elif drop.kind == "unsettled":
                    outcomes.append(FileOutcome(drop.file_name, "", WAITING, error=drop.reason))
                else:
                    outcomes.append(self.take(drop))
        return outcomes

    def take(self, drop: BlobDrop) -> FileOutcome:
        info, name = drop.info, drop.file_name
        if drop.kind == "unsafe":
            return self._quarantine_unread(drop, drop.reason or f"{name}: not a drop")
        limit = self.intake.max_file_bytes
        if info.size > limit:
            return self._quarantine_unread(drop, f"{name}: {info.size} bytes, over the limit of "
                                                 f"{limit} (SALES_PLATFORM_MAX_FILE_BYTES)")
        folder = self.spool / f"{now_ns()}-{name_id(name)}"
        folder.mkdir(parents=True)
        try:
            copy = folder / name
            try:
                self.container.download_to(info.name, info.etag, copy)
            except (BlobChangedError, FileNotFoundError):
                return self._changed(name, "overwritten or removed while being read")
            if not same_etag(self.container.etag_of(info.name), info.etag):
                return self._changed(name, "overwritten while being read")
            stamp = info.last_modified.timestamp()
            os.utime(copy, (stamp, stamp))  # the folder's settle rule sees the blob's age
            outcome = self.intake.take(copy)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._move(drop, outcome)
        return outcome

    def _changed(self, name: str, what: str) -> FileOutcome:
        message = f"{name}: {what}; taken next time with its new content"
        log.warning(message)
        return FileOutcome(name, "", WAITING, error=message)

    def _move(self, drop: BlobDrop, outcome: FileOutcome) -> None:
        if outcome.status in (LANDED, DUPLICATE):
            # content-addressed like the sealed archive: one copy per (content, name)
            target = f"{self.archive_prefix}{outcome.sha256}/{drop.file_name}"
        elif outcome.status == QUARANTINED:
            target = self._quarantine_name(drop)
        else:
            return  # waiting: stays in the drop zone
        if not self.container.move_if_unchanged(drop.info.name, drop.info.etag, target):
            log.warning("%s was written again after it was read: left in the drop zone as a new "
                        "version", drop.info.name)

    def _quarantine_name(self, drop: BlobDrop) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"{self.quarantine_prefix}{stamp}-{name_id(drop.file_name)[:8]}/{drop.file_name}"

    def _quarantine_unread(self, drop: BlobDrop, reason: str) -> FileOutcome:
        """Quarantine without downloading (wrong name, too large): moved, recorded with why."""
        target = self._quarantine_name(drop)
        if not self.container.move_if_unchanged(drop.info.name, drop.info.etag, target):
            return self._changed(drop.file_name, "written again before it could be quarantined")
        log.error("quarantined %s", reason)
        intake = self.intake
        record_not_landed(intake.engine, drop.file_name, "", drop.info.size, QUARANTINED, reason,
                          f"blob:{target}", intake.code_version, intake.now)
        return FileOutcome(drop.file_name, "", QUARANTINED, error=reason)
