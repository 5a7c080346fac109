"""One measured path, run in its own process by run_benchmark.py / scaling.py (not meant to be run
by hand, though it can be: ``python benchmarks/worker.py platform --csv F --catalogue C
--workdir W --db-url sqlite:///W/x.db --out result.json``).

The child times only its own work (imports and untimed preparation excluded) and writes a JSON
result to ``--out``; the parent measures peak RSS and wall time from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

# the frozen copy of the code under test when the parent made one, else the work tree
sys.path.insert(0, os.environ.get("BENCH_CODE_ROOT") or str(Path(__file__).resolve().parent.parent))

CSV_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp")


def _maxrss_mb() -> float:
    """Peak RSS of this process since exec: VmHWM of /proc/self/status.

    Not ru_maxrss: on Linux exec folds the pre-exec address space (the parent's, copied at fork)
    into ru_maxrss, so a child of a big parent would report at least the parent's RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


class Stages:
    """Wall time, current RSS and peak RSS after each named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rss_after_mb: dict[str, float] = {}
        self.peak_after_mb: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.rss_after_mb[name] = round(_rss_mb(), 1)
            self.peak_after_mb[name] = round(_maxrss_mb(), 1)

    def as_dict(self) -> dict:
        return {"stage_seconds": self.seconds, "rss_after_stage_mb": self.rss_after_mb,
                "peak_rss_after_stage_mb": self.peak_after_mb}


def _read_strings(csv: Path):
    """The CSV as a pyarrow table of strings (what every 'already parsed' path starts from)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in CSV_COLUMNS}, strings_can_be_null=False))


def _first_per_key(table):
    """Rows with the first occurrence of each transaction_id (so a primary key accepts them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = table.column("transaction_id")
    indices = pa.table({"k": keys, "i": pa.array(range(len(keys)), pa.int64())}) \
        .group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min")
    return table.take(pc.take(indices, pc.sort_indices(indices)))


def _tuples(table) -> list[tuple]:
    return list(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


# --- the platform --------------------------------------------------------------------------------

def run_platform(csv: Path, catalogue: Path, workdir: Path, db_url: str, day: date,
                 breakdown: bool = True) -> dict:
    """Intake -> clean_day -> encrypt_day -> SalesLoader.load_day -> refresh_daily, per stage."""
    from sales_platform.core.crypto import Keyring, Tokenizer, generate_key
    from sales_platform.core.intake import Intake
    from sales_platform.core.pipeline import (
        ENCRYPTED,
        REJECTS,
        clean_day,
        encrypt_day,
        iter_arrow_layer,
        iter_parquet_layer,
    )
    from sales_platform.core.products import read_catalogue, with_tokens
    from sales_platform.core.quality import QualityRules
    from sales_platform.core.schema import SchemaContract
    from sales_platform.core.store import DataAreas
    from sales_platform.core.warehouse import loading
    from sales_platform.core.warehouse.aggregates import refresh_daily
    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.products_dim import known_product_ids, upsert_products
    from sales_platform.core.warehouse.rejects import replace_day_rejects

    areas = DataAreas(workdir / "data")
    areas.ensure()
    target = areas.incoming / csv.name
    try:
        os.link(csv, target)  # Intake removes the drop after landing; a hard link keeps the source
    except OSError:
        import shutil

        shutil.copy(csv, target)
    stages = Stages()
    with stages.stage("setup (engine, tables)"):
        engine = make_engine(db_url)
    keyring = Keyring.from_secrets(generate_key())
    rules = QualityRules()
    now = datetime.now()
    load_parts: dict[str, float] = defaultdict(float)
    if breakdown:
        _instrument_loader(loading, load_parts)

    with stages.stage("products (dim_products)"):
        upsert_products(engine, with_tokens(read_catalogue(catalogue), Tokenizer(keyring)))
    with stages.stage("land"):
        outcomes = Intake(areas, engine, keyring, SchemaContract(), rules, "bench", now,
                          settle_s=0).run()  # just written: no settle wait
    with stages.stage("clean"):
        known = known_product_ids(engine, Tokenizer(keyring))
        cleaning = clean_day(areas, keyring, day.isoformat(), rules, known)
    with stages.stage("encrypt"):
        encryption = encrypt_day(areas, keyring, day.isoformat())
    with stages.stage("load"):
        def batches():  # a factory, as the sales asset passes: a fresh day goes straight in
            layer = iter_arrow_layer(areas, ENCRYPTED, day.isoformat())  # as the sales asset reads it
            return _timed_iter(layer, load_parts, "read encrypted parquet (prefetch thread)") \
                if breakdown else layer
        stats = loading.SalesLoader(engine).load_day(day, batches, now)
    with stages.stage("aggregate"):
        refresh_daily(engine, [day], now)
    with stages.stage("rejects table (sales_rejects asset)"):
        rejects_written = replace_day_rejects(engine, day, iter_parquet_layer(areas, REJECTS,
                                                                              day.isoformat()), now)
    rows_in = sum(o.rows_read for o in outcomes)
    e2e = sum(stages.seconds[s] for s in ("land", "clean", "encrypt", "load", "aggregate"))
    if breakdown:
        load_parts["upsert + delete + commit (remainder)"] = stages.seconds["load"] - sum(
            v for k, v in load_parts.items() if "thread" not in k)  # threads overlap the rest
    load_parts = dict(load_parts)  # the reload below is timed as its own stage

    def changed():  # the same day again with every 10th row's quantity changed: the merge path
        # Arrow batches, as the sales asset passes them (pandas frames here added their own
        # conversion to the reload's time: 0.8-1.5 s per 1M rows that the platform never spends)
        for table in iter_arrow_layer(areas, ENCRYPTED, day.isoformat()):
            yield _every_tenth_quantity_plus_one(table)
    with stages.stage("reload, 10% of rows changed (merge path)"):
        reload = loading.SalesLoader(engine).load_day(day, changed, now)
    engine.dispose()
    return {
        "reload_stats": reload.as_dict(),
        "rows": rows_in, "rows_in": rows_in, "rows_stored": stats.inserted + stats.updated,
        "seconds": e2e, **stages.as_dict(), "load_breakdown_seconds": dict(load_parts),
        "load_stats": stats.as_dict(), "rows_clean": cleaning.rows_clean,
        "rows_rejected_cleaning": cleaning.rows_rejected,
        "rows_rejected_landing": sum(o.rows_rejected for o in outcomes),
        "rejects_written": rejects_written, "encrypted_rows": encryption.rows,
        "fragments_landed": len(areas.fragments("landed", day.isoformat())),
        "note": "seconds = land+clean+encrypt+load+aggregate; products/rejects/setup excluded",
    }


def _every_tenth_quantity_plus_one(table):
    """``table`` with the quantity of rows 0, 10, 20, ... raised by one (same type)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    index = table.column_names.index("quantity")
    quantity = table.column(index)
    hit = pa.array(np.arange(table.num_rows) % 10 == 0)
    raised = pc.if_else(hit, pc.add(quantity, pa.scalar(1, quantity.type)), quantity)
    return table.set_column(index, "quantity", raised.cast(quantity.type))


def _instrument_loader(loading, parts: dict[str, float]) -> None:
    """Time the pieces of SalesLoader.load_day in this process only (wraps, no source change)."""

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - started
        return wrapper

    # formatting runs in the prefetch thread, overlapped with the insert: timed there, not added
    loading.rows_for_driver = timed("rows_for_driver (frame -> tuples, prefetch thread)",
                                    loading.rows_for_driver)
    loading.copy_payload = timed("copy_payload (batch -> COPY text/CSV, prefetch thread)",
                                 loading.copy_payload)
    loading.SalesLoader._bulk_insert = timed("insert (executemany / COPY)",
                                             loading.SalesLoader._bulk_insert)
    loading.SalesLoader._prepare = timed("prepare staging table", loading.SalesLoader._prepare)
    scratch = loading.SqliteScratch  # SQLite: ADBC fills the scratch file, one INSERT ... SELECT
    scratch.__init__ = timed("scratch file by ADBC (SQLite, before the transaction)", scratch.__init__)
    scratch.insert_into = timed("INSERT ... SELECT from the scratch file (SQLite)",
                                scratch.insert_into)


def _timed_iter(iterator, parts: dict[str, float], name: str):
    iterator = iter(iterator)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            parts[name] += time.perf_counter() - started
            return
        parts[name] += time.perf_counter() - started
        yield item


# --- naive pandas --------------------------------------------------------------------------------

def run_pandas(csv: Path, db_url: str) -> dict:
    import pandas as pd
    from sqlalchemy import create_engine, func, select, table

    stages = Stages()
    with stages.stage("read_csv"):
        df = pd.read_csv(csv)
    with stages.stage("to_datetime"):
        df["timestamp"] = pd.to_datetime(df["timestamp"], errors="coerce")
    engine = create_engine(db_url)
    with stages.stage("to_sql"):
        df.to_sql("sales", engine, if_exists="append", index=False)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(table("sales"))).scalar_one()
    engine.dispose()
    return {"rows": len(df), "rows_in": len(df), "rows_stored": stored,
            "seconds": sum(stages.seconds.values()), **stages.as_dict(),
            "note": "pd.read_csv + pd.to_datetime(errors='coerce') + to_sql(default method, "
                    "chunksize=None); no validation, no dedupe, no encryption, no primary key"}


# --- raw ceilings --------------------------------------------------------------------------------

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")  # as the platform's engine


def run_sqlite_executemany(csv: Path, db_path: Path) -> dict:
    import sqlite3

    rows = _tuples(_first_per_key(_read_strings(csv)))  # parsed before the clock starts
    con = sqlite3.connect(db_path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        con.execute(pragma)
    con.execute("CREATE TABLE sales (transaction_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
                "product_id TEXT NOT NULL, quantity INTEGER, timestamp TEXT)")
    started = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    seconds = time.perf_counter() - started
    stored = con.execute("SELECT count(*) FROM sales").fetchone()[0]
    con.close()
    return {"rows": len(rows), "rows_stored": stored, "seconds": seconds,
            "note": "CSV rows (first copy per transaction_id), pre-parsed; only executemany+commit "
                    "timed; 5 text columns, TEXT PRIMARY KEY, WAL + synchronous=NORMAL"}


def _stage_columns() -> tuple[str, ...]:
    """The loader's staging columns (the name moved between versions of loading.py)."""
    from sales_platform.core.warehouse import loading

    return tuple(getattr(loading, "BASE_STAGE_COLUMNS", None) or loading.STAGE_COLUMNS)


def _encrypted_rows(platform_data: Path, day: date, dialect: str) -> list[tuple]:
    """The exact tuples the platform's loader hands the driver, plus a loaded_at value."""
    import pandas as pd
    import pyarrow.parquet as pq

    from sales_platform.core.warehouse.loading import rows_for_driver

    folder = platform_data / "staging" / "encrypted" / day.isoformat()
    frames = [pq.read_table(p).to_pandas() for p in sorted(folder.glob("*.parquet"))]
    if not frames:
        raise SystemExit(f"no encrypted layer under {folder}: run the platform path first")
    loaded_at = datetime.now().isoformat(sep=" ", timespec="seconds")
    return [(*row, loaded_at) for row in rows_for_driver(pd.concat(frames), dialect)]


def run_sqlite_sales_shaped(platform_data: Path, db_path: Path, day: date) -> dict:
    """Ceiling for the load stage: executemany of the same token rows straight into ``sales``."""
    import sqlite3

    from sales_platform.core.warehouse.engine import make_engine

    stage_columns = _stage_columns()
    rows = _encrypted_rows(platform_data, day, "sqlite")
    make_engine(f"sqlite:///{db_path}").dispose()  # the real sales schema (PK + sale_date index)
    con = sqlite3.connect(db_path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        con.execute(pragma)
    columns = ", ".join([*stage_columns, "loaded_at"])
    marks = ", ".join("?" * (len(stage_columns) + 1))
    started = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    con.executemany(f"INSERT INTO sales ({columns}) VALUES ({marks})", rows)
    con.execute("COMMIT")
    seconds = time.perf_counter() - started
    stored = con.execute("SELECT count(*) FROM sales").fetchone()[0]
    con.close()
    return {"rows": len(rows), "rows_stored": stored, "seconds": seconds,
            "note": "the platform's encrypted rows (token ids, text dates) as rows_for_driver makes "
                    "them; only executemany into the real sales table (PK + index) timed"}


def _pg_conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.host or "127.0.0.1", "port": u.port or 5432, "dbname": u.database,
             "user": u.username or "postgres"}
    if u.password:
        parts["password"] = u.password
    return " ".join(f"{k}={v}" for k, v in parts.items())


PG_CSV_TABLE = ("CREATE TABLE sales (transaction_id text PRIMARY KEY, customer_id text NOT NULL, "
                "product_id text NOT NULL, quantity text, timestamp text)")


def run_pg_copy(csv: Path, db_url: str, mode: str) -> dict:
    """COPY of the CSV rows: ``rows`` = copy.write_row per tuple; ``csvbytes`` = pyarrow CSV blocks."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = _first_per_key(_read_strings(csv))
    rows = _tuples(table) if mode == "rows" else None
    with psycopg.connect(_pg_conninfo(db_url)) as conn:
        conn.execute(PG_CSV_TABLE)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            if mode == "rows":
                with cur.copy(f"COPY sales ({', '.join(CSV_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                with cur.copy(f"COPY sales ({', '.join(CSV_COLUMNS)}) FROM STDIN "
                              "(FORMAT csv)") as copy:
                    for batch in table.to_batches(max_chunksize=100_000):
                        sink = pa.BufferOutputStream()
                        pacsv.write_csv(pa.Table.from_batches([batch]), sink,
                                        pacsv.WriteOptions(include_header=False))
                        copy.write(sink.getvalue())
        conn.commit()
        seconds = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
    what = ("copy.write_row per tuple (pre-built tuples)" if mode == "rows"
            else "pyarrow CSV-encodes 100k-row batches, copy.write(bytes); encoding is timed")
    return {"rows": table.num_rows, "rows_stored": stored, "seconds": seconds,
            "note": f"CSV rows (first copy per transaction_id) into a 5-column table with PK; {what}"}


def run_pg_sales_shaped(platform_data: Path, db_url: str, day: date) -> dict:
    """Ceiling for the PostgreSQL load stage: COPY write_row of the same token rows into ``sales``."""
    import psycopg

    from sales_platform.core.warehouse.engine import make_engine

    stage_columns = _stage_columns()
    rows = _encrypted_rows(platform_data, day, "postgresql")
    make_engine(db_url).dispose()
    columns = ", ".join([*stage_columns, "loaded_at"])
    with psycopg.connect(_pg_conninfo(db_url)) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY sales ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
    return {"rows": len(rows), "rows_stored": stored, "seconds": seconds,
            "note": "the platform's encrypted rows as rows_for_driver makes them; only COPY "
                    "write_row into the real sales table timed"}


def run_duckdb(csv: Path, db_path: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db_path))
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE sales AS SELECT transaction_id, customer_id, product_id, "
        "TRY_CAST(quantity AS BIGINT) AS quantity, "
        "try_strptime(\"timestamp\", '%Y-%m-%dT%H:%M:%S') AS sale_ts "
        "FROM read_csv(?, header = true, all_varchar = true)", [str(csv)])
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    stored = con.execute("SELECT count(*) FROM sales").fetchone()[0]
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.close()
    return {"rows": stored, "rows_in": stored, "rows_stored": stored, "seconds": seconds,
            "note": f"read_csv(all_varchar) + TRY_CAST quantity + try_strptime timestamp into a "
                    f"table (TRY_CAST on the timestamp is pushed into the reader as a strict "
                    f"cast by duckdb 2.0 and fails on bad values), "
                    f"{threads} threads; no validation/dedupe/encryption/PK"}


def run_dlt(csv: Path, workdir: Path, destination: str) -> dict:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_DATA_DIR", str(workdir / "dlt_data"))
    import dlt
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def batches():
        reader = pacsv.open_csv(csv, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in CSV_COLUMNS}, strings_can_be_null=False))
        for batch in reader:
            yield pa.Table.from_batches([batch])

    resource_ = dlt.resource(batches, name="sales", write_disposition="merge",
                             primary_key="transaction_id")
    if destination == "sqlalchemy":
        db_path = workdir / "dlt.db"
        dest = dlt.destinations.sqlalchemy(credentials=f"sqlite:///{db_path}")
    else:
        db_path = workdir / "dlt.duckdb"
        dest = dlt.destinations.duckdb(str(db_path))
    pipeline = dlt.pipeline(pipeline_name="bench_sales", destination=dest, dataset_name="bench",
                            pipelines_dir=str(workdir / "dlt_pipelines"))
    stages = Stages()
    with stages.stage("extract"):
        pipeline.extract(resource_)
    with stages.stage("normalize"):
        pipeline.normalize()
    with stages.stage("load"):
        info = pipeline.load()
    info.raise_on_failed_jobs()
    with pipeline.sql_client() as client:
        stored = client.execute_sql("SELECT count(*) FROM sales")[0][0]
    rows_in = sum(1 for _ in open(csv, "rb")) - 1
    return {"rows": rows_in, "rows_in": rows_in, "rows_stored": stored,
            "seconds": sum(stages.seconds.values()), **stages.as_dict(),
            "destination": destination,
            "note": f"dlt {dlt.__version__} {destination} destination, arrow batches, "
                    f"write_disposition=merge, primary_key=transaction_id (delete-insert)"}


# --- the floor ----------------------------------------------------------------------------------

def run_floor(csv: Path, catalogue: Path, db_url: str, day: date) -> dict:
    """benchmarks/floor.py into the warehouse schema, created as the platform path creates it
    (make_engine's migrations, untimed, as the platform's "setup (engine, tables)" stage)."""
    from floor import load_day

    from sales_platform.core.warehouse.engine import make_engine

    make_engine(db_url).dispose()
    result = load_day(csv, catalogue, db_url, day)
    return {**result, "rows_in": result["rows"],
            "note": "pyarrow.csv read, Arrow compute rules, duplicates by group_by, AES-SIV of "
                    "distinct ids, one transaction into the indexed sales table (SQLite: ADBC "
                    "adbc_ingest; PostgreSQL: COPY of Arrow CSV); rejects counted, not stored; "
                    "seconds = reading the CSV to the commit"}


# --- entry ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", choices=["platform", "pandas", "sqlite-executemany",
                                         "sqlite-sales-shaped", "pg-copy-rows", "pg-copy-csvbytes",
                                         "pg-sales-shaped", "duckdb", "dlt", "floor"])
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--catalogue", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--day", default="2024-03-01")
    parser.add_argument("--platform-data", type=Path, help="data dir of a finished platform run")
    parser.add_argument("--dlt-destination", default="sqlalchemy", choices=["sqlalchemy", "duckdb"])
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    day = date.fromisoformat(args.day)
    if args.path == "platform":
        result = run_platform(args.csv, args.catalogue, args.workdir, args.db_url, day,
                              breakdown=not args.no_breakdown)
    elif args.path == "pandas":
        result = run_pandas(args.csv, args.db_url)
    elif args.path == "sqlite-executemany":
        result = run_sqlite_executemany(args.csv, args.workdir / "raw.db")
    elif args.path == "sqlite-sales-shaped":
        result = run_sqlite_sales_shaped(args.platform_data, args.workdir / "raw_sales.db", day)
    elif args.path == "pg-copy-rows":
        result = run_pg_copy(args.csv, args.db_url, "rows")
    elif args.path == "pg-copy-csvbytes":
        result = run_pg_copy(args.csv, args.db_url, "csvbytes")
    elif args.path == "pg-sales-shaped":
        result = run_pg_sales_shaped(args.platform_data, args.db_url, day)
    elif args.path == "floor":
        result = run_floor(args.csv, args.catalogue, args.db_url, day)
    elif args.path == "duckdb":
        result = run_duckdb(args.csv, args.workdir / "bench.duckdb")
    else:
        result = run_dlt(args.csv, args.workdir, args.dlt_destination)
    result["vmhwm_mb"] = round(_maxrss_mb(), 1)
    args.out.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
