"""The per-day layers after landing: cleaned (sealed) -> encrypted (tokens), in bounded chunks."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sales_platform.core.crypto import Keyring, Tokenizer, fragment_identity
from sales_platform.core.csvread import FAST_CHUNK_ROWS
from sales_platform.core.dedupe import DuplicateScan
from sales_platform.core.frames import arrow_frame, frame_table
from sales_platform.core.landing import LANDED, LandedAccounts, remove_orphans
from sales_platform.core.protect import protect_identifiers
from sales_platform.core.quality import QualityRules, clean_rows
from sales_platform.core.schema import EXTRAS_COLUMN, IDENTIFIER_COLUMNS
from sales_platform.core.store import (
    SEALED_SUFFIX,
    DataAreas,
    read_sealed_table,
    write_plain_table,
    write_sealed_table,
)
from sales_platform.core.warehouse.artifacts import WrittenFile, written_file

CLEANED = "cleaned"
ENCRYPTED = "encrypted"
REJECTS = "rejects"


MANIFEST = "_manifest.json"


@dataclass
class DayCleaning:
    day: str
    rows_read: int = 0
    rows_clean: int = 0
    files: Counter[str] = field(default_factory=Counter)
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (file, sha) -> rows read
    snapshot_ns: int = 0
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    product_rule_applied: bool = True
    written: list[WrittenFile] = field(default_factory=list)  # cleaned + rejects layers, if published
    published: bool = False  # False: a run that read newer landed rows published the day first
    rows_in_file: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects_by_reason.values())


def _between_chunks() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the system before the next chunk
    is read, so a large day's peak stays that of one chunk."""
    pa.default_memory_pool().release_unused()


def _landed_frames(areas: DataAreas, keyring: Keyring, day: str,
                   accounts: LandedAccounts | None) -> Iterator[pd.DataFrame]:
    """The day's landed rows a committed ledger row accounts for (all, without ``accounts``), in
    fragment order; small fragments of one layout are joined into chunks of up to
    FAST_CHUNK_ROWS rows (a drop of 20,000 one-row files is one chunk, not 20,000)."""
    joined: list[pa.Table] = []
    rows = 0
    for path in areas.fragments(LANDED, day):
        if accounts is not None and not accounts.readable(path.name):
            continue
        table = read_sealed_table(path, keyring, fragment_identity(LANDED, day, path.name))
        if joined and (table.schema != joined[0].schema or rows + table.num_rows > FAST_CHUNK_ROWS):
            yield _joined_frame(joined)
            joined, rows = [], 0
        joined.append(table)
        rows += table.num_rows
    if joined:
        yield _joined_frame(joined)


def _joined_frame(tables: list[pa.Table]) -> pd.DataFrame:
    # one chunk per column: thousands of one-row chunks make every later step slow
    frame = arrow_frame(tables[0] if len(tables) == 1 else
                        pa.concat_tables(tables).combine_chunks())
    _between_chunks()
    return frame


def clean_day(areas: DataAreas, keyring: Keyring, day: str, rules: QualityRules,
              known_products: frozenset[str] | None, sensitive: tuple[str, ...] = (),
              conflicts_before: Sequence[str] = (),
              accounts: Callable[[], LandedAccounts] | None = None) -> DayCleaning:
    """Apply every quality rule to all landed rows of ``day``; publish cleaned rows and rejects.

    One cleaning pass writes candidate fragments and records two hashes per row; duplicate
    transaction ids are then removed from the candidates that hold any (usually few rows): only
    those fragments are read again, as Arrow tables filtered by pass one's verdict.
    ``conflicts_before`` (ids the day held in cross-day conflict before) travels in the manifest:
    the load asks for the other days again when the day lets go of one.
    ``accounts`` (read under the landing lock, where landings publish and commit together) names
    the versions whose fragments are read; fragments it does not account for are removed.
    """
    result = DayCleaning(day=day, product_rule_applied=known_products is not None)
    tokenizer = Tokenizer(keyring)
    clean_tmp = areas.replace_layer(CLEANED, day)
    rejects_tmp = areas.replace_layer(REJECTS, day)
    scan, candidates, counts, ordinal = DuplicateScan(), [], [], 0
    with areas.lock("landing", shared=True):  # landings publish under the exclusive lock
        result.snapshot_ns = time.time_ns()
        accounted = accounts() if accounts is not None else None
        if accounted is not None:
            remove_orphans(areas, accounted, [day])
        for part, frame in enumerate(_landed_frames(areas, keyring, day, accounted)):
            result.rows_read += len(frame)
            result.files.update(frame["source_file"].value_counts().to_dict())
            result.versions.update(
                frame.groupby(["source_file", "source_sha256"]).size().to_dict())
            cleaned = clean_rows(frame, rules, known_products)
            scan.add(cleaned.rows)
            path = clean_tmp / f"part-{part:05d}{SEALED_SUFFIX}"
            write_sealed_table(path, frame_table(cleaned.rows), keyring.active,
                               fragment_identity(CLEANED, day, path.name))
            candidates.append((path, ordinal))
            counts.append(len(cleaned.rows))
            result.rows_in_file[path.name] = len(cleaned.rows)
            ordinal += len(cleaned.rows)
            _write_rejects(rejects_tmp / f"part-{part:05d}.parquet", cleaned.rejects, tokenizer,
                           sensitive, result)
    verdict = scan.verdict()
    for part, (path, first) in enumerate(candidates):
        count = counts[part]
        reasons = verdict.reasons(first, count)
        if reasons is None:  # no duplicate in this chunk: it stays as written, never read again
            result.rows_clean += count
            continue
        _between_chunks()
        identity = fragment_identity(CLEANED, day, path.name)
        table = read_sealed_table(path, keyring, identity)
        keep = pd.isna(reasons)
        dup = table.filter(pa.array(~keep)).to_pandas()
        duplicates = dup.assign(reason=reasons[~keep], quantity=dup["quantity"].astype(str))
        _write_rejects(rejects_tmp / f"dup-{part:05d}.parquet", duplicates, tokenizer, sensitive,
                       result)
        write_sealed_table(path, table.filter(pa.array(keep)), keyring.active, identity)
        result.rows_clean += int(keep.sum())
        result.rows_in_file[path.name] = int(keep.sum())
    for folder in (clean_tmp, rejects_tmp):
        write_manifest(folder, result.snapshot_ns, result.versions, conflicts_before)
    written = {layer: layer_files(areas, layer, day, tmp, result.rows_in_file)
               for layer, tmp in ((CLEANED, clean_tmp), (REJECTS, rejects_tmp))}
    # a run that read older landed rows than the published layer's never replaces it
    for layer, tmp in ((CLEANED, clean_tmp), (REJECTS, rejects_tmp)):
        if areas.publish_layer(layer, day, tmp, version=manifest_ns):
            result.written += written[layer]
            result.published = result.published or layer == CLEANED
    return result


def layer_files(areas: DataAreas, layer: str, day: str, tmp: Path,
                rows: dict[str, int]) -> list[WrittenFile]:
    """The data files of a day's layer, hashed in its temp folder (read once, before the rename
    that publishes them), located where they are published."""
    final = areas.layer_dir(layer, day)
    return [written_file(path, rows[path.name], day, published_as=final / path.name)
            for path in sorted(tmp.iterdir())
            if path.name.endswith((SEALED_SUFFIX, ".parquet")) and not path.name.startswith(".")]


def _write_rejects(path: Path, rejects: pd.DataFrame, tokenizer: Tokenizer, sensitive: tuple[str, ...],
                   result: DayCleaning) -> None:
    if not len(rejects):
        return
    result.rejects_by_reason.update(rejects["reason"].value_counts().to_dict())
    result.rows_in_file[path.name] = len(rejects)
    write_plain_table(path, frame_table(protect_identifiers(rejects, tokenizer, sensitive)))


@dataclass
class DayEncryption:
    day: str
    rows: int = 0
    distinct_customers: int = 0
    distinct_products: int = 0
    written: list[WrittenFile] = field(default_factory=list)  # the layer's files, if published
    published: bool = False  # False: a run that read newer cleaned rows published the day first


def encrypt_day(areas: DataAreas, keyring: Keyring, day: str,
                sensitive: tuple[str, ...] = ()) -> DayEncryption:
    """Replace identifiers of the day's cleaned rows by deterministic tokens."""
    result = DayEncryption(day=day)
    tokenizer = Tokenizer(keyring)
    tmp = areas.replace_layer(ENCRYPTED, day)
    customers: set[str] = set()
    products: set[str] = set()
    rows: dict[str, int] = {}
    with areas.reading_layer(CLEANED, day):
        for part, path in enumerate(areas.fragments(CLEANED, day)):
            _between_chunks()
            table = read_sealed_table(path, keyring, fragment_identity(CLEANED, day, path.name))
            customers.update(_distinct(table, "customer_id"))
            products.update(_distinct(table, "product_id"))
            protected = protect_table(table, tokenizer, sensitive)
            write_plain_table(tmp / f"part-{part:05d}.parquet", protected)
            rows[f"part-{part:05d}.parquet"] = table.num_rows
            result.rows += table.num_rows
        manifest = areas.layer_dir(CLEANED, day) / MANIFEST
        if manifest.exists():
            shutil.copyfile(manifest, tmp / MANIFEST)
    written = layer_files(areas, ENCRYPTED, day, tmp, rows)
    if areas.publish_layer(ENCRYPTED, day, tmp, version=manifest_ns):
        result.written, result.published = written, True
    result.distinct_customers, result.distinct_products = len(customers), len(products)
    return result


def _distinct(table: pa.Table, column: str) -> list:
    if column not in table.column_names:
        return []
    return pc.unique(table.column(column)).to_pylist()


def protect_table(table: pa.Table, tokenizer: Tokenizer, sensitive: Sequence[str] = ()) -> pa.Table:
    """``protect_identifiers`` on an Arrow table without a pandas round trip: each column's
    distinct values are tokenized once (through ``protect_identifiers`` itself, so the tokens are
    the same) and put back in place by index. JSON extras with sensitive keys take the pandas path."""
    if sensitive and EXTRAS_COLUMN in table.column_names:
        frame = protect_identifiers(table.to_pandas(), tokenizer, sensitive)
        return pa.Table.from_pandas(frame, preserve_index=False)
    for column in dict.fromkeys((*IDENTIFIER_COLUMNS, *sensitive)):
        if column not in table.column_names or pa.types.is_null(table.column(column).type):
            continue
        encoded = pc.dictionary_encode(table.column(column).combine_chunks().cast(pa.string()))
        uniques = pd.DataFrame({column: encoded.dictionary.to_pandas()})
        tokens = pa.array(protect_identifiers(uniques, tokenizer, sensitive)[column], pa.string())
        index = table.column_names.index(column)
        table = table.set_column(index, column, pc.take(tokens, encoded.indices))
    return table


@dataclass(frozen=True)
class Snapshot:
    """Which landed rows a day's layers were built from: the time they were read and the rows
    of each file version."""

    snapshot_ns: int
    versions: dict[tuple[str, str], int]
    conflicts_before: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(self.versions.values())


def write_manifest(folder: Path, snapshot_ns: int, versions: Counter[tuple[str, str]],
                   conflicts_before: Sequence[str] = ()) -> None:
    payload = {"snapshot_ns": snapshot_ns, "conflicts_before": sorted(conflicts_before),
               "versions": [{"file": f, "sha256": s, "rows": int(n)}
                            for (f, s), n in sorted(versions.items())]}
    (folder / MANIFEST).write_text(json.dumps(payload))


def manifest_ns(folder: Path) -> int:
    """The snapshot time of a layer folder (0 when it has no manifest)."""
    path = folder / MANIFEST
    return json.loads(path.read_text())["snapshot_ns"] if path.exists() else 0


def read_snapshot(areas: DataAreas, layer: str, day: str) -> Snapshot | None:
    path = areas.layer_dir(layer, day) / MANIFEST
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    return Snapshot(payload["snapshot_ns"],
                    {(v["file"], v["sha256"]): v["rows"] for v in payload["versions"]},
                    tuple(payload.get("conflicts_before", ())))


def layer_columns(areas: DataAreas, layer: str, day: str) -> list[str]:
    """Union of the column names of a day's Parquet fragments (from their footers only)."""
    names: dict[str, None] = {}
    for path in areas.fragments(layer, day):
        names.update(dict.fromkeys(pq.read_schema(path).names))
    return list(names)


def iter_parquet_layer(areas: DataAreas, layer: str, day: str) -> Iterator[pd.DataFrame]:
    for path in areas.fragments(layer, day):
        yield from _batches(path)


def iter_arrow_layer(areas: DataAreas, layer: str, day: str, rows: int = 200_000) -> Iterator[pa.Table]:
    """The day's layer as Arrow tables of at most ``rows`` rows (the load's PostgreSQL COPY
    formats them without a pandas round trip)."""
    for path in areas.fragments(layer, day):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])


def _batches(path: Path, rows: int = 200_000) -> Iterator[pd.DataFrame]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas()
