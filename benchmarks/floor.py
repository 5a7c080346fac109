"""The floor: the leanest honest code for the platform's day, written apart from its pipeline.

One day of one CSV into the real indexed ``sales`` table: ``pyarrow.csv`` (every column as text),
the documented row rules (docs/pipeline.md) in Arrow compute, AES-SIV tokens of the distinct ids,
one transaction (SQLite: ADBC ``adbc_ingest``; PostgreSQL: ``COPY`` of Arrow-written CSV). Rejects
are **counted per reason, not stored row by row**: no ``sales_rejects``, ledger, sealed layers,
archive copy, checks or aggregates. ``worker.py floor`` creates the schema and runs it.

Mirrored: ids trimmed, upper-cased (NFC around it when not ASCII), non-empty, at most 64 characters,
no control / format / private-use / separator character; quantity a whole number (signs, decimals,
exponents read) in 1..1000 (``QualityRules``' default); timestamp ``YYYY-MM-DD[T ]hh:mm[:ss[.f]]``
with optional ``Z`` / ``±hh[[:]mm]``, impossible dates (02-30) invalid, naive = UTC, stored as
whole UTC seconds, at most 1 h ahead, not before 2024-01-01; sale day = the partition day (rows of
other days are counted as ``other_day``, not rejected); product in the catalogue; within the day
identical copies of an id collapse to the first, differing copies are all rejected; ids already in
``sales`` on another day are rejected; the day's rows are replaced (a re-run is idempotent).

Not mirrored: Python's full case mapping (Arrow upper-cases ``ß`` to ``ẞ``, Python to ``SS``);
``SALES_PLATFORM_SOURCE_TIMEZONE``; header aliases, ``sep=`` lines, repeated headers and extra
columns (ignored); ``source_row`` after a malformed record (skipped and counted; the platform
numbers it); on a cross-day clash the platform also takes the other day's row out of ``sales`` and
sees ids of landed files not loaded yet: the floor keeps that row and sees only ``sales``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp")
MAX_QUANTITY, START, AHEAD = 1000, datetime(2024, 1, 1), timedelta(hours=1)
KEY = bytes(range(64))  # a fixed AES-SIV key: a benchmark, not a deployment
TIMESTAMP = (r"^(?P<dt>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.\d{1,9})?"
             r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?$")
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
FRACTION = r"^[+-]?\d*\.\d*[1-9]\d*$"  # on the text: a float rounds 1.0000000000000001 to 1
REFUSED = r"[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}]"
NO_TEXT = pa.scalar(None, pa.string())


def _ids(column):
    text = pc.utf8_trim_whitespace(column)
    if pc.all(pc.string_is_ascii(text)).as_py():
        return pc.utf8_upper(text)
    return pc.utf8_normalize(pc.utf8_upper(pc.utf8_normalize(text, "NFC")), "NFC")


def _utc(text):
    """Naive UTC timestamp[s], null where not a valid timestamp. strptime rolls 02-30 over to
    03-01 and takes one-digit fields: only values that format back to their own text are kept."""
    fast = pc.strptime(text, "%Y-%m-%dT%H:%M:%S", "s", error_is_null=True)  # nearly every row
    ok = pc.fill_null(pc.equal(pc.utf8_replace_slice(fast.cast(pa.string()), 10, 11, "T"), text),
                      False)
    parts = pc.extract_regex(pc.if_else(ok, NO_TEXT, text), TIMESTAMP)  # the other shapes
    local = pc.replace_substring(pc.struct_field(parts, "dt"), "T", " ")
    local = pc.if_else(pc.equal(pc.utf8_length(local), 16),
                       pc.binary_join_element_wise(local, ":00", ""), local)
    parsed = pc.strptime(local, "%Y-%m-%d %H:%M:%S", "s", error_is_null=True)
    parsed = pc.if_else(pc.equal(parsed.cast(pa.string()), local), parsed, None)
    zone = pc.utf8_rpad(pc.replace_substring(pc.utf8_slice_codeunits(
        pc.struct_field(parts, "zone"), 1), ":", ""), 4, "0")  # Z -> 0000, -05 -> 0500
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 0, 2), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(zone, 2, 4), pa.int64())
    offset = pc.multiply(pc.add(pc.multiply(hours, 60), minutes), 60)
    offset = pc.if_else(pc.starts_with(pc.struct_field(parts, "zone"), "-"), pc.negate(offset), offset)
    parsed = pc.if_else(pc.and_(pc.less(hours, 24), pc.less(minutes, 60)), parsed, None)
    return pc.coalesce(pc.if_else(ok, fast, None),
                       pc.subtract(parsed, offset.cast(pa.duration("s"))))


def apply_rules(table: pa.Table, day: date, known, now: datetime, reasons: Counter) -> pa.Table:
    """The rows of ``day`` that pass every rule, first failing rule counted per row."""
    alive = pc.is_valid(table["transaction_id"])  # all true: the reader makes no nulls

    def reject(reason: str, failed) -> None:
        nonlocal alive
        hit = pc.and_(alive, pc.fill_null(failed, False))
        if count := pc.sum(hit).as_py():
            reasons[reason] += count
            alive = pc.and_(alive, pc.invert(hit))

    stamp = pc.utf8_trim_whitespace(table["timestamp"])
    utc = _utc(stamp)
    reject("missing_timestamp", pc.equal(pc.utf8_length(stamp), 0))
    reject("invalid_timestamp", pc.is_null(utc))
    reject("future_timestamp", pc.greater(utc, pa.scalar(now + AHEAD, pa.timestamp("s"))))
    reject("before_start_date", pc.less(utc, pa.scalar(START, pa.timestamp("s"))))
    reject("other_day", pc.not_equal(utc.cast(pa.date32()), pa.scalar(day)))
    ids = {c: _ids(table[c]) for c in COLUMNS[:3]}
    for column, values in ids.items():
        reject(f"missing_{column}", pc.equal(pc.utf8_length(values), 0))
    for values in ids.values():
        reject("invalid_identifier", pc.greater(pc.utf8_length(values), 64))
        if not pc.all(pc.ascii_is_printable(values)).as_py():
            reject("invalid_identifier", pc.match_substring_regex(values, REFUSED))
    text = pc.utf8_trim_whitespace(table["quantity"])
    number = pc.cast(pc.if_else(pc.match_substring_regex(text, NUMBER), text, NO_TEXT), pa.float64())
    reject("missing_quantity", pc.equal(pc.utf8_length(text), 0))
    reject("quantity_not_numeric", pc.is_null(number))
    reject("quantity_not_integer", pc.or_(pc.not_equal(pc.floor(number), number),
                                          pc.match_substring_regex(text, FRACTION)))
    reject("quantity_not_positive", pc.less_equal(number, 0))
    reject("quantity_outlier", pc.greater(number, MAX_QUANTITY))
    if len(known):
        reject("unknown_product", pc.invert(pc.is_in(ids["product_id"], value_set=known)))
    rows = pa.table({**ids, "quantity": number.cast(pa.int64(), safe=False), "sale_ts": utc,
                     "source_row": np.arange(1, table.num_rows + 1)}).filter(alive)
    groups = rows.group_by("transaction_id", use_threads=False).aggregate(
        [("source_row", "min"), ("source_row", "count")])
    repeated = groups.filter(pc.greater(groups["source_row_count"], 1))
    if not repeated.num_rows:
        return rows
    copies = rows.filter(pc.is_in(rows["transaction_id"], value_set=repeated["transaction_id"]))
    versions = copies.group_by(["transaction_id", "customer_id", "product_id", "quantity", "sale_ts"],
                               use_threads=False).aggregate([]).group_by("transaction_id") \
        .aggregate([("customer_id", "count")])
    conflicting = pc.is_in(copies["transaction_id"], value_set=versions.filter(
        pc.greater(versions["customer_id_count"], 1))["transaction_id"])
    first = pc.is_in(copies["source_row"], value_set=repeated["source_row_min"])
    drop = copies.filter(pc.or_(conflicting, pc.invert(first)))["source_row"]
    reasons["duplicate_conflicting"] += pc.sum(conflicting).as_py() or 0
    reasons["duplicate_identical"] += len(drop) - (pc.sum(conflicting).as_py() or 0)
    return rows.filter(pc.invert(pc.is_in(rows["source_row"], value_set=drop)))


def _tokens(column, name: str):
    """AES-SIV (base64url) of each distinct value, put back by the dictionary's indices."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    siv, context = AESSIV(KEY), [name.encode()]
    tokens = [base64.urlsafe_b64encode(siv.encrypt(v.encode(), context)).rstrip(b"=").decode()
              for v in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(tokens, pa.string()), encoded.indices)


def _csv(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def _into_sqlite(path: str, rows: pa.Table, day: str) -> tuple[pa.Table, float, int]:
    import adbc_driver_sqlite.dbapi as adbc

    with adbc.connect(path, autocommit=True) as conn, conn.cursor() as cur:
        for pragma in ("synchronous=NORMAL", "cache_size=-65536"):  # as the platform's engine
            cur.execute(f"PRAGMA {pragma}")
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("DELETE FROM sales WHERE sale_date = ?", (day,))
        cur.execute("SELECT 1 FROM sales LIMIT 1")
        if cur.fetchone():  # other days are stored: ids already there are rejected
            cur.adbc_ingest("floor_ids", rows.select([0]), mode="create", temporary=True)
            cur.execute("SELECT transaction_id FROM temp.floor_ids JOIN sales USING (transaction_id)")
            rows = _without(rows, cur.fetch_arrow_table()[0])
        cur.adbc_ingest("sales", rows, mode="append")
        cur.execute("COMMIT")
        committed = time.perf_counter()
        cur.execute("SELECT count(*) FROM sales WHERE sale_date = ?", (day,))
        return rows, committed, cur.fetchone()[0]


def _into_postgres(url: str, rows: pa.Table, day: str) -> tuple[pa.Table, float, int]:
    import psycopg

    with psycopg.connect(re.sub(r"^postgresql\+\w+:", "postgresql:", url)) as conn, \
            conn.cursor() as cur:
        cur.execute("DELETE FROM sales WHERE sale_date = %s", (day,))
        if cur.execute("SELECT 1 FROM sales LIMIT 1").fetchone():
            cur.execute("CREATE TEMP TABLE floor_ids (transaction_id text) ON COMMIT DROP")
            with cur.copy("COPY floor_ids FROM STDIN (FORMAT csv)") as copy:
                copy.write(_csv(rows.select([0])))
            clash = cur.execute("SELECT transaction_id FROM floor_ids JOIN sales USING "
                                "(transaction_id)").fetchall()
            rows = _without(rows, pa.array([c for (c,) in clash], pa.string()))
        with cur.copy(f"COPY sales ({', '.join(rows.column_names)}) FROM STDIN (FORMAT csv)") as copy:
            for batch in rows.to_batches(max_chunksize=100_000):
                copy.write(_csv(pa.Table.from_batches([batch])))
        conn.commit()
        committed = time.perf_counter()
        return rows, committed, cur.execute("SELECT count(*) FROM sales WHERE sale_date = %s",
                                            (day,)).fetchone()[0]


def _without(rows: pa.Table, ids) -> pa.Table:
    return rows.filter(pc.invert(pc.is_in(rows[0], value_set=ids.cast(pa.string()))))


def load_day(csv: Path, catalogue: Path, db_url: str, day: date) -> dict:
    """Reading the CSV to the commit, timed by part; the warehouse schema must exist."""
    seconds, reasons, malformed = {}, Counter(), []
    started = clock = time.perf_counter()

    def lap(name: str, now: float | None = None) -> None:
        nonlocal clock
        now = now or time.perf_counter()
        seconds[name], clock = now - clock, now

    with open(csv, "rb") as handle:
        sha = hashlib.file_digest(handle, "sha256").hexdigest()
    table = pacsv.read_csv(csv, parse_options=pacsv.ParseOptions(
        invalid_row_handler=lambda row: malformed.append(row.text) or "skip"),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string()),
                                             include_columns=list(COLUMNS), strings_can_be_null=False))
    known = _ids(pacsv.read_csv(catalogue, convert_options=pacsv.ConvertOptions(
        column_types={"product_id": pa.string()}, include_columns=["product_id"]))["product_id"])
    lap("read")
    rows = apply_rules(table, day, known, datetime.now(UTC).replace(tzinfo=None), reasons)
    reasons["malformed_row"] += len(malformed)
    lap("rules")
    n = rows.num_rows

    def constant(value: str):
        return pa.repeat(pa.scalar(value), n)
    rows = pa.table({
        "transaction_id": rows["transaction_id"], "quantity": rows["quantity"],
        "customer_id": _tokens(rows["customer_id"], "customer_id"),
        "product_id": _tokens(rows["product_id"], "product_id"),
        "sale_date": rows["sale_ts"].cast(pa.date32()).cast(pa.string()),  # text, as the
        "sale_ts": rows["sale_ts"].cast(pa.string()),  # platform stores them (and COPY reads)
        "source_file": constant(csv.name), "source_sha256": constant(sha),
        "source_row": rows["source_row"],
        "loaded_at": constant(datetime.now().isoformat(sep=" ", timespec="microseconds"))})
    lap("tokens")
    into = _into_sqlite if db_url.startswith("sqlite") else _into_postgres
    kept, committed, stored = into(db_url.split("///", 1)[1] if into is _into_sqlite else db_url,
                                   rows, day.isoformat())
    lap("insert", committed)
    if n > kept.num_rows:
        reasons["duplicate_across_days"] += n - kept.num_rows
    assert stored == kept.num_rows, f"sales holds {stored:,} rows of {day}, {kept.num_rows:,} written"
    return {"rows": table.num_rows + len(malformed), "rows_stored": stored,
            "seconds": committed - started, "stage_seconds": seconds,
            "rows_other_days": reasons.pop("other_day", 0), "rejects_by_reason": dict(reasons)}
