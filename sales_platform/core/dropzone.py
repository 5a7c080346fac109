"""Cheap listing of the drop zone for sensors: stat, fingerprint, never parse.

A file is ready when it is not a temp file (``*.tmp`` etc., renamed when complete) and its size
and mtime are settled: unchanged across two looks (before and after hashing) and older than a
settle time. Fingerprints are cached by (size, mtime) so an unchanged file is hashed once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sales_platform.core.intake import DropEntry, drop_entries
from sales_platform.core.landing import fingerprint, name_id


@dataclass(frozen=True)
class SeenFile:
    name: str
    size: int
    mtime_ns: int
    sha256: str
    folder: str = ""  # "" for the drop zone, else the other drop folder's name (uploads)

    @property
    def run_key(self) -> str:
        """Content + name + mtime: the same drop is one run, even after a cursor reset."""
        return f"land:{self.sha256}:{name_id(self.name)}:{self.mtime_ns}"

    @property
    def key(self) -> str:
        """The cursor's key: a drop and an upload of one name are two files."""
        return f"{self.folder}/{self.name}" if self.folder else self.name


_SEEN_FIELDS = tuple(f.name for f in fields(SeenFile))


def scan(folders: Path | Sequence[Path], cache: dict[str, dict], settle_s: float = 2.0,
         now: float | None = None) -> tuple[list[SeenFile], list[str], list[DropEntry]]:
    """Ready CSV files (fingerprinted), names still being written, and entries that are not
    regular CSV files (links, FIFOs, other names: never opened here). ``folders``: the drop zone
    first, then the other drop folders (uploads)."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    now = time.time() if now is None else now
    ready, unsettled = [], []
    entries = drop_entries(folders)
    unsafe = [e for e in entries if e.kind == "unsafe"]
    for entry in entries:
        if entry.kind != "csv":
            continue
        path = entry.path
        folder = "" if path.parent == folders[0] else path.parent.name
        try:
            before = path.lstat()
        except FileNotFoundError:
            continue  # landed or moved by a run meanwhile
        if 0 <= now - before.st_mtime < settle_s:  # future mtime (clock skew): never "settles"
            unsettled.append(path.name)
            continue
        key = SeenFile(path.name, 0, 0, "", folder).key
        cached = cache.get(key)
        if cached and (cached["size"], cached["mtime_ns"]) == (before.st_size, before.st_mtime_ns):
            ready.append(SeenFile(**{k: cached[k] for k in _SEEN_FIELDS if k in cached}))
            continue
        try:
            sha, _ = fingerprint(path)
        except OSError:  # unreadable: the landing run quarantines it with the reason
            sha = f"unreadable-{before.st_mtime_ns}"
        after = path.lstat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            unsettled.append(path.name)
            continue
        seen = SeenFile(path.name, after.st_size, after.st_mtime_ns, sha, folder)
        cache[key] = asdict(seen)
        ready.append(seen)
    keys = {f.key for f in ready}
    for key in list(cache):
        if key not in keys:
            del cache[key]
    return ready, unsettled, unsafe


def batch_run_key(batch: Sequence[SeenFile]) -> str:
    """One file: its own run key; several: from every file's identity (content, name, mtime)."""
    if len(batch) == 1:
        return batch[0].run_key
    digest = hashlib.sha256("\n".join(f.run_key for f in batch).encode()).hexdigest()[:24]
    return f"land:batch:{len(batch)}:{digest}"


def landing_batches(ready: Sequence[SeenFile], cache: dict[str, dict],
                    size: int) -> list[tuple[str, list[SeenFile]]]:
    """Ready files in batches of at most ``size`` (one landing run each), as (run key, files).

    A file keeps the batch an earlier tick put it in (its run key is in the cursor) while it
    waits, so a drop still landing is never put in a second run; new files make new batches."""
    kept: dict[str, list[SeenFile]] = {}
    fresh: list[SeenFile] = []
    for seen in ready:
        batch = cache.get(seen.key, {}).get("batch")
        (kept.setdefault(batch, []) if batch else fresh).append(seen)
    batches = list(kept.items())
    for start in range(0, len(fresh), size):
        files = fresh[start:start + size]
        key = batch_run_key(files)
        batches.append((key, files))
        for seen in files:
            cache[seen.key]["batch"] = key
    return batches


def contiguous_ranges(days: list[str]) -> list[tuple[str, str]]:
    """Sorted ISO days grouped into (first, last) runs of consecutive days."""
    from datetime import date, timedelta

    ranges: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if ranges and date.fromisoformat(ranges[-1][1]) + timedelta(days=1) == date.fromisoformat(day):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
