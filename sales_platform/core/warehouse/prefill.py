"""A SQLite load's scratch file filled while its day is encrypted, instead of after.

Without this, a day's SQLite load reads the encrypted layer back and fills its scratch file
(``sqlite_scratch.py``) before its transaction: ~1 s per 1M rows spent after the encryption has
finished. With a prefill, each chunk the encryption writes is also handed to a thread that
converts it to the staging columns and appends it to a scratch file (ADBC binds in C and releases
the GIL), so the fill of chunk N overlaps the tokenizing of chunk N+1 on the second core.

The load uses a prefilled file only when the layer it reads under its lock is exactly the one the
file was made from: the same fragment files (name, inode, size, modification time; publishing
renames the folder, which keeps all four) and the same extra columns. Any other case (another run
replaced the layer meanwhile, a retry after the file was used, a failed fill) falls back to the
fill from the layer, so the load's outcome never depends on whether a prefill was used.

Disk: a run holds at most ``budget_bytes`` of prefilled days (measured on the sealed cleaned layer
they are made from: ~7 MB per 1M rows, ~35x smaller than their scratch files) besides the first
one, which the load would have needed anyway. Days under ``MIN_DAY_BYTES`` are not prefilled.
Every file not taken by a load is removed when the step ends (interrupted or failed too), and
the files of a killed process by the next load (``sqlite_scratch.py``'s owner lock).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Protocol, TypeVar

import pyarrow as pa

from sales_platform.core.store import FilesIdentity, files_identity
from sales_platform.core.warehouse.loading import copy_table, extra_columns
from sales_platform.core.warehouse.sqlite_scratch import SqliteScratch

_DONE, _ABANDON = object(), object()
# Smaller days are filled by their load as before: the overlap is worth ~0.5 s per 1M rows, so
# below ~40k rows (~256 KiB of sealed cleaned layer) it is lost in the feed's own thread and
# connection (a 3,000-row day's whole scratch file takes a few ms).
MIN_DAY_BYTES = 256 << 10
SCRATCH_BYTES_PER_CLEANED_BYTE = 40  # a 1M-row day: ~6.7 MB sealed cleaned, ~240 MB scratch file


class _Abandoned(Exception):
    """The feed was given up: the scratch file is removed by SqliteScratch's own cleanup."""


class LayoutChanged(ValueError):
    """A chunk with other extra columns than the first: the load, which takes the union of the
    layer's columns, fills its scratch file itself."""


class StagingRows:
    """Chunks of the encrypted layer in the load's staging columns (``copy_table``), as the load
    would convert them when it reads the layer back; all chunks must have the same extras."""

    def __init__(self) -> None:
        self.extras: tuple[str, ...] | None = None

    def __call__(self, table: pa.Table) -> pa.Table:
        extras = tuple(extra_columns(table.column_names))
        if self.extras is None:
            self.extras = extras
        elif extras != self.extras:
            raise LayoutChanged(f"extra columns {extras} after {self.extras}")
        return copy_table(table, extras)


class ScratchFeed:
    """Chunks of the encrypted layer handed over one at a time, converted to the staging columns
    and appended to a ``SqliteScratch`` in a background thread. At most ``depth`` chunks wait, so
    a slow fill slows the producer instead of holding the day in memory. A failing fill never
    fails the producer: ``finish`` then returns None and ``error`` says why (the load fills its
    scratch file from the layer, and reports any error of its own)."""

    def __init__(self, temp_dir: str | None = None, depth: int = 1, reserved: int = 0) -> None:
        self._convert = StagingRows()
        self.reserved = reserved  # bytes of the run's prefill budget this feed holds
        self._temp_dir = temp_dir
        self._queue: Queue = Queue(maxsize=depth)
        self._scratch: SqliteScratch | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="sales-load-prefill", daemon=True)
        self._thread.start()

    @property
    def extras(self) -> tuple[str, ...]:
        """The chunks' extra columns (all chunks have the same, or the fill failed)."""
        return self._convert.extras or ()

    def _tables(self) -> Iterator[pa.Table]:
        while (item := self._queue.get()) is not _DONE:
            if item is _ABANDON:
                raise _Abandoned
            yield self._convert(item)

    def _fill(self) -> None:
        try:
            self._scratch = SqliteScratch(self._tables(), temp_dir=self._temp_dir)
        except BaseException as exc:  # noqa: BLE001 - kept for finish(); the scratch removed itself
            self.error = exc

    def _hand_over(self, item: object) -> None:
        while self._thread.is_alive():  # a filler that stopped takes nothing more
            try:
                self._queue.put(item, timeout=0.1)
                return
            except Full:
                continue

    def put(self, table: pa.Table) -> None:
        self._hand_over(table)

    def finish(self) -> SqliteScratch | None:
        """The filled scratch file, or None when the fill failed."""
        self._hand_over(_DONE)
        self._thread.join()
        return self._scratch if self.error is None else None

    def abandon(self) -> None:
        """Stop the fill and remove what it wrote (the producer failed)."""
        self._hand_over(_ABANDON)
        self._thread.join()
        if self._scratch is not None:
            self._scratch.remove()
            self._scratch = None


@dataclass
class _Prefilled:
    scratch: SqliteScratch
    identity: FilesIdentity
    extras: tuple[str, ...]
    reserved: int


class Prefills:
    """The prefilled scratch files of one run, by day; thread-safe (days are encrypted in
    parallel). A context manager: every file not taken, and every fill still running, is removed
    on exit (the step's end, also when it fails or is interrupted)."""

    def __init__(self, budget_bytes: int, temp_dir: str | None = None,
                 min_bytes: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.min_bytes = MIN_DAY_BYTES if min_bytes is None else min_bytes
        self.temp_dir = temp_dir
        self._lock = threading.Lock()
        self._days: dict[str, _Prefilled] = {}
        self._feeds: set[ScratchFeed] = set()  # started, not yet settled or given up
        self._reserved = 0
        self.taken = 0
        self.refused = 0  # prefilled, then not used: the layer changed or the columns differ
        self.notes: list[str] = []  # days not prefilled for a reason an operator may want to see

    def start(self, size: int) -> ScratchFeed | None:
        """A feed for a day whose cleaned layer has ``size`` bytes, or None when the day is too
        small to gain from it, the budget is spent or the temp space is short. Room in the budget
        is always given when nothing is held (the load needs that much scratch space anyway)."""
        if size < self.min_bytes:
            return None
        if not self._space_for(size):
            return None
        with self._lock:
            if self._reserved and self._reserved + size > self.budget_bytes:
                return None
            self._reserved += size
            feed = ScratchFeed(temp_dir=self.temp_dir, reserved=size)
            self._feeds.add(feed)
        return feed

    def _space_for(self, size: int) -> bool:
        """Free temp space for this day's file and, beside it, a load filling a file as large
        itself (a day whose prefill is refused): a prefill never takes the room a load needs."""
        folder = self.temp_dir or tempfile.gettempdir()
        free = shutil.disk_usage(folder).free
        if free >= 2 * size * SCRATCH_BYTES_PER_CLEANED_BYTE:
            return True
        self.notes.append(f"a day's load file not filled ahead: {free >> 20} MB free in {folder}")
        return False

    def settle(self, day: str, feed: ScratchFeed, identity: FilesIdentity) -> None:
        """Keep the feed's file for the day's load, made from the layer ``identity`` names (empty:
        the layer was not published, e.g. a newer one stood; the file is dropped). The feed stays
        tracked until this returns, so an interruption while it finishes leaves it to ``close``."""
        scratch = feed.finish()
        if feed.error is not None:
            self.notes.append(f"{day}: load file not filled ahead ({feed.error}); the load fills "
                              "it from the encrypted layer")
        keep = scratch is not None and bool(identity)
        with self._lock:
            self._feeds.discard(feed)
            if keep:
                self._days[day] = _Prefilled(scratch, identity, feed.extras, feed.reserved)
        if not keep:
            if scratch is not None:
                scratch.remove()
            self._release(feed.reserved)

    def give_up(self, feed: ScratchFeed) -> None:
        """Stop a feed that was not settled and remove its file (a no-op once settled)."""
        with self._lock:
            if feed not in self._feeds:
                return
            self._feeds.discard(feed)
        feed.abandon()
        self._release(feed.reserved)

    def _release(self, size: int) -> None:
        with self._lock:
            self._reserved -= size

    def take(self, day: str, fragments: list[Path], extras: Sequence[str]) -> SqliteScratch | None:
        """The day's prefilled scratch file when it was made from exactly these layer files and
        extra columns (the caller then owns and removes it), else None (and any stale file is
        removed)."""
        with self._lock:
            entry = self._days.pop(day, None)
        if entry is None:
            return None
        if entry.identity != files_identity(fragments) or entry.extras != tuple(extras):
            self.refused += 1
            self._drop(entry)
            return None
        self.taken += 1
        self._release(entry.reserved)
        return entry.scratch

    def drop_held(self) -> int:
        """Remove every file held for a later load (their days' loads fill their own); returns
        how many. For a load that ran out of temp space beside them."""
        with self._lock:
            entries, self._days = list(self._days.values()), {}
        for entry in entries:
            self._drop(entry)
        return len(entries)

    def _drop(self, entry: _Prefilled) -> None:
        entry.scratch.remove()
        self._release(entry.reserved)

    def close(self) -> None:
        with self._lock:
            feeds = list(self._feeds)
        for feed in feeds:
            self.give_up(feed)
        self.drop_held()

    def __enter__(self) -> Prefills:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Encryption(Protocol):
    identity: FilesIdentity


Encryption = TypeVar("Encryption", bound=_Encryption)


def encrypt_with_prefill(prefills: Prefills | None, day: str, size: int,
                         encrypt: Callable[[Callable[[pa.Table], None] | None], Encryption]) -> Encryption:
    """``encrypt(on_chunk)`` for one day, its chunks also fed to a scratch file for the day's load
    when ``prefills`` has room; a failed encryption leaves no file behind."""
    feed = prefills.start(size) if prefills is not None else None
    if feed is None:
        return encrypt(None)
    try:
        result = encrypt(feed.put)
        prefills.settle(day, feed, result.identity)
    except BaseException:  # interruptions included: the fill stops and its file goes
        prefills.give_up(feed)
        raise
    return result
