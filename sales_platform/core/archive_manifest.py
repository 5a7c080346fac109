"""The archive's memory of every drop: one small sealed manifest per arrival.

``archive/<sha256>.csv.sealed`` keeps a drop's bytes by content only; the manifest beside it,
``archive/manifests/<arrival ns>-<name id>.json.sealed``, keeps what the content alone cannot
say: the exact file name, the arrival order (``arrival_ns``, also the landing key that orders
fragments, so the earliest-landed copy of a duplicate stays the earliest), the outcome at arrival
(landed, skipped_duplicate, quarantined with its reason) and the landing settings it was read with.
A re-landing under new settings (``reprocess``) adds a record of kind ``reprocessed``.

Manifests are sealed and bound to their path like every platform file (a data-dir reader learns
nothing new; a manifest copied over another does not open there) and re-sealed by the rotation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sales_platform.core import settings
from sales_platform.core.crypto import (
    DataKey,
    Keyring,
    archive_identity,
    file_binding,
    open_platform_bytes,
    seal_bytes,
)
from sales_platform.core.private_files import private_folder
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas, SyncBatch, atomic_write_bytes

MANIFESTS = "manifests"  # under archive/
SUFFIX = ".json.sealed"
FORMAT = 1
ARRIVAL = "arrival"
REPROCESSED = "reprocessed"
FUTURE_TOLERANCE = "future tolerance (s)"
CONTRACT = "schema contract (aliases, required, sensitive)"


def landing_settings(rules: QualityRules, contract: SchemaContract, max_columns: int) -> dict:
    """Every setting that decides, at landing, a row's sale day or a landing reject (named as the
    operator sets them); a version landed under other values is stale."""
    shape = json.dumps({"aliases": dict(sorted(contract.aliases.items())),
                        "required": list(contract.required), "sensitive": sorted(contract.sensitive)},
                       sort_keys=True)
    return {settings.SOURCE_TIMEZONE: rules.source_timezone,
            settings.START_DATE: rules.start_date.isoformat(),
            FUTURE_TOLERANCE: rules.future_tolerance.total_seconds(),
            settings.SCHEMA_POLICY: contract.policy,
            CONTRACT: hashlib.sha256(shape.encode()).hexdigest()[:16],
            settings.MAX_COLUMNS: max_columns}


def changed_settings(before: dict | None, now: dict) -> list[str]:
    """``NAME old -> new`` for each landing setting that differs (unknown before: one line)."""
    if before is None:
        return ["landing settings not recorded (archived before manifests)"]
    return [f"{k} {before.get(k)} -> {v}" for k, v in now.items() if before.get(k) != v]


@dataclass
class Manifest:
    file_name: str
    sha256: str
    size_bytes: int
    status: str  # at arrival: landed, skipped_duplicate, quarantined
    arrival_ns: int
    received_at: str  # ISO time the ledger recorded
    kind: str = ARRIVAL
    detail: str | None = None
    quarantine_path: str | None = None
    settings: dict = field(default_factory=dict)
    format: int = FORMAT

    @property
    def archive_name(self) -> str:
        return f"{self.sha256}.csv.sealed"


def manifest_folder(areas: DataAreas) -> Path:
    return areas.archive / MANIFESTS


def manifest_identity(name: str) -> str:
    return f"{archive_identity(MANIFESTS)}/{name}"


def write_manifest(areas: DataAreas, key: DataKey, manifest: Manifest, name_id: str,
                   recorded_ns: int, sync: SyncBatch | None = None) -> Path:
    """Sealed as ``archive/manifests/<recorded ns>-<name id>-<kind>.json.sealed`` (its own path),
    written atomically; names sort in the order the records were made."""
    folder = manifest_folder(areas)
    private_folder(folder)
    target = folder / f"{recorded_ns:020d}-{name_id}-{manifest.kind}{SUFFIX}"
    data = json.dumps(asdict(manifest), sort_keys=True).encode("ascii")  # surrogates escaped
    atomic_write_bytes(target, seal_bytes(key, data, file_binding(manifest_identity(target.name))),
                       sync)
    return target


def read_manifests(areas: DataAreas, keyring: Keyring) -> Iterator[Manifest]:
    """Every record, in the order it was made (arrivals in arrival order)."""
    folder = manifest_folder(areas)
    if not folder.is_dir():
        return
    for path in sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX)
                       and not p.name.startswith(".")):
        plain = open_platform_bytes(keyring, path.read_bytes(), manifest_identity(path.name))
        yield Manifest(**json.loads(plain.decode("ascii")))


def archived_without_manifest(areas: DataAreas, manifests: list[Manifest]) -> list[str]:
    """Archived contents no manifest names (archived by a version before manifests)."""
    named = {m.archive_name for m in manifests}
    if not areas.archive.is_dir():
        return []
    return sorted(p.name for p in areas.archive.glob("*.csv.sealed") if p.name not in named)
