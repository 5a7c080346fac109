"""Intake of the drop zone: every path that lands files (sensor runs, the daily job, backfills,
the CLI) goes through ``Intake``, so the same rules hold everywhere.

- Only regular files named ``*.csv`` are taken. Symlinks (never followed), FIFOs, folders and
  other names are moved out of the way to quarantine/ with a reason (their content is never read)
  and recorded in the ledger; hidden files are left alone with a warning; temp names (``*.tmp``,
  ``*.partial``...) are in progress and left for later.
- A file is taken only when settled (unmodified for ``settle_s`` seconds). It is opened once and
  copied to a private spool while hashed, so the sha256 is of the bytes actually landed; when its
  size, mtime or inode changed meanwhile it is left for the next attempt.
- The drop is removed only after its rows are landed, its sealed archive copy is durable and its
  ledger entry is committed, and only if it is still the file that was read.
- One unreadable, oversized or malformed file is quarantined with a reason; it never blocks the
  other files. The whole intake runs under an inter-process lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from sales_platform.core.archive_manifest import (
    MANIFESTS,
    Manifest,
    landing_settings,
    write_manifest,
)
from sales_platform.core.crypto import Keyring, archive_identity, seal_file
from sales_platform.core.landing import (
    MAX_COLUMNS,
    FileRejected,
    Lander,
    LandingResult,
    name_id,
    remove_orphans,
)
from sales_platform.core.limits import MAX_NAME_BYTES
from sales_platform.core.private_files import create_private, private_folder
from sales_platform.core.quality import QualityRules, landing_block
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas, SyncBatch, safe_name
from sales_platform.core.warehouse.ledger import (
    DUPLICATE,
    LANDED,
    QUARANTINED,
    LandedVersion,
    landed_accounts,
    live_versions_with_content,
    now_ns,
    record_landed,
    record_landed_many,
    record_not_landed,
)
from sales_platform.core.warehouse.schema_log import record_source_schema, record_source_schemas

log = logging.getLogger(__name__)
TEMP_SUFFIXES = (".tmp", ".partial", ".part", ".crdownload")
CSV_SUFFIXES = (".csv",)
REASON_SUFFIX = ".reason.txt"
WAITING = "waiting"  # not taken this time (still being written, changed while read)
DEFAULT_MAX_FILE_BYTES = 20 << 30
DEFAULT_BATCH_FILES = 500  # settings.DEFAULT_LANDING_BATCH_FILES
BATCH_BYTES = 1 << 30  # a batch closes once its files hold this much


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
    days_requested: list[str] = field(default_factory=list)
    blocked: str | None = None  # over the reject rate at landing: landed, its rows held back


class FileChanged(Exception):
    """The file changed while it was being read: it is left for the next attempt."""


@dataclass(frozen=True)
class DropEntry:
    path: Path
    kind: str  # "csv" (to take), "temp" (in progress), "hidden" (left alone), "unsafe"
    reason: str | None = None


def quarantine_name(name: str, at_ns: int) -> str:
    """``<stem>__<UTC time>-<name id>.csv``: readable, sorted by time, unique per name and moment
    (the name id keeps two names that sanitize alike apart)."""
    path = Path(name)
    csv = path.suffix.lower() in CSV_SUFFIXES
    stem = safe_name(path.stem if csv else name)[:80]
    moment = datetime.fromtimestamp(at_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S") + f"{at_ns % 10**9:09d}"
    return f"{stem}__{moment}-{name_id(name)[:8]}{path.suffix if csv else ''}"


class ReplayError(ValueError):
    """A quarantined file cannot be put back into the drop zone."""


def replay_quarantined(areas: DataAreas, quarantined: Path) -> Path:
    """Move a (fixed) quarantined file back into the drop zone under its original name and remove its
    reason file; it lands as a new version on the next intake. Refuses links, other folders and a
    drop-zone name already taken (nothing is overwritten)."""
    path = quarantined if quarantined.is_absolute() else areas.quarantine / quarantined
    if path.name.endswith(REASON_SUFFIX):
        path = path.with_name(path.name.removesuffix(REASON_SUFFIX))
    if path.parent.resolve() != areas.quarantine.resolve():
        raise ReplayError(f"{quarantined}: not a file in {areas.quarantine}")
    if path.is_symlink() or not path.is_file():
        raise ReplayError(f"{quarantined}: not a regular quarantined file")
    reason = path.with_name(path.name + REASON_SUFFIX)
    original = _original_name(reason) or path.name
    target = areas.incoming / original
    areas.incoming.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)  # fails if the name is taken: never overwrites a newer drop
        os.unlink(path)
    except FileExistsError:
        raise ReplayError(f"{target} already exists: land or move it first") from None
    except OSError:  # no hard links here (another device, some mounts): checked rename instead
        if target.exists():
            raise ReplayError(f"{target} already exists: land or move it first") from None
        os.rename(path, target)
    # a deliberate re-drop: a new mtime gives it a new sensor run key (content, name and mtime),
    # so even unchanged content is taken again rather than skipped as the run already done
    os.utime(target)
    reason.unlink(missing_ok=True)
    return target


def _original_name(reason: Path) -> str | None:
    try:
        first = reason.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    name = first.removeprefix("file: ").strip()
    return name if first.startswith("file: ") and name and "/" not in name and name not in (".", "..") \
        else None


def classify(path: Path) -> DropEntry:
    """What the drop zone entry is, without following links or opening it."""
    name = path.name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return DropEntry(path, "gone")
    if name.endswith(TEMP_SUFFIXES) or name.startswith("."):
        return DropEntry(path, *name_kind(name))
    name = printable_name(name)  # from here on the name is only shown
    if stat.S_ISLNK(st.st_mode):
        return DropEntry(path, "unsafe", f"{name}: symbolic link, not followed (drop the file itself)")
    if not stat.S_ISREG(st.st_mode):
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "FIFO" if stat.S_ISFIFO(st.st_mode) \
            else "special file"
        return DropEntry(path, "unsafe", f"{name}: a {kind}, not a regular file")
    return DropEntry(path, *name_kind(path.name))


# Control and format characters: a newline forges a log line or a reason file's line, ESC drives
# the terminal, U+202E reverses what follows; a name carrying one is quarantined and shown escaped.
UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable_name(name: str) -> str:
    """``name`` as text every store and reader takes (ledger, reason file, logs, terminal, Dagster
    metadata): the bytes of a name that is not UTF-8 (read by Python as surrogate escapes) shown as
    ``\\xNN``, control and format characters as ``\\xNN`` / ``\\uNNNN``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(_escaped(ch) if unicodedata.category(ch) in UNSHOWN_CATEGORIES else ch
                   for ch in text)


def _not_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes of undecodable bytes
        return True
    return False


def _escaped(ch: str) -> str:
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def name_problem(name: str) -> str | None:
    """Why a file name cannot be a drop's name as it is, or None. One rule for every way in: folder
    and blob drops, HTTP uploads."""
    shown = printable_name(name)
    if shown != name:
        what = "is not valid UTF-8 (its other bytes" if _not_utf8(name) else \
            "has control/format characters (they are"
        return f"{shown}: the file name {what} shown as \\xNN or \\uNNNN); rename the file and " \
               "drop it again"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"{name[:60]}…: the file name is {size} bytes in UTF-8, over the "
                f"{MAX_NAME_BYTES} a file system allows; use a shorter name")
    return None


def name_kind(name: str) -> tuple[str, str | None]:
    """The drop zone's rules on a name alone (shared by the folder and the blob drop zone):
    ("temp" | "hidden" | "unsafe" | "csv", reason)."""
    if name.endswith(TEMP_SUFFIXES):
        return "temp", None
    shown = printable_name(name)
    if name.startswith("."):
        return "hidden", f"{shown}: hidden file left alone"
    problem = name_problem(name)
    if problem:
        return "unsafe", problem
    if not name.lower().endswith(CSV_SUFFIXES):
        return "unsafe", f"{name}: not a .csv file (the drop zone takes *.csv only)"
    return "csv", None


def drop_zone_entries(incoming: Path) -> list[DropEntry]:
    if not incoming.is_dir():
        return []
    return [e for e in (classify(p) for p in sorted(incoming.iterdir())) if e.kind != "gone"]


def _arrival(entry: DropEntry) -> tuple[str, int]:
    try:  # a rename or link into a folder changes the file's ctime: when it arrived there
        return entry.path.name, os.lstat(entry.path).st_ctime_ns
    except FileNotFoundError:
        return entry.path.name, 0


def drop_entries(folders: Sequence[Path]) -> list[DropEntry]:
    """The entries of every drop folder (the drop zone, the uploads folder) by name, and two files
    of one name (a folder drop and an upload) in the order they arrived: both land, the later as
    the newer version."""
    return sorted((e for folder in folders for e in drop_zone_entries(folder)), key=_arrival)


def pending_files(incoming: Path) -> list[Path]:
    """CSV files in the drop zone (settled or not)."""
    return [e.path for e in drop_zone_entries(incoming) if e.kind == "csv"]


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def clear_spool(spool: Path) -> None:
    """Plaintext copies left by a process that died (kill -9 mid-read) go at the next start; a link
    planted in the spool's place is removed, never followed."""
    if spool.is_symlink():
        spool.unlink()
    shutil.rmtree(spool, ignore_errors=True)


def duplicate_message(name: str, first_name: str) -> str:
    same = "the same file dropped again" if first_name == name else \
        f"same content as already landed file {first_name}"
    return f"{name}: {same}; nothing reloaded"


class _Batch:
    """Drops gathered for one landing batch: at most ``size`` files, distinct names (a second
    file of a name, an upload and a folder drop, lands in the next batch, as the newer version),
    about BATCH_BYTES of content (the spool and the work folders hold one batch)."""

    def __init__(self, size: int) -> None:
        self.size, self.paths, self.names, self.bytes = size, [], set(), 0

    def full(self, path: Path) -> bool:
        return bool(self.paths) and (len(self.paths) >= self.size or path.name in self.names
                                     or self.bytes >= BATCH_BYTES)

    def add(self, path: Path) -> None:
        self.paths.append(path)
        self.names.add(path.name)
        try:
            self.bytes += os.lstat(path).st_size
        except FileNotFoundError:
            pass


@dataclass
class _Landed:
    path: Path
    before: os.stat_result
    result: LandingResult  # complete once the lander's queue is flushed
    copy: Path  # the spooled bytes, archived once routed
    landed_ns: int
    version: LandedVersion | None = None


@dataclass
class _Landing:
    """A batch being landed: versions split and waiting for their commit, duplicates waiting to
    be recorded after it, outcomes so far."""

    landing: list[_Landed] = field(default_factory=list)
    duplicates: list[tuple] = field(default_factory=list)
    done: list[FileOutcome] = field(default_factory=list)
    shas: dict[str, str] = field(default_factory=dict)  # content landed in this batch -> name
    names: set[str] = field(default_factory=set)  # names landed in this batch

    def landed(self, item: _Landed) -> None:
        self.landing.append(item)
        self.shas[item.result.sha256] = item.path.name
        self.names.add(item.path.name)

    def first_with(self, sha: str, live_name: str | None) -> str | None:
        """The name a drop of content ``sha`` duplicates, at its place in the batch: a version
        landed earlier in the batch, or a live one no earlier file of the batch supersedes."""
        if sha in self.shas:
            return self.shas[sha]
        return live_name if live_name and live_name not in self.names else None


class Intake:
    def __init__(self, areas: DataAreas, engine: Engine, keyring: Keyring,
                 contract: SchemaContract, rules: QualityRules, code_version: str,
                 now: datetime | None = None,
                 archive_sink: Callable[[str, Path], str] | None = None,
                 settle_s: float = 2.0, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 max_columns: int = MAX_COLUMNS, max_reject_rate: float = 0.2,
                 batch_files: int = DEFAULT_BATCH_FILES) -> None:
        self.areas = areas
        self.engine = engine
        self.keyring = keyring
        self.code_version = code_version
        self.archive_sink = archive_sink  # e.g. blob storage: a second, off-machine sealed copy
        self.now = now or datetime.now()
        self.settle_s = settle_s
        self.max_file_bytes = max_file_bytes
        self.max_reject_rate = max_reject_rate
        self.batch_files = batch_files  # drops committed together (one ledger transaction)
        self.lander = Lander(areas, keyring, contract, rules, self.now, max_columns)
        self.stage, self.run_id = "raw_sales", None  # what the data-object ledger names

    @property
    def spool(self) -> Path:
        return self.areas.staging / "spool"


    def run(self, only: set[str] | None = None) -> list[FileOutcome]:
        """Take what is ready in the drop zone (or only the names given); one outcome per entry."""
        outcomes = []
        with self.areas.lock("intake"):
            clear_spool(self.spool)
            self.remove_orphans()
            batch = _Batch(self.batch_files)
            for entry in drop_entries(self.areas.drop_folders):
                if only is not None and printable_name(entry.path.name) not in only:
                    continue  # names travel in run config as printable text
                if entry.kind == "hidden":
                    log.warning(entry.reason)
                elif entry.kind == "unsafe":
                    outcomes.append(self._quarantine_entry(entry.path, entry.reason or ""))
                elif entry.kind == "csv":
                    if batch.full(entry.path):
                        outcomes += self._take_batch(batch.paths)
                        batch = _Batch(self.batch_files)
                    batch.add(entry.path)
            outcomes += self._take_batch(batch.paths)
        return outcomes

    def take(self, path: Path) -> FileOutcome:
        return self._take_batch([path])[0]

    def _take_batch(self, paths: list[Path]) -> list[FileOutcome]:
        """Take a batch of drops (distinct names, in arrival order) as one landing: each file is
        read on its own, their chunks routed together, each version archived on its own, and all
        that landed commit together (one ledger transaction and one landing lock per batch, not per
        file); duplicates are recorded after."""
        batch = _Landing()
        spooled: list[tuple[Path, os.stat_result, Path, str, int]] = []
        self.lander.sync = sync = SyncBatch()
        try:
            for path in paths:
                taken = self._spool(path)
                if isinstance(taken, FileOutcome):
                    batch.done.append(taken)
                else:
                    spooled.append((path, *taken))
            live = live_versions_with_content(self.engine, [t[3] for t in spooled])
            for path, before, copy, sha, size in spooled:
                self._split(batch, path, before, copy, sha, size, live.get(sha))
            self.lander.flush()
            archived = [self._archive_later(item.copy, item.result.sha256, sync)
                        for item in batch.landing]
            sync.commit()  # fragments and archive copies on disk, then the second copies
            self._sink([target for target, written in archived if written])
            for item, (target, _) in zip(batch.landing, archived, strict=True):
                self._remembered(item, target, sync)
            sync.commit()  # manifests only for arrivals whose copies are kept
            self._commit(batch)
        except BaseException:
            sync.abandon()
            for item in batch.landing:
                self.lander.discard(item.result)
            raise
        finally:
            self.lander.sync = None
            self.lander.end_batch()
            for _, _, copy, _, _ in spooled:
                copy.unlink(missing_ok=True)
        for path, before, sha, size, first, archive in batch.duplicates:
            batch.done.append(self._record_duplicate(path, before, sha, size, first, archive))
        return batch.done

    def _spool(self, path: Path) -> FileOutcome | tuple[os.stat_result, Path, str, int]:
        """The drop copied to the private spool while hashed, or why it is not taken now."""
        name = path.name
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            return FileOutcome(name, "", WAITING, error=f"{name}: gone before it was read")
        age = time.time() - before.st_mtime
        if 0 <= age < self.settle_s:  # a future mtime (clock skew) relies on the read-time check
            return FileOutcome(name, "", WAITING, error=f"{name}: modified {age:.1f}s ago; waits "
                               f"until unchanged for {self.settle_s:g}s")
        if before.st_size > self.max_file_bytes:
            return self._quarantine(path, "", before.st_size,
                                    f"{name}: {before.st_size} bytes, over the limit of "
                                    f"{self.max_file_bytes} (SALES_PLATFORM_MAX_FILE_BYTES)")
        private_folder(self.spool)
        copy = self.spool / f"{now_ns()}-{name_id(name)}.csv"
        try:
            sha, size = self._read_once(path, before, copy)
        except FileChanged as exc:
            return FileOutcome(name, "", WAITING, error=str(exc))
        except OSError as exc:
            copy.unlink(missing_ok=True)
            return self._quarantine(path, "", before.st_size,
                                    f"{name}: cannot read: {exc.strerror or exc}")
        return before, copy, sha, size

    def _read_once(self, path: Path, before: os.stat_result, copy: Path) -> tuple[str, int]:
        """Copy the file to the spool while hashing it: the landed bytes are the hashed bytes."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        digest, size = hashlib.sha256(), 0
        try:
            opened = os.fstat(fd)
            if (opened.st_ino, opened.st_dev) != (before.st_ino, before.st_dev):
                raise FileChanged(f"{path.name}: replaced while being opened; taken next time")
            with open(fd, "rb", closefd=False) as source, os.fdopen(create_private(copy), "wb") as target:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    target.write(block)
                    size += len(block)
                # no fsync: the spool is scratch (cleared at every start); the archive and the
                # fragments made from it are what must survive a crash, and they are synced
        finally:
            os.close(fd)
        if not self._unchanged(path, before) or size != before.st_size:
            copy.unlink(missing_ok=True)
            raise FileChanged(f"{path.name}: changed while being read ({before.st_size} -> "
                              f"{size} bytes); taken when it stops changing")
        return digest.hexdigest(), size

    @staticmethod
    def _unchanged(path: Path, before: os.stat_result) -> bool:
        try:
            return _identity(os.lstat(path)) == _identity(before)
        except FileNotFoundError:
            return False

    def _split(self, batch: _Landing, path: Path, before: os.stat_result, copy: Path, sha: str,
               size: int, live_name: str | None) -> None:
        """One drop of the batch: a duplicate (of a live version or of one landed earlier in the
        batch) is archived and noted, a readable file read into the lander's queue (its
        fragments are written at the batch's flush), an unreadable one quarantined."""
        name = path.name
        first = batch.first_with(sha, live_name)
        if first is not None:  # its manifest now: a rebuild replays arrivals in this order
            archive = self._archive(copy, sha)
            self.remember(Manifest(name, sha, size, DUPLICATE, now_ns(), self.now.isoformat(),
                                   detail=duplicate_message(name, first)))
            batch.duplicates.append((path, before, sha, size, first, archive))
            return
        landed_ns = now_ns()
        try:
            result = self.lander.land(copy, name, sha, size, landed_ns, deferred=True)
        except FileRejected as exc:
            batch.done.append(self._quarantine(path, sha, size, str(exc)))
            return
        batch.landed(_Landed(path, before, result, copy, landed_ns))

    def _remembered(self, item: _Landed, archive: Path, sync: SyncBatch) -> None:
        """A routed version's manifest (synced with the batch) and its ledger record."""
        result = item.result
        self.remember(Manifest(result.file_name, result.sha256, result.size, LANDED,
                               item.landed_ns, self.now.isoformat()), sync=sync)
        item.version = self._version(result.file_name, result.sha256, result.size, result,
                                     archive)

    def _archive_later(self, copy: Path, sha: str, sync: SyncBatch) -> tuple[Path, bool]:
        """``_archive`` for a batch: sealed under a temp name, given its name once synced."""
        target = self.areas.archive / f"{sha}.csv.sealed"
        if target.exists() or sync.will_hold(target):
            return target, False
        pending = target.with_name(f".{target.name}.{now_ns()}.pending")
        seal_file(self.keyring.active, copy, pending, archive_identity(target.name),
                  durable=False)
        sync.written(pending, final=target)
        return target, True

    def _sink(self, archived: list[Path]) -> None:
        """The batch's new archive copies to the second copy's store (e.g. blob storage)."""
        if self.archive_sink is None:
            return
        for target in archived:
            self.archive_sink(f"archive/{target.name}", target)

    def _commit(self, batch: _Landing) -> None:
        """Publish and record every version the batch landed, then take their drops away."""
        if not batch.landing:
            return
        versions = [item.version for item in batch.landing]
        requested = self.lander.publish_many(
            [item.result for item in batch.landing],
            lambda: record_landed_many(self.engine, versions, self.now))
        layouts = record_source_schemas(
            self.engine, [(v.file_name, v.sha256, v.columns) for v in versions], self.now)
        for item, days, new_layout in zip(batch.landing, requested, layouts, strict=True):
            batch.done.append(self._landed(item, days, new_layout))
        batch.landing = []

    def _landed(self, item: _Landed, requested: list[str], new_layout: bool) -> FileOutcome:
        result, name = item.result, item.path.name
        self._remove_if_unchanged(item.path, item.before)
        log.info("landed %s: %d rows read, %d landed for %d day(s), %d rejected", name,
                 result.rows_read, result.rows_landed, len(result.days), result.rows_rejected)
        return FileOutcome(name, result.sha256, LANDED, result.rows_read, result.rows_landed,
                           result.rows_rejected, dict(result.rows_by_day),
                           error="; ".join(result.notes) or None, columns=result.columns,
                           new_layout=new_layout, days_requested=requested,
                           blocked=item.version.blocked)

    def _version(self, name: str, sha: str, size: int, result, archive: Path,
                 reprocessed: str | None = None) -> LandedVersion:
        """The ledger's record of one landed version (first landing or a reprocess)."""
        return LandedVersion(
            file_name=name, sha256=sha, size_bytes=size, rows_read=result.rows_read,
            rows_rejected=result.rows_rejected, rows_by_day=dict(result.rows_by_day),
            archive_path=str(archive.relative_to(self.areas.root)), code_version=self.code_version,
            rejects=result.rejects, columns=result.columns,
            artifacts=result.artifacts(self.stage, self.code_version, self.run_id),
            notes=result.notes, blocked=landing_block(name, result.rows_read,
                                                      result.rows_rejected, self.max_reject_rate),
            reprocessed=reprocessed)

    def land_again(self, copy: Path, name: str, sha: str, landed_ns: int, when: datetime,
                   reprocessed: str | None = None) -> list[str]:
        """Land an archived version's bytes (``copy``, in the spool) as ``_land`` does, at its
        place ``landed_ns`` in landing order; ``reprocessed`` says why a live version lands again.
        Returns the days to (re)load; FileRejected when today's settings refuse the file."""
        size = copy.stat().st_size
        result = self.lander.land(copy, name, sha, size, landed_ns)
        archive = self.areas.archive / f"{sha}.csv.sealed"
        version = self._version(name, sha, size, result, archive, reprocessed)
        requested = self.lander.publish(result, lambda: record_landed(self.engine, version, when))
        record_source_schema(self.engine, name, sha, result.columns, when)
        return requested

    def remove_orphans(self) -> None:
        """Fragments no live ledger row accounts for (a landing that died between publishing and
        committing) and dead landings' work folders: removed before anything lands."""
        with self.areas.lock("landing"):
            accounts = landed_accounts(self.engine, self.max_reject_rate)
            for path in remove_orphans(self.areas, accounts):
                log.warning("removed %s: no file version in the ledger accounts for it", path.name)
        # an intake that died before its batch was synced (held under the intake lock)
        for folder in (self.areas.archive, self.areas.archive / MANIFESTS):
            for path in folder.glob(".*.p*"):
                if path.name.endswith((".pending", ".partial")):
                    path.unlink(missing_ok=True)

    def _remove_if_unchanged(self, path: Path, before: os.stat_result) -> None:
        if self._unchanged(path, before):
            path.unlink()
        else:  # written again after it was read: a new version, landed next time
            log.warning("%s changed after it was landed: left in the drop zone as a new version",
                        path.name)

    def _archive(self, copy: Path, sha: str) -> Path:
        # content-addressed: the same content dropped under two names is archived once
        target = self.areas.archive / f"{sha}.csv.sealed"
        if not target.exists():
            seal_file(self.keyring.active, copy, target, archive_identity(target.name))
            if self.archive_sink is not None:
                self.archive_sink(f"archive/{target.name}", target)
        return target

    @property
    def landing_settings(self) -> dict:
        return landing_settings(self.lander.rules, self.lander.contract, self.lander.max_columns)

    def remember(self, manifest: Manifest, recorded_ns: int | None = None,
                 sync: SyncBatch | None = None) -> None:
        """The arrival's manifest in the archive (name, order, outcome, settings): what a rebuild
        of a lost warehouse replays."""
        manifest.settings = manifest.settings or self.landing_settings
        write_manifest(self.areas, self.keyring.active, manifest, name_id(manifest.file_name),
                       recorded_ns or manifest.arrival_ns, sync)

    def _record_duplicate(self, path: Path, before: os.stat_result, sha: str, size: int,
                          first_name: str, archive: Path) -> FileOutcome:
        message = duplicate_message(path.name, first_name)
        log.info(message)
        record_not_landed(self.engine, path.name, sha, size, DUPLICATE, message,
                          str(archive.relative_to(self.areas.root)), self.code_version, self.now)
        self._remove_if_unchanged(path, before)
        return FileOutcome(path.name, sha, DUPLICATE, error=message)

    def _quarantine_target(self, name: str) -> Path:
        private_folder(self.areas.quarantine)
        return self.areas.quarantine / quarantine_name(name, time.time_ns())

    def _quarantine(self, path: Path, sha: str, size: int, reason: str) -> FileOutcome:
        log.error("quarantined %s", reason)
        name = printable_name(path.name)
        target = self._quarantine_target(name)
        os.replace(path, target)  # a rename: moves a link or FIFO itself, never its target
        with os.fdopen(create_private(target.with_name(target.name + REASON_SUFFIX)), "w") as note:
            note.write(f"file: {name}\nreason: {reason}\n")
        self.remember(Manifest(name, sha, size, QUARANTINED, now_ns(), self.now.isoformat(),
                               detail=reason, quarantine_path=str(target.relative_to(self.areas.root))))
        record_not_landed(self.engine, name, sha, size, QUARANTINED, reason,
                          str(target.relative_to(self.areas.root)), self.code_version, self.now)
        return FileOutcome(name, sha, QUARANTINED, error=reason)

    def _quarantine_entry(self, path: Path, reason: str) -> FileOutcome:
        try:
            size = os.lstat(path).st_size
        except FileNotFoundError:
            name = printable_name(path.name)
            return FileOutcome(name, "", WAITING, error=f"{name}: gone")
        return self._quarantine(path, "", size, reason)
