"""The data-object and data-model ledgers: the one place that writes them.

Every artifact a stage writes (a landed fragment, a cleaned or encrypted layer, rows of a table, an
export, a report, a catalogue fetch) is one appended ``data_objects`` row: where it is, its content
hash, its rows and the version of the stage that wrote it (``core/codeversion.py``). The first
artifact a stage writes under a new version also appends ``(stage, version)`` to ``data_models``,
so the ledger answers "which code produced this file" and "when did this stage change".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from sales_platform.core.warehouse.tables import data_models, data_objects

KINDS = frozenset({"fragment", "layer", "table", "export", "report", "fetch"})


@dataclass(frozen=True)
class Artifact:
    stage: str
    kind: str
    location: str
    sha256: str | None
    rows: int | None
    code_version: str
    bytes: int | None = None
    partition_key: str | None = None
    run_id: str | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WrittenFile:
    """A file a stage wrote, hashed once after writing (before it is moved into place)."""

    location: str  # where it lives once published
    sha256: str
    rows: int | None
    bytes: int
    day: str | None = None

    def artifact(self, stage: str, kind: str, code_version: str,
                 run_id: str | None = None) -> Artifact:
        return Artifact(stage, kind, self.location, self.sha256, self.rows, code_version,
                        self.bytes, self.day, run_id)


def written_file(path: Path, rows: int | None, day: str | None = None,
                 published_as: Path | None = None) -> WrittenFile:
    """Hash ``path`` (read once); ``published_as`` is where a rename will put the same bytes."""
    return WrittenFile(str(published_as or path), sha256_file(path), rows, path.stat().st_size, day)


def _check(artifact: Artifact) -> None:
    if artifact.kind not in KINDS:
        raise ValueError(f"artifact of {artifact.stage}: kind {artifact.kind!r} is not one of "
                         f"{', '.join(sorted(KINDS))}")
    if not artifact.code_version:
        raise ValueError(f"artifact of {artifact.stage} at {artifact.location}: no code_version")


def _note_model(conn: Connection, stage: str, version: str, now: datetime) -> None:
    known = conn.execute(select(data_models.c.stage).where(
        data_models.c.stage == stage, data_models.c.code_version == version)).first()
    if known:
        return
    try:
        with conn.begin_nested():  # a concurrent writer may add the same version first
            conn.execute(insert(data_models).values(stage=stage, code_version=version, first_seen_at=now))
    except IntegrityError:
        pass


def record_artifacts(engine: Engine, artifacts: list[Artifact], now: datetime | None = None) -> int:
    """Append ``artifacts`` to the ledger in one transaction; returns how many were recorded."""
    if not artifacts:
        return 0
    for artifact in artifacts:
        _check(artifact)
    with engine.begin() as conn:
        return write_artifacts(conn, artifacts, now)


def write_artifacts(conn: Connection, artifacts: list[Artifact], now: datetime | None = None) -> int:
    """``record_artifacts`` inside the caller's transaction (e.g. the file_ledger row's): one
    batched insert for all of them."""
    if not artifacts:
        return 0
    for artifact in artifacts:
        _check(artifact)
    now = now or datetime.now()
    for stage, version in sorted({(a.stage, a.code_version) for a in artifacts}):
        _note_model(conn, stage, version, now)
    conn.execute(insert(data_objects), [
        {"stage": a.stage, "kind": a.kind, "location": a.location, "sha256": a.sha256,
         "rows": a.rows, "bytes": a.bytes, "partition_key": a.partition_key,
         "code_version": a.code_version, "run_id": a.run_id, "recorded_at": now}
        for a in artifacts])
    return len(artifacts)


def record_artifact(engine: Engine, stage: str, kind: str, location: str, sha256: str | None,
                    rows: int | None, code_version: str, *, size: int | None = None,
                    partition_key: str | None = None, run_id: str | None = None,
                    now: datetime | None = None) -> None:
    """Append one artifact (see ``record_artifacts``)."""
    record_artifacts(engine, [Artifact(stage, kind, location, sha256, rows, code_version, size,
                                       partition_key, run_id)], now)


def latest_artifact(engine: Engine, stage: str, kind: str | None = None) -> dict | None:
    """The newest ledger row of ``stage`` (of ``kind`` if given), as a dict, or None."""
    query = select(data_objects).where(data_objects.c.stage == stage)
    if kind:
        query = query.where(data_objects.c.kind == kind)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(data_objects.c.object_id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None
