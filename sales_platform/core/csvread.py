"""Reading a dropped CSV file in bounded chunks, with a row number for every record.

The fast path is Arrow's streaming reader with ``newlines_in_values=True`` (a quoted newline is
part of its value wherever it falls, block boundaries included). Arrow cannot say where a
malformed record sat among the good ones, nor read a record larger than its block; when it meets
either, the file is read again by the exact path (Python's ``csv`` module, record by record), so
every record keeps its ordinal: ``source_row`` is the 1-based number of the data record after the
header, blank lines not counted, malformed records counted.

Both paths read the same layout (``Columns``): the file's columns by their contract names, then any
empty-named trailing columns (a delimiter at the end of every line), whose values must be blank.
A record that is another header row (an export appended to another, ``HeaderRows``) starts a
section read with its own column order; it is not a data record. The fast path only notices one
(and any value in a trailing column) and hands the file to the exact path, which reads sections.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sales_platform.core.frames import arrow_frame, text_series
from sales_platform.core.schema import TIMESTAMP

# Arrow's streaming reader reads blocks ahead of the consumer on its I/O threads, a number of
# blocks, so the block size sets how much input it holds: with 16 MiB blocks, 276 MB of Arrow
# memory was in use at the 5th of a 5M-row file's 20 chunks; with 4 MiB, 166 MB. The blocks are
# joined into chunks of about FAST_CHUNK_ROWS rows, so the number of landed fragments stays.
BLOCK_SIZE = 4 << 20  # also the largest record the fast path reads
FAST_CHUNK_ROWS = 250_000
FAST_CHUNK_BYTES = 64 << 20  # decoded Arrow bytes: wide rows make smaller chunks
MAX_ROW_CHARS = 1 << 20  # a longer record is rejected as a row (row_too_large), not the file
EXACT_CHUNK_ROWS = 100_000


class NeedsExactRead(Exception):
    """The fast path met a record it cannot place (malformed or larger than a block)."""


@dataclass
class Malformed:
    source_row: int
    detail: str
    text: str
    reason: str = "malformed_row"


@dataclass
class ReadState:
    rows_read: int = 0
    malformed: list[Malformed] = field(default_factory=list)


@dataclass(frozen=True)
class Columns:
    """A section's layout: its columns' contract names in file order, then ``trailing`` columns
    with an empty name, whose values must be blank (a record may also leave them out)."""

    names: list[str]
    trailing: int = 0

    @property
    def width(self) -> int:
        return len(self.names) + self.trailing

    def misfit(self, fields: list[str]) -> str | None:
        """Why a record does not fit this layout, or None."""
        if len(fields) == len(self.names):
            return None
        if len(fields) == self.width and not any(f.strip() for f in fields[len(self.names):]):
            return None
        if len(fields) == self.width:
            return f"a value in an unnamed column (after column {len(self.names)})"
        return f"expected {len(self.names)} columns, got {len(fields)}"


class HeaderRows(Protocol):
    """Which records are header rows, and the layout each starts (core/landing.py)."""

    def is_header(self, fields: list[str]) -> bool: ...

    def section(self, fields: list[str], line: int) -> Columns: ...


def _maybe_header(fields: list[str], columns: Columns) -> bool:
    """Cheap pre-test: a header row's timestamp cell is a column name, never a digit first (the
    full test runs only on such records and on records of another width)."""
    if len(fields) not in (len(columns.names), columns.width):
        return True
    cell = fields[columns.names.index(TIMESTAMP)]
    return not (cell[:1].isdigit() or cell.lstrip()[:1].isdigit())


def _frame(columns: dict[str, list[str]], rows: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({k: text_series(v) for k, v in columns.items()})
    frame.insert(0, "source_row", rows)
    return frame


def fast_batches(path: Path, header: list[str], state: ReadState, columns: Columns,
                 headers: HeaderRows, skip_lines: int = 0) -> Iterator[pd.DataFrame]:
    """Arrow's reader; raises NeedsExactRead at the first malformed or oversized record, header
    row inside the file or value in an unnamed trailing column. ``header`` is the header row as
    written; ``skip_lines`` physical lines before it (an Excel ``sep=,`` line) are skipped."""

    seen_invalid: list[int] = []

    def invalid(_row: pacsv.InvalidRow) -> str:
        seen_invalid.append(1)  # raising here would surface as a parse error: flag and skip
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True, encoding="utf8",
                                       skip_rows=skip_lines),
        parse_options=pacsv.ParseOptions(invalid_row_handler=invalid, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                             strings_can_be_null=False),
    )
    try:
        for batches in _chunks(reader, seen_invalid):
            table = pa.Table.from_batches(batches)
            _check_layout(table, columns, headers)
            frame = arrow_frame(table.select(range(len(columns.names))))
            frame.columns = columns.names
            frame.insert(0, "source_row", range(state.rows_read + 1, state.rows_read + len(frame) + 1))
            state.rows_read += len(frame)
            yield frame
    except pa.ArrowInvalid as exc:
        if "straddling" in str(exc) or "exceeds" in str(exc) or "block" in str(exc).lower():
            raise NeedsExactRead(str(exc)) from exc
        raise


def _check_layout(table: pa.Table, columns: Columns, headers: HeaderRows) -> None:
    """NeedsExactRead when a trailing column holds a value or a record is another header row."""
    for column in table.columns[len(columns.names):]:
        if pc.any(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)).as_py():
            raise NeedsExactRead("a value in an unnamed trailing column")
    stamp = table.column(columns.names.index(TIMESTAMP))
    suspects = pc.invert(pc.fill_null(pc.utf8_is_digit(pc.utf8_slice_codeunits(stamp, 0, 1)), False))
    if not pc.any(suspects).as_py():
        return
    rows = table.filter(suspects)
    cells = [column.to_pylist() for column in rows.columns]  # by position: names may repeat
    for i in range(rows.num_rows):
        if headers.is_header([values[i] for values in cells]):
            raise NeedsExactRead("a header row inside the file")


def _chunks(reader: pacsv.CSVStreamingReader, seen_invalid: list[int]) -> Iterator[list[pa.RecordBatch]]:
    """The reader's batches joined into chunks of about FAST_CHUNK_ROWS rows (or FAST_CHUNK_BYTES),
    each batch checked before it joins one."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in reader:
        if seen_invalid:
            raise NeedsExactRead("malformed record")
        if _longest_record(batch) > MAX_ROW_CHARS:
            raise NeedsExactRead("record over the row size limit")
        pending.append(batch)
        rows, size = rows + batch.num_rows, size + batch.nbytes
        if rows >= FAST_CHUNK_ROWS or size >= FAST_CHUNK_BYTES:
            yield pending
            pending, rows, size = [], 0, 0
    if seen_invalid:  # the handler may have seen a record after the last full chunk
        raise NeedsExactRead("malformed record")
    if pending:
        yield pending


def _longest_record(batch: pa.RecordBatch) -> int:
    """Characters of the longest record in the batch (sum over its fields)."""
    if not batch.num_rows:
        return 0
    total = None
    for column in batch.columns:
        lengths = pc.utf8_length(column)
        total = lengths if total is None else pc.add(total, lengths)
    return int(pc.max(total).as_py() or 0)


def _record_text(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def exact_batches(path: Path, header: list[str], state: ReadState, columns: Columns,
                  headers: HeaderRows, preamble: int = 0,
                  max_row_chars: int | None = None) -> Iterator[pd.DataFrame]:
    """Python's csv module, record by record: malformed and oversized records become rows of
    ``state.malformed`` with their own source_row; good records are yielded in chunks. A header
    row inside the file switches the layout for the records after it. ``preamble`` non-blank
    records before the header (an Excel ``sep=,`` line) are skipped."""
    max_row_chars = MAX_ROW_CHARS if max_row_chars is None else max_row_chars
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # size is judged per record below, not per field
    layout = columns
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for _ in range(preamble + 1):  # the header: the first non-blank record after those
                next((r for r in reader if r), None)
            values: dict[str, list[str]] = {h: [] for h in columns.names}
            rows: list[int] = []
            for fields in reader:
                if fields and _maybe_header(fields, layout) and headers.is_header(fields):
                    layout = headers.section(fields, reader.line_num)
                    continue  # another export's header row: not a data record
                if not fields:
                    continue  # blank line
                state.rows_read += 1
                size = sum(len(f) for f in fields)
                misfit = layout.misfit(fields)
                if size > max_row_chars:
                    state.malformed.append(Malformed(
                        state.rows_read, f"record of {size} characters is over the limit of "
                        f"{max_row_chars}", _record_text(fields)[:200], "row_too_large"))
                elif misfit:
                    state.malformed.append(Malformed(state.rows_read, misfit, _record_text(fields)))
                else:
                    for name, value in zip(layout.names, fields, strict=False):
                        values[name].append(value)
                    rows.append(state.rows_read)
                if len(rows) >= EXACT_CHUNK_ROWS:
                    yield _frame(values, rows)
                    values, rows = {h: [] for h in columns.names}, []
            if rows:
                yield _frame(values, rows)
    finally:
        csv.field_size_limit(limit)
