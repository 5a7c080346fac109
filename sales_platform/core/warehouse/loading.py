"""Idempotent, atomic loading of one sales partition.

A day with no rows in ``sales`` yet (the common case: a new day) is written straight into
``sales`` (SQLite: ``INSERT ... SELECT`` from the load's scratch file, which ADBC filled from the
Arrow batches before the transaction, see ``sqlite_scratch.py``; PostgreSQL ``COPY``) under the
load lock, in a savepoint: when a row turns out to collide with another day (primary key) or a
cross-day reject, the savepoint is rolled back and the day takes the general path below, so the
outcome is the same either way.

The general path fills a temporary staging table with the fastest safe bulk path per dialect
(SQLite ``INSERT ... SELECT`` from the scratch file, PostgreSQL ``COPY``, SQL Server
``fast_executemany``); then, in the same transaction, one statement inserts new rows and updates
only rows whose content changed, and rows of that day that are no longer in any file are deleted.
Readers see the partition before or after, never half of it. Columns that appeared in the source
files (schema evolution) load into nullable text columns, added to ``sales`` first when missing.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from queue import Empty, Full, Queue
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Table,
    UnicodeText,
    and_,
    case,
    delete,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy import exc as sa_exc

from sales_platform.core.limits import NUL_REPLACEMENT, storable_text
from sales_platform.core.warehouse.conflicts import CrossDayConflicts
from sales_platform.core.warehouse.locks import claim_snapshot, newest_snapshot, take_lock
from sales_platform.core.warehouse.sqlite_scratch import SqliteScratch
from sales_platform.core.warehouse.tables import SALES_CONTENT_COLUMNS, sales

BASE_STAGE_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "sale_date",
                      "sale_ts", "source_file", "source_sha256", "source_row")
LINEAGE_COLUMNS = ("source_file", "source_sha256", "source_row")
# columns of the encrypted layer that are not source data columns of their own
LAYER_COLUMNS = frozenset({"transaction_id", "customer_id", "product_id", "quantity", "sale_ts",
                           "source_file", "source_row", "source_sha256"})
SALES_LOAD_LOCK = "sales_load"
STAGE_COLUMNS = BASE_STAGE_COLUMNS
INTEGER_STAGE_COLUMNS = frozenset({"quantity", "source_row"})
MSSQL_MAX_PARAMETERS = 2100
PG_MERGE_WORK_MEM = "256MB"  # per sort/hash of the merge transaction (set_config, local)
# PostgreSQL compiles a plan's expressions (JIT) when its estimated cost is high, and a day's
# statements over a large stage are estimated that high, so compiling costs more than running
# them. Off for the load's transaction only (a server without JIT, before PostgreSQL 11, has no
# such setting).
PG_NO_JIT = "SELECT set_config('jit', 'off', true) WHERE current_setting('jit', true) IS NOT NULL"
DIRECT_DIALECTS = frozenset({"sqlite", "postgresql"})  # a fresh day is written straight into sales
BatchSource = Callable[[], Iterable[pd.DataFrame | pa.Table]]
Item = TypeVar("Item")


@dataclass
class LoadStats:
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    relinked: int = 0  # same content, now credited to another file version / row
    conflicts_rejected: int = 0  # staged rows whose transaction id is also on another day
    conflicts_evicted: int = 0  # rows of other days moved out of sales for the same reason
    columns_added: list[str] = field(default_factory=list)
    days_to_reload: list[str] = field(default_factory=list)
    days_evicted_from: list[str] = field(default_factory=list)  # other days this load changed
    stale: bool = False  # not applied: built from older landed rows than the day already has

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def staging_table(dialect_name: str, extras: Sequence[str] = ()) -> Table:
    return _staging_table(dialect_name, tuple(extras))


def sales_with(extras: Sequence[str]) -> Table:
    """The sales table as this load sees it: the declared columns plus the source's new ones."""
    return _sales_with(tuple(extras))


# One Table object per layout for the process, not per load: building one costs ~7 ms, and
# SQLAlchemy's statement cache is keyed on the Table, so a fresh one recompiled every statement of
# every day's load. The objects are never changed after they are built.
@lru_cache(maxsize=64)
def _staging_table(dialect_name: str, extras: tuple[str, ...]) -> Table:
    name = "#stg_sales" if dialect_name == "mssql" else "stg_sales"
    prefixes = [] if dialect_name == "mssql" else ["TEMPORARY"]
    return Table(
        name,
        MetaData(),
        # the same types as sales (sized from the limits, core/limits.py)
        *(Column(c, sales.c[c].type, primary_key=sales.c[c].primary_key,
                 nullable=sales.c[c].nullable) for c in BASE_STAGE_COLUMNS),
        *(Column(name, UnicodeText, nullable=True) for name in extras),
        prefixes=prefixes,
    )


@lru_cache(maxsize=64)
def _sales_with(extras: tuple[str, ...]) -> Table:
    declared = {c.name for c in sales.columns}
    table = sales.to_metadata(MetaData())  # a copy: new columns never touch the declared table
    for name in extras:
        if name not in declared:
            table.append_column(Column(name, UnicodeText, nullable=True))
    return table


def add_column_ddl(dialect: Dialect, table: str, column: str) -> str:
    """ALTER TABLE ... ADD a nullable text column; both identifiers quoted by the dialect."""
    quote = dialect.identifier_preparer.quote_identifier  # always quoted, quotes escaped
    if dialect.name == "mssql":
        name = column.replace("'", "''")  # a string literal here, not an identifier
        return (f"IF COL_LENGTH('{table}', '{name}') IS NULL "
                f"ALTER TABLE {quote(table)} ADD {quote(column)} NVARCHAR(MAX) NULL")
    type_ = UnicodeText().compile(dialect=dialect)
    if_missing = "IF NOT EXISTS " if dialect.name == "postgresql" else ""
    return f"ALTER TABLE {quote(table)} ADD COLUMN {if_missing}{quote(column)} {type_}"


def existing_columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def _text_dates_arrow(frame: pd.DataFrame | pa.Table) -> tuple[pa.Array, pa.Array]:
    """sale_date and sale_ts as text (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS``: SQLite's and COPY's
    format). Arrow's cast writes exactly this, ten times faster than its strftime."""
    if isinstance(frame, pa.Table):
        ts = frame.column("sale_ts")
        if ts.type.tz is not None:  # the UTC instant, written without an offset
            ts = ts.cast(pa.timestamp(ts.type.unit))
        ts = pc.floor_temporal(ts, unit="second").cast(pa.timestamp("s"))
    else:
        # the array's own floor: a cached .dt accessor would keep the batch alive in a cycle
        ts = pa.array(frame["sale_ts"].array.floor("s").to_numpy(dtype="datetime64[s]"))
    return ts.cast(pa.date32()).cast(pa.string()), ts.cast(pa.string())


def _text_dates(frame: pd.DataFrame) -> tuple[list, list]:
    dates, stamps = _text_dates_arrow(frame)
    return (dates.to_numpy(zero_copy_only=False).tolist(),
            stamps.to_numpy(zero_copy_only=False).tolist())


def _column_values(frame: pd.DataFrame, name: str) -> list:
    if name not in frame:  # a file without a later-added column loads NULLs for it
        return [None] * len(frame)
    values = frame[name]
    if values.dtype == object and not values.isna().any():
        return values.tolist()
    return values.astype(object).where(values.notna(), None).tolist()


def _source_rows(frame: pd.DataFrame) -> list:
    if "source_row" not in frame:
        return [None] * len(frame)
    values = frame["source_row"]
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():  # ints at C speed
        return values.astype("int64").tolist()
    return [None if pd.isna(v) else int(v) for v in values.tolist()]


def rows_for_driver(frame: pd.DataFrame, dialect_name: str, extras: Sequence[str] = (),
                    loaded_at: object = None) -> list[tuple]:
    """Rows as tuples the driver's bulk path accepts (text dates for SQLite and COPY); with
    ``loaded_at`` (the direct write into sales) a last column holding it on every row."""
    if dialect_name == "mssql":
        ts = frame["sale_ts"].dt.floor("s")
        dates, stamps = ts.dt.date.tolist(), [t.to_pydatetime() for t in ts]
    else:
        dates, stamps = _text_dates(frame)
    columns = [frame["transaction_id"].tolist(), frame["customer_id"].tolist(),
               frame["product_id"].tolist(), frame["quantity"].astype("int64").tolist(), dates, stamps,
               frame["source_file"].tolist(), _column_values(frame, "source_sha256"),
               _source_rows(frame),
               *([storable_text(v) for v in _column_values(frame, name)] for name in extras)]
    if loaded_at is not None:
        columns.append([loaded_at] * len(frame))
    return list(zip(*columns, strict=True))


def extra_columns(names: Iterable[str]) -> list[str]:
    """The source's own columns among a layer's (schema evolution): loaded as nullable text."""
    return [name for name in names if name not in LAYER_COLUMNS]


def _arrow_column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if name not in table.column_names:  # a file without a later-added column loads NULLs for it
        return pa.nulls(table.num_rows, type_)
    return table.column(name).cast(type_)


def _storable(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A source column's text as every backend stores it: NUL (which PostgreSQL text refuses)
    replaced the same way everywhere (core/limits.py). Ids, tokens and names never hold one."""
    return pc.replace_substring(column, "\x00", NUL_REPLACEMENT)


def copy_table(frame: pd.DataFrame | pa.Table, extras: Sequence[str] = (),
               loaded_at: datetime | None = None) -> pa.Table:
    """The rows in the staging table's columns and text formats (dates as text); with
    ``loaded_at`` (the direct write into sales) a last column holding it. An Arrow batch, as
    read from the encrypted layer, is converted column by column without Python objects."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    dates, stamps = _text_dates_arrow(table)
    derived = {"sale_date": dates, "sale_ts": stamps}
    # the staging table's own column order (the COPY names the same list)
    columns = {name: derived[name] if name in derived else _arrow_column(
                   table, name, pa.int64() if name in INTEGER_STAGE_COLUMNS else pa.string())
               for name in BASE_STAGE_COLUMNS}
    columns.update({name: _storable(_arrow_column(table, name, pa.string())) for name in extras})
    if loaded_at is not None:
        columns["loaded_at"] = pa.repeat(pa.scalar(loaded_at.isoformat(sep=" ")), table.num_rows)
    return pa.table(columns)


def _csv_bytes(table: pa.Table) -> bytes:
    """The rows as CSV for PostgreSQL's COPY (one buffer per batch, written by Arrow)."""
    sink = pa.BufferOutputStream()
    # strings always quoted: an empty string stays '' while a missing value (unquoted) is NULL
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue().to_pybytes()


COPY_CSV = "(FORMAT csv)"
FORMATTED_HERE = frozenset({"sale_date", "sale_ts", "loaded_at"})  # digits, '-', ':', '.', ' ' only
COPY_TEXT = "(FORMAT text, NULL '')"
_TEXT_UNSAFE = r'[\\\t\n\r"]'  # escapes in COPY's text format; a quote stops Arrow's unquoted writer


def copy_payload(frame: pd.DataFrame | pa.Table, extras: Sequence[str] = (),
                 loaded_at: datetime | None = None) -> tuple[str, bytes]:
    """(COPY options, bytes) of one batch. PostgreSQL's text format when no value of the batch
    needs an escape there and none is an empty string (so an empty field can only be NULL): the
    server parses it faster than CSV (a 1M-row day into ``sales``: 2.7-2.9 s as CSV, 2.3 s as
    text). Any other batch goes as CSV, whose quoting keeps every value."""
    table = copy_table(frame, extras, loaded_at)
    if not _text_safe(table):
        return COPY_CSV, _csv_bytes(table)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, delimiter="\t",
                                                    quoting_style="none"))
    return COPY_TEXT, sink.getvalue().to_pybytes()


def _text_safe(table: pa.Table) -> bool:
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in FORMATTED_HERE or not (pa.types.is_string(column.type)
                                          or pa.types.is_large_string(column.type)):
            continue
        if pc.any(pc.match_substring_regex(column, _TEXT_UNSAFE)).as_py() or \
                pc.any(pc.equal(pc.utf8_length(column), 0)).as_py():
            return False
    return True


def batch_rows_for_parameter_limit(columns: int, limit: int = MSSQL_MAX_PARAMETERS) -> int:
    """Rows per multi-row VALUES statement that keep under SQL Server's parameter limit."""
    return max(1, (limit - 1) // columns)


_DONE = object()


def prefetched(batches: Iterable[Item], depth: int = 1) -> Iterator[Item]:
    """``batches`` read ahead by one thread (at most ``depth`` waiting): reading and decoding the
    next batch overlaps the database write of this one, which releases the GIL while SQLite or
    PostgreSQL works. Same batches, same order; an error in the reader is raised here."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for frame in batches:
                while not stop.is_set():
                    try:
                        queue.put(frame, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            queue.put(exc)

    reader = threading.Thread(target=read, name="sales-load-prefetch", daemon=True)
    reader.start()
    try:
        while (item := queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue, then let it end
            try:
                queue.get_nowait()
            except Empty:
                pass
            reader.join(timeout=0.05)


class SalesLoader:
    """Loads one day of encrypted sales into the ``sales`` table."""

    def __init__(self, engine: Engine, extras: Sequence[str] = ()) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.extras = list(extras)
        self.stage = staging_table(self.dialect, self.extras)
        self.target = sales_with(self.extras)

    @property
    def content_columns(self) -> list[str]:
        return [*SALES_CONTENT_COLUMNS, *self.extras]

    def load_day(self, day: date, batches: Iterable[pd.DataFrame | pa.Table] | BatchSource,
                 loaded_at: datetime, after: Callable[[Connection, LoadStats], None] | None = None,
                 conflicts_before: Iterable[str] = (),
                 snapshot_ns: int | None = None) -> LoadStats:
        """Stage the day's rows, then under the sales load lock: settle transaction ids that are
        also on other days, upsert, delete vanished rows, and run ``after`` (ledger bookkeeping),
        all in one transaction.

        ``batches`` may be a callable that returns a fresh iterable on each call: then a day with
        no rows in ``sales`` is written there directly (read a second time only when it falls
        back to the staging path)."""
        if self.dialect == "sqlite":  # rows in a scratch file first, outside the transaction
            with ExitStack() as stack:
                scratch = stack.enter_context(self._scratch_from(batches, stack))
                conn = stack.enter_context(self.engine.connect())
                stack.enter_context(scratch.attached(conn))
                stack.enter_context(conn.begin())
                return self._load(conn, day, batches, loaded_at, after, conflicts_before,
                                  snapshot_ns, scratch)
        with self.engine.begin() as conn:
            return self._load(conn, day, batches, loaded_at, after, conflicts_before, snapshot_ns)

    def _scratch_from(self, batches: Iterable[pd.DataFrame | pa.Table] | BatchSource,
                      stack: ExitStack) -> SqliteScratch:
        """The day's rows in a scratch file, read and converted ahead by the prefetch thread
        (closed with ``stack``: a failed scratch write stops that thread too)."""
        source = batches() if callable(batches) else batches
        tables = (copy_table(f, self.extras) for f in self._batches(source))
        return SqliteScratch(stack.enter_context(closing(prefetched(tables))))

    def _load(self, conn: Connection, day: date, batches, loaded_at: datetime,
              after: Callable[[Connection, LoadStats], None] | None,
              conflicts_before: Iterable[str], snapshot_ns: int | None,
              scratch: SqliteScratch | None = None) -> LoadStats:
        stats = LoadStats()
        direct = callable(batches) and self.dialect in DIRECT_DIALECTS
        if self.dialect == "postgresql":
            conn.execute(text(PG_NO_JIT))
        stats.columns_added = self._ensure_columns(conn)
        if direct:
            # the lock first: rows written straight into sales must not race another day's
            # load deciding its cross-day conflicts
            if not self._lock_and_claim(conn, day, snapshot_ns, stats):
                return stats
            if self._load_fresh_day(conn, day, batches, loaded_at, conflicts_before, stats,
                                    scratch):
                if after is not None:
                    after(conn, stats)
                return stats
            batches = batches() if scratch is None else ()
        self._prepare(conn)
        stats.staged = self._write_rows(conn, batches, None, scratch)
        if self.dialect == "postgresql":  # a temp table has no statistics: plan the joins well
            conn.execute(text("ANALYZE stg_sales"))
            # the merge hashes a day of rows: in memory instead of 32 batches spilled to disk
            # (1M-row reload's merge statement 3.3 -> 2.6 s); this transaction only
            conn.execute(text("SELECT set_config('work_mem', :size, true) WHERE "
                              "pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(:size)"),
                         {"size": PG_MERGE_WORK_MEM})  # raised, never lowered
        if not direct and not self._lock_and_claim(conn, day, snapshot_ns, stats):
            conn.execute(self.stage.delete())
            return stats
        conflicts = CrossDayConflicts(self.stage, self.target, day, conflicts_before)
        stats.conflicts_rejected, stats.conflicts_evicted = conflicts.settle(conn, loaded_at)
        stats.days_evicted_from = conflicts.evicted_days
        if self.dialect == "postgresql":  # one join decides and counts; only changed rows written
            present, updated, relinked, on_day, day_rows, written = conn.execute(
                self.merge_counting_statement(day, loaded_at)).one()
            self._apply_counts(stats, present, updated, relinked)
            if written != stats.inserted + stats.updated + stats.relinked:  # never commit a guess
                raise RuntimeError(f"{day}: the merge wrote {written} rows but counted "
                                   f"{stats.inserted} new, {stats.updated} changed and "
                                   f"{stats.relinked} relinked; the load is rolled back")
        else:
            day_rows = conn.execute(select(self._day_rows(day))).scalar_one()
            present, updated, relinked, on_day = conn.execute(self._matches(day)).one()
            self._apply_counts(stats, present, updated, relinked)
            if stats.inserted or stats.updated or stats.relinked:
                conn.execute(self.upsert_statement(loaded_at))
        # the day's rows before the upsert that are not staged: known without an anti-join, so
        # a reload that removes nothing never runs the DELETE
        vanished = int(day_rows or 0) - int(on_day or 0)
        if vanished:  # the upsert left the day's rows outside the stage as they were
            if self.dialect == "mssql":  # a server whose user options set NOCOUNT reports -1
                conn.execute(text("SET NOCOUNT OFF"))
            stats.deleted = conn.execute(self.delete_vanished_statement(day)).rowcount
            if stats.deleted != vanished:
                raise RuntimeError(f"{day}: {stats.deleted} vanished rows deleted, {vanished} "
                                   "counted; the load is rolled back")
        stats.days_to_reload = conflicts.days_no_longer_in_conflict(conn)
        self._empty_stage(conn)
        if after is not None:
            after(conn, stats)
        return stats

    def _write_rows(self, conn: Connection, batches: Iterable[pd.DataFrame | pa.Table],
                    loaded_at: datetime | None, scratch: SqliteScratch | None) -> int:
        """The load's rows into sales (with ``loaded_at``) or into the staging table: from the
        scratch file (SQLite), else batch by batch through the driver's bulk path with the next
        batch formatted while this one is written. Returns the rows written."""
        if scratch is not None:
            table = self.target.name if loaded_at else self.stage.name
            stamp = self._loaded_at_param(loaded_at) if loaded_at else None
            return scratch.insert_into(conn, table, scratch.columns, stamp)
        raw = conn.connection.dbapi_connection
        written = 0
        for rows, payload in prefetched(self._payloads(batches, loaded_at)):
            self._bulk_insert(raw, payload, loaded_at)
            written += rows
        return written

    @staticmethod
    def _lock_and_claim(conn: Connection, day: date, snapshot_ns: int | None,
                        stats: LoadStats) -> bool:
        """Take the sales load lock and claim the day's snapshot; False (stats.stale) when a run
        that read newer landed rows got here first."""
        take_lock(conn, SALES_LOAD_LOCK)  # one load decides cross-day conflicts at a time
        if snapshot_ns is not None and (newest_snapshot(conn, day) > snapshot_ns or not
                                        claim_snapshot(conn, day, "loaded_ns", snapshot_ns)):
            stats.stale = True
            return False
        return True

    def _load_fresh_day(self, conn: Connection, day: date, batches: BatchSource,
                        loaded_at: datetime, conflicts_before: Iterable[str],
                        stats: LoadStats, scratch: SqliteScratch | None = None) -> bool:
        """A day with no rows in ``sales``: its rows go straight into ``sales`` (no staging table,
        no merge). False, with nothing changed, when the day has rows or one of its ids is on
        another day (the staging path then decides, exactly as for any load)."""
        t = self.target
        if conn.execute(select(t.c.transaction_id).where(t.c.sale_date == day).limit(1)).first():
            return False
        savepoint = conn.begin_nested()
        try:
            written = self._write_rows(conn, () if scratch else batches(), loaded_at, scratch)
        except (sa_exc.IntegrityError, self.engine.dialect.dbapi.IntegrityError):
            savepoint.rollback()  # an id already in sales (another day): the general path
            return False
        conflicts = CrossDayConflicts(self.stage, self.target, day, conflicts_before)
        conflicts.reset(conn)
        if conflicts.day_rows_in_conflict(conn):
            savepoint.rollback()  # a copy rejected on another day: the general path settles it
            return False
        savepoint.commit()
        stats.staged = stats.inserted = written
        stats.days_to_reload = conflicts.days_no_longer_in_conflict(conn)
        return True

    def _empty_stage(self, conn: Connection) -> None:
        if self.dialect == "postgresql":  # no per-row work, no dead tuples left in the temp table
            conn.execute(text("TRUNCATE stg_sales"))
        else:
            conn.execute(self.stage.delete())

    def _ensure_columns(self, conn: Connection) -> list[str]:
        missing = [c for c in self.extras if c not in existing_columns(conn, "sales")]
        for column in missing:
            conn.execute(text(add_column_ddl(conn.dialect, "sales", column)))
        return missing

    def _prepare(self, conn: Connection) -> None:
        if self.dialect == "mssql":
            conn.execute(text("IF OBJECT_ID('tempdb..#stg_sales') IS NOT NULL DROP TABLE #stg_sales"))
        else:
            # a pooled connection may hold the staging table of a load with other columns
            conn.execute(text("DROP TABLE IF EXISTS stg_sales"))
        self.stage.create(conn)

    @staticmethod
    def _batches(batches: Iterable[pd.DataFrame | pa.Table]) -> Iterator[pd.DataFrame | pa.Table]:
        """The day's non-empty batches, as every write path takes them."""
        return (frame for frame in batches if len(frame))

    def _payloads(self, batches: Iterable[pd.DataFrame | pa.Table],
                  loaded_at: datetime | None) -> Iterator[tuple[int, object]]:
        """(rows, what the driver's bulk path takes) per non-empty batch: CSV bytes for
        PostgreSQL's COPY, Python rows otherwise. Run by the prefetch thread, so formatting the
        next batch overlaps the database's write of this one."""
        stamp = self._loaded_at_param(loaded_at) if loaded_at else None
        for frame in self._batches(batches):
            if self.dialect == "postgresql":
                yield len(frame), copy_payload(frame, self.extras, loaded_at)
                continue
            if isinstance(frame, pa.Table):  # Python rows are built fastest from pandas
                frame = frame.to_pandas()
            yield len(frame), rows_for_driver(frame, self.dialect, self.extras, stamp)

    def _bulk_insert(self, raw, payload: object, loaded_at: datetime | None) -> None:
        """One prepared batch into the staging table, or straight into sales (with ``loaded_at``)."""
        names = [*BASE_STAGE_COLUMNS, *self.extras, *(["loaded_at"] if loaded_at else [])]
        table = self.target.name if loaded_at else self.stage.name
        quote = self.engine.dialect.identifier_preparer.quote_identifier
        columns = ", ".join(quote(c) for c in names)
        cursor = raw.cursor()
        try:
            if self.dialect == "postgresql":
                options, data = payload
                sql = f"COPY {quote(table)} ({columns}) FROM STDIN WITH {options}"
                if hasattr(cursor, "copy"):  # psycopg 3
                    with cursor.copy(sql) as copy:
                        copy.write(data)
                else:  # psycopg2
                    cursor.copy_expert(sql, io.BytesIO(data))
            else:
                marks = ", ".join(["?"] * len(names))
                if self.dialect == "mssql":
                    cursor.fast_executemany = True
                cursor.executemany(f"INSERT INTO {quote(table)} ({columns}) VALUES ({marks})", payload)
        finally:
            cursor.close()

    def _loaded_at_param(self, loaded_at: datetime) -> object:
        """loaded_at as SQLAlchemy itself would bind it (SQLite stores DateTime as text)."""
        dialect = self.engine.dialect
        process = DateTime().dialect_impl(dialect).bind_processor(dialect)
        return process(loaded_at) if process else loaded_at

    def _changed(self):
        t, s = self.target, self.stage
        return or_(*(t.c[c].is_distinct_from(s.c[c]) for c in self.content_columns))

    def _relinked(self):
        t, s = self.target, self.stage
        return or_(*(t.c[c].is_distinct_from(s.c[c]) for c in LINEAGE_COLUMNS))

    def _day_rows(self, day: date):
        t = self.target
        return select(func.count()).select_from(t).where(t.c.sale_date == day).scalar_subquery()

    def _matches(self, day: date):
        """(staged rows already in sales, of them changed, of them only relinked, of them on
        ``day``): one join for the counts (a join per count of a 1M-row stage costs seconds). The
        flags are computed in a derived table and summed outside it: SQL Server refuses a
        subquery inside an aggregate, and its IS DISTINCT FROM is one."""
        s, t = self.stage, self.target
        changed = self._changed()
        flags = select(case((changed, 1), else_=0).label("_changed"),
                       case((and_(~changed, self._relinked()), 1), else_=0).label("_relinked"),
                       case((t.c.sale_date == day, 1), else_=0).label("_on_day"),
                       ).select_from(s.join(t, t.c.transaction_id == s.c.transaction_id)).subquery()
        return select(func.count(), func.sum(flags.c._changed), func.sum(flags.c._relinked),
                      func.sum(flags.c._on_day)).select_from(flags)

    @staticmethod
    def _apply_counts(stats: LoadStats, present: int | None, updated: int | None,
                      relinked: int | None) -> None:
        stats.updated, stats.relinked = int(updated or 0), int(relinked or 0)
        stats.staged -= stats.conflicts_rejected
        stats.inserted = stats.staged - int(present or 0)
        stats.unchanged = int(present or 0) - stats.updated - stats.relinked

    def merge_counting_statement(self, day: date, loaded_at: datetime):
        """PostgreSQL: the counts of ``_matches`` and the upsert in one statement. The stage is
        joined to sales once (a CTE read twice is computed once); only new, changed and relinked
        rows reach the INSERT ... ON CONFLICT, instead of a probe and a comparison per staged row.
        Every part sees sales as it was before the statement, as the separate count did."""
        from sqlalchemy.dialects.postgresql import insert

        s, t = self.stage, self.target
        staged = [*BASE_STAGE_COLUMNS, *self.extras]
        present = t.c.transaction_id.is_not(None)
        changed = self._changed()
        # flag labels start with "_": a source column (always [a-z][a-z0-9_]*) cannot take one
        flags = select(*(s.c[c] for c in staged), present.label("_sp_present"),
                       and_(present, t.c.sale_date == day).label("_sp_on_day"),
                       and_(present, changed).label("_sp_changed"),
                       and_(present, ~changed, self._relinked()).label("_sp_relinked")
                       ).select_from(s.outerjoin(t, t.c.transaction_id == s.c.transaction_id))
        # PostgreSQL stores a CTE that is read twice: only the rows to write keep their columns
        # there (the others are NULLs, a bit each), instead of ~200 bytes for every staged row.
        # OFFSET 0 keeps the flags computed once per row, not once per column's CASE.
        flagged = flags.offset(0).subquery("sp_flags")
        write_row = or_(~flagged.c._sp_present, flagged.c._sp_changed, flagged.c._sp_relinked)
        src = select(*(flagged.c[c] for c in ("_sp_present", "_sp_on_day", "_sp_changed",
                                              "_sp_relinked")),
                     write_row.label("_sp_write"),
                     *(case((write_row, flagged.c[c])).label(c) for c in staged)).cte("sp_source")
        write = insert(t).from_select(
            [*staged, "loaded_at"],
            select(*(src.c[c] for c in staged), literal(loaded_at, DateTime).label("loaded_at"))
            .where(src.c._sp_write))
        write = write.on_conflict_do_update(
            index_elements=[t.c.transaction_id],
            set_={c: write.excluded[c] for c in [*self.content_columns, *LINEAGE_COLUMNS,
                                                 "loaded_at"]},
        ).returning(t.c.transaction_id).cte("sp_written")
        return select(func.count().filter(src.c._sp_present), func.count().filter(src.c._sp_changed),
                      func.count().filter(src.c._sp_relinked), func.count().filter(src.c._sp_on_day),
                      self._day_rows(day),
                      select(func.count()).select_from(write).scalar_subquery()).select_from(src)

    def _vanished(self, day: date):
        s, t = self.stage, self.target
        return and_(t.c.sale_date == day,
                    ~exists().where(s.c.transaction_id == t.c.transaction_id))

    def delete_vanished_statement(self, day: date):
        return delete(self.target).where(self._vanished(day))

    def upsert_statement(self, loaded_at: datetime):
        """INSERT new rows and UPDATE only changed rows, in one statement per dialect."""
        s, t = self.stage, self.target
        staged = [*BASE_STAGE_COLUMNS, *self.extras]
        source = select(*(s.c[c] for c in staged), literal(loaded_at, DateTime).label("loaded_at"))
        if self.dialect in ("sqlite", "postgresql"):
            if self.dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(t).from_select([*staged, "loaded_at"], source.where(true()))
            updated = [*self.content_columns, *LINEAGE_COLUMNS, "loaded_at"]
            compared = [*self.content_columns, *LINEAGE_COLUMNS]
            return stmt.on_conflict_do_update(
                index_elements=[t.c.transaction_id],
                set_={c: stmt.excluded[c] for c in updated},
                where=or_(*(t.c[c].is_distinct_from(stmt.excluded[c]) for c in compared)),
            )
        if self.dialect == "mssql":
            return mssql_merge_statement(loaded_at, self.extras)
        raise NotImplementedError(f"no upsert for dialect {self.dialect}")


def mssql_merge_statement(loaded_at: datetime, extras: Sequence[str] = ()):
    """One MERGE from #stg_sales (HOLDLOCK: no race between the match and the insert)."""
    from sqlalchemy.dialects import mssql

    quote = mssql.dialect().identifier_preparer.quote_identifier
    content = [*SALES_CONTENT_COLUMNS, *extras, *LINEAGE_COLUMNS]
    differs = " OR ".join(
        f"(t.{quote(c)} <> s.{quote(c)} OR (t.{quote(c)} IS NULL AND s.{quote(c)} IS NOT NULL) "
        f"OR (t.{quote(c)} IS NOT NULL AND s.{quote(c)} IS NULL))"
        for c in content
    )
    updates = ", ".join(f"t.{quote(c)} = s.{quote(c)}" for c in content)
    staged = [*BASE_STAGE_COLUMNS, *extras]
    cols = ", ".join(quote(c) for c in [*staged, "loaded_at"])
    values = ", ".join(f"s.{quote(c)}" for c in staged)
    return text(
        "MERGE INTO [sales] WITH (HOLDLOCK) AS t USING [#stg_sales] AS s "
        "ON t.[transaction_id] = s.[transaction_id] "
        f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {updates}, t.[loaded_at] = :loaded_at "
        f"WHEN NOT MATCHED BY TARGET THEN INSERT ({cols}) VALUES ({values}, :loaded_at);"
    ).bindparams(loaded_at=loaded_at)
