"""Cheap listing of the drop zone for sensors: stat, fingerprint, never parse.

A file is ready when it is not a temp file (``*.tmp`` etc., renamed when complete) and its size
and mtime are settled: unchanged across two looks (before and after hashing) and older than a
settle time. Fingerprints are cached by (size, mtime) so an unchanged file is hashed once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sales_platform.core.intake import pending_files
from sales_platform.core.landing import fingerprint
from sales_platform.core.store import safe_name


@dataclass(frozen=True)
class SeenFile:
    name: str
    size: int
    mtime_ns: int
    sha256: str

    @property
    def run_key(self) -> str:
        """Content + name + mtime: the same drop is one run, even after a cursor reset."""
        return f"land:{self.sha256}:{safe_name(self.name)}:{self.mtime_ns}"


def scan(incoming: Path, cache: dict[str, dict], settle_s: float = 2.0,
         now: float | None = None) -> tuple[list[SeenFile], list[str]]:
    """Ready files (fingerprinted) and names still being written."""
    now = time.time() if now is None else now
    ready, unsettled = [], []
    for path in pending_files(incoming):
        try:
            before = path.stat()
        except FileNotFoundError:
            continue  # landed or moved by a run meanwhile
        if now - before.st_mtime < settle_s:
            unsettled.append(path.name)
            continue
        cached = cache.get(path.name)
        if cached and (cached["size"], cached["mtime_ns"]) == (before.st_size, before.st_mtime_ns):
            ready.append(SeenFile(**cached))
            continue
        sha, _ = fingerprint(path)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            unsettled.append(path.name)
            continue
        seen = SeenFile(path.name, after.st_size, after.st_mtime_ns, sha)
        cache[path.name] = asdict(seen)
        ready.append(seen)
    for name in list(cache):
        if name not in {f.name for f in ready}:
            del cache[name]
    return ready, unsettled


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
