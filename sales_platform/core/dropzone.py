"""Cheap listing of the drop zone for sensors: stat, fingerprint, never parse.

A file is ready when it is not a temp file (``*.tmp`` etc., renamed when complete) and its size
and mtime are settled: unchanged across two looks (before and after hashing) and older than a
settle time. Fingerprints are cached by (size, mtime) so an unchanged file is hashed once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sales_platform.core.intake import DropEntry, drop_zone_entries
from sales_platform.core.landing import fingerprint, name_id


@dataclass(frozen=True)
class SeenFile:
    name: str
    size: int
    mtime_ns: int
    sha256: str

    @property
    def run_key(self) -> str:
        """Content + name + mtime: the same drop is one run, even after a cursor reset."""
        return f"land:{self.sha256}:{name_id(self.name)}:{self.mtime_ns}"


def scan(incoming: Path, cache: dict[str, dict], settle_s: float = 2.0,
         now: float | None = None) -> tuple[list[SeenFile], list[str], list[DropEntry]]:
    """Ready CSV files (fingerprinted), names still being written, and entries that are not
    regular CSV files (links, FIFOs, other names: never opened here)."""
    now = time.time() if now is None else now
    ready, unsettled = [], []
    entries = drop_zone_entries(incoming)
    unsafe = [e for e in entries if e.kind == "unsafe"]
    for entry in entries:
        if entry.kind != "csv":
            continue
        path = entry.path
        try:
            before = path.lstat()
        except FileNotFoundError:
            continue  # landed or moved by a run meanwhile
        if 0 <= now - before.st_mtime < settle_s:  # future mtime (clock skew): never "settles"
            unsettled.append(path.name)
            continue
        cached = cache.get(path.name)
        if cached and (cached["size"], cached["mtime_ns"]) == (before.st_size, before.st_mtime_ns):
            ready.append(SeenFile(**cached))
            continue
        try:
            sha, _ = fingerprint(path)
        except OSError:  # unreadable: the landing run quarantines it with the reason
            sha = f"unreadable-{before.st_mtime_ns}"
        after = path.lstat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            unsettled.append(path.name)
            continue
        seen = SeenFile(path.name, after.st_size, after.st_mtime_ns, sha)
        cache[path.name] = asdict(seen)
        ready.append(seen)
    for name in list(cache):
        if name not in {f.name for f in ready}:
            del cache[name]
    return ready, unsettled, unsafe


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
