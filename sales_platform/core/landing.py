"""Landing: read one dropped CSV file in bounded chunks and split its rows by sale date.

Every row ends in exactly one place: a sealed per-day fragment under staging/landed/<day>/, or
the file's landing rejects (rows whose timestamp gives no valid day, malformed records). A file
that cannot be read at all raises FileRejected and leaves nothing behind. Fragments are named
``<landed ns>-<name id>-<sha256[:16]>-<chunk>``: the exact file name's hash, never a folded name.

Nothing is visible before it is accounted: fragments are written in a private work folder and
moved into place under the landing lock together with the commit of their file_ledger row
(``Lander.publish``); readers take the same lock shared and read only fragments of versions a
committed live row accounts for (``LandedAccounts``); what no row accounts for (a landing that
died between the move and the commit) is removed by ``remove_orphans``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.csvread import (
    FAST_CHUNK_ROWS,
    Columns,
    Malformed,
    NeedsExactRead,
    ReadState,
    exact_batches,
    fast_batches,
)
from sales_platform.core.frames import frame_table, text_series
from sales_platform.core.protect import protect_identifiers
from sales_platform.core.quality import QualityRules, route_timestamps
from sales_platform.core.schema import (
    EXTRAS_COLUMN,
    FREEZE,
    RESCUE,
    TIMESTAMP,
    SchemaContract,
    SchemaError,
)
from sales_platform.core.store import (
    SEALED_SUFFIX,
    DataAreas,
    SyncBatch,
    fragment_files,
    write_sealed_table,
)
from sales_platform.core.warehouse.artifacts import Artifact, WrittenFile, written_file

LANDED = "landed"
MALFORMED_ROW = "malformed_row"
MAX_HEADER_CHARS = 1 << 20
MAX_COLUMNS = 200  # wider files are quarantined before they can touch the table schema
_HEADER_PROBE_BYTES = 64 << 10
WORK_PREFIX = ".landing-"  # a landing's private work folder under staging/landed
T = TypeVar("T")


class FileRejected(ValueError):
    """A whole file cannot be read; the message names the file and the problem."""


def fingerprint(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def name_id(name: str) -> str:
    """A fixed-width id of the exact file name: never folds two names into one (unlike a
    sanitized name: ``sales 1.csv`` and ``sales_1.csv``, or two all-CJK names, stay apart)."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def version_key(name: str, sha256: str, landed_ns: int) -> str:
    """Fragment prefix of a file version: landing time first, so fragments sort in landing order."""
    return f"{landed_ns:020d}-{name_id(name)}-{sha256[:16]}"


def fragment_name_id(fragment: str) -> str | None:
    parts = fragment.split("-")
    return parts[1] if len(parts) >= 4 else None


def version_mark(name: str, sha256: str) -> tuple[str, str]:
    """What a fragment's name says of its file version: (name id, sha256[:16])."""
    return name_id(name), sha256[:16]


def fragment_version(fragment: str) -> tuple[str, str] | None:
    parts = fragment.split("-")
    return (parts[1], parts[2]) if len(parts) >= 4 else None


@dataclass(frozen=True)
class LandedAccounts:
    """The landed file versions committed ledger rows account for: ``live`` ones (their fragments
    stay), of which ``held`` ones (blocked at landing) are not read by the cleaning."""

    live: frozenset[tuple[str, str]]
    held: frozenset[tuple[str, str]] = frozenset()

    def accounted(self, fragment: str) -> bool:
        return fragment_version(fragment) in self.live

    def readable(self, fragment: str) -> bool:
        return self.accounted(fragment) and fragment_version(fragment) not in self.held


def remove_orphans(areas: DataAreas, accounts: LandedAccounts,
                   days: Iterable[str] | None = None) -> list[Path]:
    """Remove landed fragments no live ledger row accounts for, on ``days`` (all days: also the
    work folders of landings that died). Call it holding the landing lock (shared is enough: a
    landing moves and commits under it exclusively, so nothing unaccounted is in flight)."""
    root = areas.staging / LANDED
    folders = [root / d for d in days] if days is not None else \
        sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith("."))
    removed = [p for folder in folders for p in fragment_files(folder)
               if not accounts.accounted(p.name)]
    for path in removed:
        path.unlink(missing_ok=True)
    if days is None:
        for work in root.glob(f"{WORK_PREFIX}*"):
            shutil.rmtree(work, ignore_errors=True)
    return removed


@dataclass
class LandingResult:
    file_name: str
    sha256: str
    size: int
    rows_read: int = 0
    rows_by_day: Counter[str] = field(default_factory=Counter)
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    columns: list[str] = field(default_factory=list)
    fragment_rows: dict[str, int] = field(default_factory=dict)  # path under the work dir -> rows
    fragments: list[WrittenFile] = field(default_factory=list)  # as published, hashed
    notes: list[str] = field(default_factory=list)  # read, but worth telling the sender
    key: str = ""  # version_key: the prefix of its fragments
    work: Path | None = None  # the private folder its fragments wait in until published
    reject_parts: list[pd.DataFrame] = field(default_factory=list, repr=False)

    @property
    def rows_landed(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects_by_reason.values())

    rejects: pd.DataFrame | None = None

    @property
    def days(self) -> list[str]:
        return sorted(self.rows_by_day)

    def reset(self) -> None:
        self.rows_read = 0
        self.rows_by_day.clear()
        self.rejects_by_reason.clear()
        self.fragment_rows.clear()
        self.reject_parts.clear()

    def artifacts(self, stage: str, code_version: str, run_id: str | None = None) -> list[Artifact]:
        """The landed fragments as data-object ledger rows."""
        return [f.artifact(stage, "fragment", code_version, run_id) for f in self.fragments]


def _full_header(path: Path, name: str, preamble: int = 0) -> list[str]:
    """The first record after ``preamble`` non-blank ones, however long (a very wide header goes
    past the probe); blank lines before it skipped."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            limit = csv.field_size_limit()
            csv.field_size_limit(MAX_HEADER_CHARS)
            try:
                records = (r for r in csv.reader(handle) if r)
                for _ in range(preamble):
                    next(records, None)
                return next(records, [])
            finally:
                csv.field_size_limit(limit)
    except UnicodeDecodeError:
        raise FileRejected(utf8_problem(path, name)) from None
    except csv.Error as exc:
        raise FileRejected(f"{name}: unreadable header: {exc}") from None


def _header_on_its_line(path: Path, preamble: int) -> bool:
    """Whether the header is on the first line (the second after a ``sep=`` line): Arrow's
    reader skips lines, not blank ones, and would take a blank line for the header."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_PROBE_BYTES).removeprefix(b"\xef\xbb\xbf")
    for _ in range(preamble):
        head = head.split(b"\n", 1)[1] if b"\n" in head else b""
    return head[:1] not in (b"\n", b"\r", b"")


def utf8_problem(path: Path, name: str) -> str:
    """Where the file stops being UTF-8: the byte, its line and offset, and what it looks like.

    Read again from the start in blocks (a reader's error does not say where in the file it was);
    the message names positions and one byte, never the text around it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                # the decoder may hold up to 3 bytes of an earlier block: the error is in this one
                at = max(exc.start - (len(exc.object) - len(block)), 0)
                line = lines + block.count(b"\n", 0, at) + 1
                return _not_utf8(name, block[at], line, offset + at, _line_bytes(block, at))
            offset += len(block)
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"{name}: not UTF-8 text: the file ends inside a character (line {lines + 1}); " \
                   "save it as UTF-8"
    return f"{name}: not UTF-8 text; save it as UTF-8"


def _line_bytes(block: bytes, at: int) -> bytes:
    start = block.rfind(b"\n", 0, at) + 1
    end = block.find(b"\n", at)
    return block[start:end if end >= 0 else len(block)]


def _not_utf8(name: str, byte: int, line: int, offset: int, line_bytes: bytes) -> str:
    try:
        line_bytes.decode("cp1252")
        looks = "it reads as Windows-1252 (Latin-1), Excel's plain 'CSV' on Windows"
    except UnicodeDecodeError:
        looks = "its encoding is not recognised"
    return (f"{name}: not UTF-8 text: byte 0x{byte:02X} on line {line:,} (byte offset {offset:,}) "
            f"is not UTF-8; {looks}: save the file as UTF-8 (Excel: 'CSV UTF-8')")


def _utf16_problem(name: str, probe: bytes) -> str | None:
    """UTF-16 or UTF-32 text (Excel's 'Unicode Text', some database tools), by its byte-order mark
    or, without one, by NUL bytes at every other position of ASCII text."""
    boms = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
            (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
    found = next(((kind, "its byte-order mark") for bom, kind in boms if probe.startswith(bom)), None)
    even, odd = probe[0::2], probe[1::2]
    if found is None and len(probe) >= 4:
        for zeros, other in ((odd, even), (even, odd)):
            if zeros.count(0) >= 0.9 * len(zeros) and other.count(0) <= 0.1 * len(other):
                found = ("UTF-16", "NUL bytes between its characters")
    if found is None:
        return None
    kind, how = found
    return (f"{name}: the file is {kind} text ({how}), not UTF-8: save it as UTF-8 (Excel: "
            "'CSV UTF-8')")


def _sep_line(text: str) -> str | None:
    """The delimiter an Excel ``sep=`` first line declares, or None when there is none."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    match = re.fullmatch(r"\s*sep=(.?)\s*", first, re.IGNORECASE)
    return match.group(1) if match else None


def _probe(path: Path, name: str) -> str:
    """The first 64 KiB as text, with clear errors for empty, UTF-16, binary and non-UTF-8 files."""
    with open(path, "rb") as handle:
        probe = handle.read(_HEADER_PROBE_BYTES)
    if not probe.strip():
        raise FileRejected(f"{name}: file is empty")
    problem = _utf16_problem(name, probe)
    if problem:
        raise FileRejected(problem)
    if b"\x00" in probe:
        raise FileRejected(f"{name}: file is binary (NUL bytes), not a CSV text file")
    try:
        return probe.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if len(probe) < _HEADER_PROBE_BYTES or exc.start < len(probe) - 4:
            raise FileRejected(utf8_problem(path, name)) from None
        return probe[: exc.start].decode("utf-8-sig")


def read_layout(path: Path, name: str) -> tuple[list[str], int]:
    """The header row and how many records come before it (1 after an Excel ``sep=,`` line)."""
    text = _probe(path, name)
    preamble = 0
    declared = _sep_line(text)
    if declared is not None:
        if declared != ",":
            shown = {";": "semicolons", "\t": "tabs", "|": "pipes"}.get(declared, repr(declared))
            raise FileRejected(f"{name}: wrong delimiter: its first line (Excel's sep=) declares "
                               f"{shown} (expected comma-separated)")
        preamble = 1
        text = text.split("\n", 1)[1] if "\n" in text else ""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    header = _full_header(path, name, preamble)
    if len(header) == 1 and any(d in first_line for d in ";\t|"):
        # Counts, never the line itself: in a file without a header it is a data row.
        found = ", ".join(f"{first_line.count(d)} {label}" for d, label in _OTHER_DELIMITERS
                          if d in first_line)
        raise FileRejected(f"{name}: wrong delimiter: the first line has no commas but {found} "
                           "(expected comma-separated)")
    return header, preamble


def read_header(path: Path, name: str) -> list[str]:
    """The header row, with clear errors for empty, binary and wrongly delimited files."""
    return read_layout(path, name)[0]


_OTHER_DELIMITERS = ((";", "semicolon(s)"), ("\t", "tab(s)"), ("|", "pipe(s)"))


def header_problem(name: str, header: list[str], contract: SchemaContract) -> str:
    """Why a header does not fit the contract, quoting only the column names the contract knows.

    Any other cell is reported by count and position: in a file without a header row, the
    "header" is the first data row (customer and product ids).
    """
    canonical = [contract.canonical_name(h) for h in header]
    known_names = {*contract.required, *contract.aliases.values(), *contract.sensitive}
    known = [c for c in canonical if c in known_names]
    unknown = [i for i, c in enumerate(canonical, 1) if c not in known_names]
    parts = [f"{name}: header has {len(header)} column(s)"]
    missing = [c for c in contract.required if c not in canonical]
    if missing:
        parts.append(f"missing required column(s) {', '.join(missing)}")
    twice = sorted({c for c in known if known.count(c) > 1})
    if twice:
        parts.append(f"more than one column maps to {', '.join(twice)}")
    if len(set(canonical)) < len(canonical) and not twice:
        parts.append("two unrecognised columns have the same name")
    parts.append(f"recognised: {', '.join(known) or 'none'}")
    if unknown:
        shown = ", ".join(map(str, unknown[:20])) + (" ..." if len(unknown) > 20 else "")
        parts.append(f"{len(unknown)} unrecognised name(s) at column(s) {shown} (not shown: "
                     "a file without a header row would show data here)")
    return "; ".join(parts)


def _parse_error(exc: BaseException) -> str:
    """A parser's message without the record it quotes (Arrow appends the offending row)."""
    if not isinstance(exc, pa.ArrowInvalid):
        return str(exc)  # csv and codec errors name positions, not content
    message = str(exc)
    cut = re.search(r"expected \d+ columns?, got \d+", message, re.I)
    return message[:cut.end()] if cut else message.split(":", 1)[0]


def _named(cells: list[str]) -> list[str]:
    """A header row's cells without a byte-order mark (a second export's, mid-file) and without
    the empty-named columns at its end (a delimiter ending every line)."""
    cells = [cells[0].lstrip("\ufeff"), *cells[1:]] if cells else []
    while cells and not cells[-1].strip():
        cells.pop()
    return cells


class FileHeaders:
    """The header rows of one file: the first, and any later record that maps onto the contract's
    columns (exports concatenated with ``cat``), read with its own column order."""

    def __init__(self, name: str, contract: SchemaContract, first: Columns) -> None:
        self.name, self.contract, self.first = name, contract, first
        self.required = set(contract.required)

    def is_header(self, fields: list[str]) -> bool:
        """A record naming every required column (by name or alias) is a header, not data."""
        return self.required <= {self.contract.canonical_name(c) for c in _named(fields)}

    def section(self, fields: list[str], line: int) -> Columns:
        """The layout a header row starts; a header with other columns than the first cannot be
        read as the same file: refused, naming its line."""
        cells = _named(fields)
        try:
            mapping, _ = self.contract.resolve_header(cells, self.name)
            names = [mapping[c] for c in cells]
        except SchemaError:
            names = []
        if sorted(names) != sorted(self.first.names):
            raise FileRejected(
                f"{self.name}: line {line:,} is another header row with other columns than the "
                f"first header ({len(cells)} named columns, the first header has "
                f"{len(self.first.names)}): split the file there and drop each part")
        return Columns(names, len(fields) - len(cells))


@dataclass
class _Queued:
    """A chunk read from a version's file, waiting to be routed (``Lander.flush``)."""

    frame: pd.DataFrame
    result: LandingResult
    number: int  # the chunk's place in its file: the fragment's suffix


class Lander:
    """Lands file versions into the staging area; one instance per run."""

    def __init__(self, areas: DataAreas, keyring: Keyring, contract: SchemaContract,
                 rules: QualityRules, now: datetime, max_columns: int = MAX_COLUMNS) -> None:
        self.areas = areas
        self.keyring = keyring
        self.tokenizer = Tokenizer(keyring)
        self.contract = contract
        self.rules = rules
        self.now = now
        self.max_columns = max_columns
        self._index: dict[str, list[Path]] | None = None  # see _published
        self._queue: list[_Queued] = []  # chunks read, waiting to be routed (see ``flush``)
        self._queued_rows = 0
        self._read: list[LandingResult] = []  # versions read whose chunks are all queued
        self._shared_work: Path | None = None  # the work folder of deferred landings
        self.sync: SyncBatch | None = None  # their fragments are synced with the batch (intake)

    def land(self, path: Path, name: str, sha256: str, size: int, landed_ns: int,
             deferred: bool = False) -> LandingResult:
        """Split the bytes at ``path`` (version ``sha256`` of the file ``name``) into sealed
        fragments in a private work folder: nothing is visible until ``publish``.

        ``deferred``: the file is read (and refused here if unreadable), but its chunks wait in a
        queue and the result is complete only after ``flush``: a batch of small files is routed
        as one chunk instead of one per file (per-file work dominates a drop of one-row files)."""
        result = LandingResult(file_name=name, sha256=sha256, size=size)
        result.key = version_key(name, sha256, landed_ns)
        if deferred:  # one work folder for the batch: its fragments are named after the version
            result.work = self._batch_work()
        else:
            result.work = self.areas.staging / LANDED / f"{WORK_PREFIX}{result.key}"
            shutil.rmtree(result.work, ignore_errors=True)
        try:
            self._split(path, name, result.key, result.work, result)
            self._read.append(result)
            if not deferred:
                self.flush()
        except BaseException:
            self.discard(result)
            raise
        return result

    def flush(self) -> None:
        """Route every queued chunk (layouts apart, each layout's chunks as one frame), then
        complete the versions read: their rejects gathered, their fragments hashed."""
        queue, self._queue, self._queued_rows = self._queue, [], 0
        layouts: dict[tuple[str, ...], list[_Queued]] = {}
        for item in queue:
            layouts.setdefault(tuple(item.frame.columns), []).append(item)
        for items in layouts.values():
            self._route_chunks(items)
        read, self._read = self._read, []
        for result in read:
            parts = [r for r in result.reject_parts if len(r)]
            result.rejects = pd.concat(parts) if parts else pd.DataFrame()
            result.reject_parts = []
            result.fragments = self._hash(result.work, result.fragment_rows)

    def publish(self, result: LandingResult, commit: Callable[[], T]) -> T:
        """Move the fragments into place and ``commit`` their ledger row under the landing lock, so
        a reader (holding it shared) sees them only with their row. A failed commit takes its
        fragments back; once committed, the fragments of older versions of the name go."""
        return self.publish_many([result], commit)

    def publish_many(self, results: Sequence[LandingResult], commit: Callable[[], T]) -> T:
        """``publish`` for a batch of versions of distinct names, with one commit for all."""
        try:
            with self.areas.lock("landing"):
                moved = [path for r in results if r.work for path in self._move(r)]
                try:
                    committed = commit()
                except BaseException:
                    self.unpublish(moved)
                    raise
                for result in results:
                    self._retire_older(result.file_name, result.key)
        finally:
            for result in results:
                self.discard(result)
        return committed

    def _batch_work(self) -> Path:
        if self._shared_work is None:
            self._shared_work = (self.areas.staging / LANDED
                                 / f"{WORK_PREFIX}batch-{time.time_ns()}-{os.getpid()}")
            self._shared_work.mkdir(parents=True)
        return self._shared_work

    def discard(self, result: LandingResult) -> None:
        """A version's fragments out of its work folder (what ``publish`` did not move)."""
        self._unqueue(result)
        if result.work is None:
            return
        if result.work == self._shared_work:
            self._remove_fragments(result)
        else:
            shutil.rmtree(result.work, ignore_errors=True)

    @staticmethod
    def _remove_fragments(result: LandingResult) -> None:
        for relative in result.fragment_rows:
            (result.work / relative).unlink(missing_ok=True)

    def end_batch(self) -> None:
        """The batch's work folder, and whatever is left in it, removed."""
        self._queue, self._queued_rows, self._read = [], 0, []  # a failed batch leaves none
        if self._shared_work is not None:
            shutil.rmtree(self._shared_work, ignore_errors=True)
            self._shared_work = None

    def _unqueue(self, result: LandingResult) -> None:
        """A version's chunks out of the queue (its read failed or starts again)."""
        self._queue = [item for item in self._queue if item.result is not result]
        self._queued_rows = sum(len(item.frame) for item in self._queue)
        self._read = [r for r in self._read if r is not result]

    @staticmethod
    def unpublish(moved: list[Path]) -> None:
        for path in moved:
            path.unlink(missing_ok=True)

    def _split(self, path: Path, name: str, key: str, work: Path, result: LandingResult) -> None:
        header, preamble = read_layout(path, name)
        if len(header) > self.max_columns:
            raise FileRejected(f"{name}: {len(header)} columns, more than the limit of "
                               f"{self.max_columns} (SALES_PLATFORM_MAX_COLUMNS)")
        named = _named(header)  # a delimiter ending every line is no column
        try:
            mapping, result.notes = self.contract.resolve_header(named, name)
        except SchemaError:
            # from None: the contract's own message quotes the header cells
            raise FileRejected(header_problem(name, named, self.contract)) from None
        result.columns = [mapping[h] for h in named]
        extras = self.contract.extra_columns(result.columns)
        if extras and self.contract.policy == FREEZE:
            raise FileRejected(f"{name}: {len(extras)} column(s) outside the contract (schema "
                               "policy 'freeze' accepts only the contract's columns); "
                               + header_problem(name, named, self.contract).split("; ", 1)[1])
        columns = Columns(result.columns, len(header) - len(named))
        headers = FileHeaders(name, self.contract, columns)
        try:
            if not _header_on_its_line(path, preamble):
                raise NeedsExactRead("blank lines before the header")
            rejects = self._route_all(fast_batches, path, header, columns, headers, preamble,
                                      extras, name, key, work, result)
        except NeedsExactRead:
            self._unqueue(result)
            self._remove_fragments(result)
            result.reset()
            rejects = self._route_all(exact_batches, path, header, columns, headers, preamble,
                                      extras, name, key, work, result)
        if result.rows_read == 0:
            raise FileRejected(f"{name}: header only, no data rows")
        result.reject_parts.extend(rejects)

    def _route_all(self, reader, path: Path, header: list[str], columns: Columns,
                   headers: FileHeaders, preamble: int, extras: list[str], name: str, key: str,
                   work: Path, result: LandingResult) -> list[pd.DataFrame]:
        """Read the file's chunks into the routing queue; returns its malformed records."""
        state = ReadState()
        rejects: list[pd.DataFrame] = []
        try:
            for number, frame in enumerate(reader(path, header, state, columns, headers, preamble)):
                if extras and self.contract.policy == RESCUE:
                    frame = rescue_extras(frame, extras)
                self._enqueue(_Queued(frame, result, number))
        except UnicodeDecodeError:
            raise FileRejected(utf8_problem(path, name)) from None
        except (pa.ArrowInvalid, csv.Error) as exc:
            if "utf8" in str(exc).lower().replace("-", ""):  # Arrow: "invalid UTF8 data"
                raise FileRejected(utf8_problem(path, name)) from None
            raise FileRejected(f"{name}: cannot parse as CSV: {_parse_error(exc)}") from None
        result.rows_read = state.rows_read
        if state.malformed:
            rejects.append(self._malformed(state.malformed, name))
            for m in state.malformed:
                result.rejects_by_reason[m.reason] += 1
        return rejects

    def _enqueue(self, item: _Queued) -> None:
        self._queue.append(item)
        self._queued_rows += len(item.frame)
        if self._queued_rows >= FAST_CHUNK_ROWS:  # a large file: routed chunk by chunk, as read
            self.flush()

    def _route_chunks(self, items: list[_Queued]) -> None:
        """Chunks of one layout (of one or many versions) routed as one frame: each row gets its
        sale day or a landing reject; each chunk's rows of a day become its sealed fragment."""
        frames = [item.frame for item in items]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        frame.index = pd.RangeIndex(len(frame))
        lengths = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
        owner = pa.array(np.repeat(np.arange(len(items)), lengths))
        sale_ts, reasons = route_timestamps(frame[TIMESTAMP], self.rules, self.now)
        frame["sale_ts"] = sale_ts
        frame["source_file"] = text_series(pc.take(
            pa.array([i.result.file_name for i in items], pa.string()), owner), frame.index)
        frame["source_sha256"] = text_series(pc.take(
            pa.array([i.result.sha256 for i in items], pa.string()), owner), frame.index)
        ok = reasons.isna().to_numpy()
        days = sale_ts.to_numpy().astype("datetime64[D]")  # not strftime: 30x faster
        table = frame_table(frame)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for i, item in enumerate(items):
            start, stop = int(starts[i]), int(starts[i + 1])
            self._write_fragments(item, table.slice(start, stop - start), ok[start:stop],
                                  days[start:stop])
        if not ok.all():
            self._route_rejects(items, frame, reasons, ok, owner)

    def _write_fragments(self, item: _Queued, table: pa.Table, ok: np.ndarray,
                         days: np.ndarray) -> None:
        """One chunk's landed rows, a sealed fragment per sale day."""
        landed_days = days[ok]
        if not len(landed_days):
            return
        if ok.all() and landed_days.min() == landed_days.max():  # most chunks: one day, no filter
            by_day = [(landed_days[0], table)]
        else:
            by_day = [(d, table.filter(pa.array(ok & (days == d))))
                      for d in np.unique(landed_days)]
        result = item.result
        for day_value, rows in by_day:
            day = str(np.datetime64(day_value, "D"))
            relative = f"{LANDED}/{day}/{result.key}-{item.number:05d}{SEALED_SUFFIX}"
            write_sealed_table(result.work / relative, rows, self.keyring.active,
                               f"{self.areas.staging.name}/{relative}",
                               self.sync if result.work == self._shared_work else None)
            result.rows_by_day[day] += rows.num_rows
            result.fragment_rows[relative] = rows.num_rows

    def _route_rejects(self, items: list[_Queued], frame: pd.DataFrame, reasons: pd.Series,
                       ok: np.ndarray, owner: pa.Array) -> None:
        """Rows with no valid sale day: each version's landing rejects, identifiers as tokens."""
        bad = self.protect(frame[~ok].assign(reason=reasons[~ok]))
        owners = owner.to_numpy()[~ok]
        for i, rows in bad.groupby(owners, sort=True):
            result = items[int(i)].result
            result.rejects_by_reason.update(rows["reason"].value_counts().to_dict())
            result.reject_parts.append(rows)

    def protect(self, rejects: pd.DataFrame) -> pd.DataFrame:
        """Rejected rows keep their raw values, with identifiers as tokens."""
        return protect_identifiers(rejects, self.tokenizer, self.contract.sensitive)

    def _malformed(self, malformed: list[Malformed], name: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "source_row": [m.source_row for m in malformed],
                "source_file": name,
                "reason": [m.reason for m in malformed],
                "detail": [m.detail for m in malformed],
                "raw_text": self.tokenizer.encrypt_series(pd.Series([m.text for m in malformed]), "raw_text"),
            }
        )

    def _hash(self, work: Path, rows: dict[str, int]) -> list[WrittenFile]:
        """Each fragment hashed before it is moved into place (a rename keeps the bytes), outside
        the landing lock; located where ``publish`` puts it."""
        return [written_file(work / relative, n, Path(relative).parent.name,
                             published_as=self.areas.staging / relative)
                for relative, n in sorted(rows.items())]

    def _move(self, result: LandingResult) -> list[Path]:
        """A version's fragments moved into place (a rename each); returns where they are."""
        moved = []
        for relative in sorted(result.fragment_rows):
            target = self.areas.staging / relative
            if not target.parent.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
            (result.work / relative).replace(target)
            moved.append(target)
            if self._index is not None and (ident := fragment_name_id(target.name)):
                self._index.setdefault(ident, []).append(target)
        return moved

    def _retire_older(self, name: str, key: str) -> None:
        """Drop the fragments of this name's other versions (superseded by the committed row)."""
        ident = name_id(name)
        kept = []
        for old in self._published().pop(ident, []):
            if old.name.startswith(f"{key}-"):
                kept.append(old)
            else:
                old.unlink(missing_ok=True)
        self._published()[ident] = kept

    def _published(self) -> dict[str, list[Path]]:
        """Published fragments by name id: the landed folders listed once per lander, then kept
        up to date by its own moves, so a drop of n files costs n, not n² (a listing per file).
        What another process published meanwhile and this misses belongs to no live version once
        superseded: readers skip it and the next intake removes it (``remove_orphans``)."""
        if self._index is None:
            self._index = {}
            for old in sorted((self.areas.staging / LANDED).glob("*/*")):
                ident = fragment_name_id(old.name)
                if ident and not old.parent.name.startswith("."):
                    self._index.setdefault(ident, []).append(old)
        return self._index


def rescue_extras(frame: pd.DataFrame, extras: list[str]) -> pd.DataFrame:
    """Unknown columns packed into one JSON text column (rescue policy): kept, never dropped."""
    packed = frame[extras].to_dict("records")
    out = frame.drop(columns=extras)
    out[EXTRAS_COLUMN] = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in packed]
    return out
