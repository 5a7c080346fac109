"""Rotating the files: plain Parquet under staging/ whose token columns are rewritten, and sealed
files (fragments, archived drops) re-sealed under the active key, each atomically.

Re-sealing also binds files to their identity (crypto.file_binding): a file sealed before the
binding (or in the previous format) counts as not under the active key, and this is the only place
that opens it."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sales_platform.core import crypto
from sales_platform.core.crypto import (
    SEAL_AD,
    UNBOUND,
    UNKNOWN_KEY,
    CryptoError,
    Keyring,
    Tokenizer,
    file_binding,
    key_id_of_token,
    open_sealed,
    seal_stream,
    sealed_identity,
)
from sales_platform.core.rotation.tokens import (
    BatchDone,
    Progress,
    RotationError,
    RotationReport,
    TokenCache,
)
from sales_platform.core.schema import DEFAULT_SENSITIVE, EXTRAS_COLUMN
from sales_platform.core.store import PLAIN_SUFFIX, DataAreas, write_plain_table

SEALED_SUFFIX = ".sealed"
ROTATING_SUFFIX = ".rotating"  # a re-sealed file being written, beside the one it replaces
# Columns of the plain Parquet files under staging/ that hold tokens (see pipeline.protect_identifiers
# and landing.Lander._malformed).
STAGED_TOKEN_COLUMNS = ("customer_id", "product_id", "raw_text")


def _visible(areas: DataAreas, path: Path) -> bool:
    """Not a temp file or work folder of a running step (those start with a dot)."""
    return not any(part.startswith(".") for part in path.relative_to(areas.root).parts)


def _label(areas: DataAreas, path: Path) -> str:
    parts = path.relative_to(areas.root).parts
    return "/".join(parts[:2]) if parts[0] == areas.staging.name and len(parts) > 2 else parts[0]


def sealed_files(areas: DataAreas) -> list[Path]:
    """Sealed files the platform keeps: fragments under staging/, dropped files under archive/."""
    found: list[Path] = []
    for root in (areas.staging, areas.archive):
        if root.is_dir():
            found += sorted(p for p in root.rglob(f"*{SEALED_SUFFIX}") if p.is_file() and _visible(areas, p))
    return found


def staged_token_files(areas: DataAreas) -> list[Path]:
    """Plain Parquet files under staging/ (they hold tokens, never plaintext identifiers)."""
    if not areas.staging.is_dir():
        return []
    return sorted(p for p in areas.staging.rglob(f"*{PLAIN_SUFFIX}") if p.is_file() and _visible(areas, p))


def sealed_key_id(path: Path, keyring: Keyring) -> str:
    """The key of ``keyring`` that opens a sealed file as itself (Tink's streaming format names no
    key: its first segment is tried with each key), the key id in a legacy SPSEAL1 header, or
    UNBOUND for a file sealed before the name binding (to re-seal, whatever its key)."""
    binding = file_binding(sealed_identity(path))
    with open(path, "rb") as handle:
        found = crypto.sealed_key_id(keyring, handle, binding)
        if found != UNKNOWN_KEY:
            return found
        handle.seek(0)
        return UNBOUND if crypto.sealed_key_id(keyring, handle, SEAL_AD) != UNKNOWN_KEY else found


def sealed_counts_by_key(areas: DataAreas, keyring: Keyring) -> dict[str, dict[str, int]]:
    """``{"staging/<layer>" or "archive": {key_id: files}}``."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for path in sealed_files(areas):
        counts[_label(areas, path)][sealed_key_id(path, keyring)] += 1
    return {label: dict(sorted(c.items())) for label, c in sorted(counts.items())}


def _string_columns(table: pa.Table, names: Sequence[str]) -> Iterator[tuple[int, str]]:
    for index, name in enumerate(table.column_names):
        if name in names and pa.types.is_string(table.schema.field(name).type):
            yield index, name


def staged_token_counts_by_key(areas: DataAreas,
                               sensitive: Sequence[str] = DEFAULT_SENSITIVE) -> dict[str, dict[str, int]]:
    """``{"staging/<layer>": {key_id: token values}}`` over the plain Parquet files."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for path in staged_token_files(areas):
        table = pq.read_table(path)
        for _, name in _string_columns(table, (*STAGED_TOKEN_COLUMNS, *sensitive)):
            counts[_label(areas, path)].update(key_id_of_token(v) for v in table[name].to_pylist()
                                               if v is not None)
    return {label: dict(sorted(c.items())) for label, c in sorted(counts.items())}


def rotate_token_files(areas: DataAreas, tokenizer: Tokenizer, report: RotationReport,
                        progress: Progress | None, sensitive: tuple[str, ...]) -> None:
    for path in staged_token_files(areas):
        cache = TokenCache(tokenizer)
        table = pq.read_table(path)
        rotated = 0
        for index, name in _string_columns(table, (*STAGED_TOKEN_COLUMNS, *sensitive)):
            values = table[name].to_pylist()
            stale = [cache.stale(v) for v in values]
            if any(stale):
                where = f"{path.relative_to(areas.root)}, column {name}"
                new = [cache.new(v, where, name) if s else v for v, s in zip(values, stale, strict=True)]
                table = table.set_column(index, table.schema.field(name), pa.array(new, pa.string()))
                rotated += sum(stale)
        for index, name in _string_columns(table, (EXTRAS_COLUMN,)):
            values = table[name].to_pylist()
            where = f"{path.relative_to(areas.root)}, column {name}"
            new = [cache.rotate_json(v, sensitive, where) for v in values]
            if any(n is not None for n in new):
                merged = [v if n is None else n for v, n in zip(values, new, strict=True)]
                table = table.set_column(index, table.schema.field(name), pa.array(merged, pa.string()))
                rotated += sum(n is not None for n in new)
        if rotated:
            write_plain_table(path, table)  # atomic: written beside, then renamed
            report.token_files[_label(areas, path)] += 1
            report.distinct_tokens += len(cache.done)
            if progress is not None:
                progress(BatchDone("staged token files", 1, rotated))


def _clear_interrupted(areas: DataAreas) -> None:
    """Temp files of a rotation killed while re-sealing (never renamed into place). Called under the
    exclusive intake and landing locks, so no other rotation can be writing them now."""
    for root in (areas.staging, areas.archive):
        if root.is_dir():
            for tmp in root.rglob(f".*{SEALED_SUFFIX}.*{ROTATING_SUFFIX}"):
                tmp.unlink(missing_ok=True)


def reseal_files(areas: DataAreas, keyring: Keyring, report: RotationReport, progress: Progress | None,
                  archive_sink: Callable[[str, Path], str] | None, accept_unbound: bool = True) -> None:
    _clear_interrupted(areas)
    for path in sealed_files(areas):
        if sealed_key_id(path, keyring) == keyring.active.key_id:
            continue
        in_archive = path.parent == areas.archive
        reseal_file(keyring, path, (lambda tmp, p=path: archive_sink(f"archive/{p.name}", tmp))
                    if in_archive and archive_sink is not None else None, accept_unbound)
        report.sealed_files[_label(areas, path)] += 1
        if progress is not None:
            progress(BatchDone("sealed files", 1, 1))


def reseal_file(keyring: Keyring, path: Path, before_replace: Callable[[Path], object] | None = None,
                accept_unbound: bool = True) -> None:
    """Decrypt ``path`` with the keyring and seal it again under the active key, bound to its
    identity, atomically. With ``accept_unbound`` a file sealed before the binding (or SPSEAL1) is
    accepted: the one-time upgrade; once a deployment's files are all bound, one is refused.

    Streams segment by segment (archived drops can be large). ``before_replace`` gets the new file
    first (e.g. to upload the off-machine copy): if it fails, the old file stays and a rerun retries.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}{ROTATING_SUFFIX}")
    try:
        binding = file_binding(sealed_identity(path))
        with open(path, "rb") as source, open(tmp, "wb") as out:
            older = (SEAL_AD,) if accept_unbound else ()
            try:
                seal_stream(keyring.active, open_sealed(keyring, source, binding, older,
                                                        allow_legacy=accept_unbound), out, binding)
            except CryptoError as exc:
                hint = "" if accept_unbound else (
                    "; every file of this deployment was already bound to its name, so one sealed "
                    "without it was put there: remove it or restore the file from a backup")
                raise RotationError(f"{path}: {exc}{hint}") from None
            out.flush()
            os.fsync(out.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

