"""Landing: read one dropped CSV file in bounded chunks and split its rows by sale date.

Every row ends in exactly one place: a sealed per-day fragment under staging/landed/<day>/, or
the file's landing rejects (rows whose timestamp gives no valid day, malformed records). A file
that cannot be read at all raises FileRejected and leaves nothing behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from sales_platform.core.crypto import Keyring, Tokenizer
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
    safe_name,
    write_plain_table,
    write_sealed_table,
)

LANDED = "landed"
LANDING_REJECTS = "landing_rejects"
MALFORMED_ROW = "malformed_row"
BLOCK_SIZE = 8 << 20
_HEADER_PROBE_BYTES = 64 << 10


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


def file_key(name: str, sha256: str) -> str:
    return f"{safe_name(name)}__{sha256[:12]}"


@dataclass
class LandingResult:
    file_name: str
    sha256: str
    size: int
    rows_read: int = 0
    rows_by_day: Counter[str] = field(default_factory=Counter)
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    columns: list[str] = field(default_factory=list)

    @property
    def rows_landed(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects_by_reason.values())

    @property
    def days(self) -> list[str]:
        return sorted(self.rows_by_day)


def read_header(path: Path) -> list[str]:
    """The header row, with clear errors for empty, binary and wrongly delimited files."""
    name = path.name
    with open(path, "rb") as handle:
        probe = handle.read(_HEADER_PROBE_BYTES)
    if not probe.strip():
        raise FileRejected(f"{name}: file is empty")
    if b"\x00" in probe:
        raise FileRejected(f"{name}: file is binary (NUL bytes), not a CSV text file")
    try:
        text = probe.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if len(probe) < _HEADER_PROBE_BYTES or exc.start < len(probe) - 4:
            raise FileRejected(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        text = probe[: exc.start].decode("utf-8-sig")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    header = next(csv.reader(io.StringIO(first_line)), [])
    if len(header) == 1 and any(d in first_line for d in ";\t|"):
        raise FileRejected(
            f"{name}: wrong delimiter: header {first_line[:80]!r} has no commas (expected comma-separated)"
        )
    return header


def _invalid_rows(collector: list[dict]) -> callable:
    def handler(row: pacsv.InvalidRow) -> str:
        collector.append(
            {"number": row.number, "detail": f"expected {row.expected_columns} columns, "
             f"got {row.actual_columns}", "text": row.text}
        )
        return "skip"

    return handler


def iter_batches(path: Path, header: list[str], invalid: list[dict]) -> Iterator[pa.RecordBatch]:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True, encoding="utf8"),
        parse_options=pacsv.ParseOptions(invalid_row_handler=_invalid_rows(invalid),
                                          newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header}, strings_can_be_null=False
        ),
    )
    yield from reader


class Lander:
    """Lands files into the staging area; one instance per run."""

    def __init__(self, areas: DataAreas, keyring: Keyring, contract: SchemaContract,
                 rules: QualityRules, now: datetime) -> None:
        self.areas = areas
        self.keyring = keyring
        self.tokenizer = Tokenizer(keyring)
        self.contract = contract
        self.rules = rules
        self.now = now

    def land(self, path: Path, sha256: str, size: int) -> LandingResult:
        """Land ``path`` (its fragments replace those of an older version of the same name)."""
        result = LandingResult(file_name=path.name, sha256=sha256, size=size)
        key = file_key(path.name, sha256)
        work = self.areas.staging / LANDED / f".landing-{key}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            self._split(path, key, work, result)
            with self.areas.lock("landing"):
                self._publish(path.name, key, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return result

    def _split(self, path: Path, key: str, work: Path, result: LandingResult) -> None:
        header = read_header(path)
        try:
            mapping = self.contract.map_header(header, path.name)
        except SchemaError as exc:
            raise FileRejected(str(exc)) from exc
        result.columns = [mapping[h] for h in header]
        extras = self.contract.extra_columns(result.columns)
        if extras and self.contract.policy == FREEZE:
            raise FileRejected(f"{path.name}: unknown column(s) {', '.join(extras)} "
                               "(schema policy 'freeze' accepts only the contract's columns)")
        invalid: list[dict] = []
        rejects: list[pd.DataFrame] = []
        try:
            for number, batch in enumerate(iter_batches(path, header, invalid)):
                frame = batch.to_pandas().rename(columns=mapping)
                if extras and self.contract.policy == RESCUE:
                    frame = rescue_extras(frame, extras)
                frame.insert(0, "source_row", range(result.rows_read + 1,
                                                    result.rows_read + len(frame) + 1))
                result.rows_read += len(frame)
                rejects.append(self._route(frame, path.name, key, number, work, result))
        except pa.ArrowInvalid as exc:
            raise FileRejected(f"{path.name}: cannot parse as CSV: {exc}") from exc
        if invalid:
            rejects.append(self._malformed(invalid, path.name))
            result.rows_read += len(invalid)
            result.rejects_by_reason[MALFORMED_ROW] += len(invalid)
        if result.rows_read == 0:
            raise FileRejected(f"{path.name}: header only, no data rows")
        landed_rejects = pd.concat([r for r in rejects if len(r)] or [pd.DataFrame()])
        if len(landed_rejects):
            write_plain_table(work / LANDING_REJECTS / f"{key}.parquet",
                              pa.Table.from_pandas(landed_rejects, preserve_index=False))

    def _route(self, frame: pd.DataFrame, name: str, key: str, number: int, work: Path,
               result: LandingResult) -> pd.DataFrame:
        sale_ts, reasons = route_timestamps(frame[TIMESTAMP], self.rules, self.now)
        frame["sale_ts"] = sale_ts
        frame["source_file"] = name
        ok = reasons.isna().to_numpy()
        landed = frame[ok]
        days = landed["sale_ts"].to_numpy().astype("datetime64[D]")  # not strftime: 30x faster
        for day_value, rows in landed.groupby(days, sort=True):
            day = str(np.datetime64(day_value, "D"))
            table = pa.Table.from_pandas(rows, preserve_index=False)
            write_sealed_table(work / LANDED / day / f"{key}-{number:05d}{SEALED_SUFFIX}", table,
                               self.keyring.active)
            result.rows_by_day[day] += len(rows)
        bad = frame[~ok].assign(reason=reasons[~ok])
        result.rejects_by_reason.update(bad["reason"].value_counts().to_dict())
        return self.protect(bad)

    def protect(self, rejects: pd.DataFrame) -> pd.DataFrame:
        """Rejected rows keep their raw values, with identifiers as tokens."""
        return protect_identifiers(rejects, self.tokenizer, self.contract.sensitive)

    def _malformed(self, invalid: list[dict], name: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "source_row": [r["number"] for r in invalid],
                "source_file": name,
                "reason": MALFORMED_ROW,
                "detail": [r["detail"] for r in invalid],
                "raw_text": self.tokenizer.encrypt_series(pd.Series([r["text"] for r in invalid])),
            }
        )

    def _publish(self, name: str, key: str, work: Path) -> None:
        """Move the new fragments into place and drop those of older versions of this name."""
        prefix = f"{safe_name(name)}__"
        for pattern in (f"{LANDED}/*/{prefix}*", f"{LANDING_REJECTS}/{prefix}*"):
            for old in self.areas.staging.glob(pattern):
                if same_file_name(old.name, name):
                    old.unlink()
        for fragment in sorted(work.rglob("*")):
            if fragment.is_file():
                target = self.areas.staging / fragment.relative_to(work)
                target.parent.mkdir(parents=True, exist_ok=True)
                fragment.replace(target)


def rescue_extras(frame: pd.DataFrame, extras: list[str]) -> pd.DataFrame:
    """Unknown columns packed into one JSON text column (rescue policy): kept, never dropped."""
    packed = frame[extras].to_dict("records")
    out = frame.drop(columns=extras)
    out[EXTRAS_COLUMN] = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in packed]
    return out


def same_file_name(stored: str, name: str) -> bool:
    """Whether a stored fragment/record name (``<safe name>__<sha12>...``) belongs to ``name``."""
    return stored.rsplit("__", 1)[0] == safe_name(name)


def landing_rejects_of(areas: DataAreas, name: str, sha256: str) -> pd.DataFrame | None:
    path = areas.staging / LANDING_REJECTS / f"{file_key(name, sha256)}.parquet"
    return pd.read_parquet(path) if path.exists() else None
