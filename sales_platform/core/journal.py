"""A JSON-lines journal with one line per id: run-failure alerts and load commits are written so.

Appends use O_APPEND, so concurrent writers' lines stay whole; a torn or foreign line is skipped
by the reader, never fatal (the journal serves alerting, which must keep going).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def recorded_ids(path: Path, id_field: str) -> set[str]:
    """The ``id_field`` values of the journal's lines (none when the file does not exist)."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)[id_field])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def append_once(path: Path, record: dict, id_field: str) -> bool:
    """Append ``record`` as one line unless a line with its ``id_field`` is there (then False)."""
    if record[id_field] in recorded_ids(path, id_field):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return True
