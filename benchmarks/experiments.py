"""Micro-experiments behind the optimization proposals: each times the platform's current code
against a candidate replacement on the same 1M-row day, and checks the outputs are identical.
Nothing in sales_platform/ is changed: candidates live here, for measurement only.

    .venv/bin/python benchmarks/experiments.py [--rows 1000000] [--pg-url URL] [--only A,B,...]

A  rows_for_driver (pandas strftime/astype + itertuples) vs Arrow strftime + zip of columns
B  Tokenizer.encrypt_series per fragment (as encrypt_day/clean_day do) vs one memo per run
C  clean_rows with the identifier rules on pandas object strings vs on Arrow compute
D  landing's day split: dt.strftime('%Y-%m-%d') vs datetime64[D] keys
E  SalesLoader.load_day on SQLite: the engine's pragmas vs + cache_size 256 MB, temp_store MEMORY
F  PostgreSQL COPY into a text primary key: database collation vs COLLATE "C"
G  generator: where SalesGenerator._chunk spends its time (per line)
H  SalesLoader.load_day of a fresh day into an empty sales and into one holding two days:
   batches in file order (the platform) vs sorted by transaction id (candidate)
J  one pass per chunk for a fresh day on SQLite: clean -> tokenize -> insert, the insert of chunk
   N in a writer thread while chunk N+1 is cleaned (candidate) vs the platform's clean_day ->
   encrypt_day -> load_day; both from the same landed layer, same sales rows required
I  SalesLoader.load_day of a fresh day on SQLite: sales as a rowid table with a primary key
   index (the platform) vs WITHOUT ROWID (the table clustered on transaction_id)
K  the landed chunks through Arrow -> pandas -> clean_rows -> Arrow with text columns as NumPy
   object (before) vs Arrow-backed pd.ArrowDtype (the platform); identical cleaned rows required
L  the load's SQLite scratch file written by ADBC with SQLite's defaults (rollback journal,
   fsync at commit; before) vs journal and fsync off (the platform)
M  a fresh day into PostgreSQL's sales: the platform's load_day (COPY in text format, in the
   day's transaction) vs ADBC's binary COPY (adbc_driver_postgresql, adbc_ingest) of the same
   rows straight into sales, and vs ADBC into an unlogged scratch table followed by one
   INSERT ... SELECT into sales in a transaction (the shape the load could adopt, as on SQLite);
   same rows required (count and digest of sales)
Writes benchmarks/results/experiments-<rows>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    DEFAULT_DAY,
    RESULTS_DIR,
    ScratchPgDatabase,
    generate_day,
    machine_busy_pct,
    machine_facts,
    pg_reachable,
    remove_sqlite,
    remove_tree,
    scratch_dir,
    snapshot_code,
    write_json,
)


def best_of(fn, repeat: int = 3):
    """(best seconds, last result) over ``repeat`` calls (the shared machine adds noise)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


class Day:
    """One landed, cleaned and encrypted day (built once with the platform's own code)."""

    def __init__(self, work: Path, rows: int) -> None:
        from sales_platform.core.crypto import Keyring, Tokenizer, generate_key
        from sales_platform.core.intake import Intake
        from sales_platform.core.pipeline import clean_day, encrypt_day
        from sales_platform.core.products import read_catalogue, with_tokens
        from sales_platform.core.quality import QualityRules
        from sales_platform.core.schema import SchemaContract
        from sales_platform.core.store import DataAreas
        from sales_platform.core.warehouse.engine import make_engine
        from sales_platform.core.warehouse.products_dim import known_product_ids, upsert_products

        self.csv, catalogue, _ = generate_day(work / "input", rows)
        self.areas = DataAreas(work / "data")
        self.areas.ensure()
        import shutil

        shutil.copy(self.csv, self.areas.incoming / self.csv.name)
        self.engine = make_engine(f"sqlite:///{work / 'prep.db'}")
        self.keyring = Keyring.from_secrets(generate_key())
        self.rules = QualityRules()
        upsert_products(self.engine, with_tokens(read_catalogue(catalogue), Tokenizer(self.keyring)))
        self.known = known_product_ids(self.engine, Tokenizer(self.keyring))
        Intake(self.areas, self.engine, self.keyring, SchemaContract(), self.rules, "exp",
               settle_s=0).run()
        self.day = DEFAULT_DAY.isoformat()
        clean_day(self.areas, self.keyring, self.day, self.rules, self.known)
        encrypt_day(self.areas, self.keyring, self.day)

    def landed(self, types_mapper=None):
        from sales_platform.core.store import read_sealed_table

        return [read_sealed_table(p, self.keyring).to_pandas(types_mapper=types_mapper)
                for p in self.areas.fragments("landed", self.day)]

    def cleaned(self):
        from sales_platform.core.store import read_sealed_table

        return [read_sealed_table(p, self.keyring).to_pandas()
                for p in self.areas.fragments("cleaned", self.day)]

    def encrypted_batches(self):
        from sales_platform.core.pipeline import iter_parquet_layer

        return list(iter_parquet_layer(self.areas, "encrypted", self.day))


# --- A -------------------------------------------------------------------------------------------

def rows_for_driver_arrow(frame, columns: tuple[str, ...]) -> list[tuple]:
    """Candidate: the same tuples, with the date/time text made by Arrow's C++ strftime."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = pa.array(frame["sale_ts"].to_numpy(dtype="datetime64[s]"))
    text = {"sale_date": pc.strftime(ts, format="%Y-%m-%d").to_pylist(),
            "sale_ts": pc.strftime(ts, format="%Y-%m-%d %H:%M:%S").to_pylist()}
    cols = [text[c] if c in text else frame[c].to_numpy(dtype=object if c != "quantity"
                                                         else np.int64).tolist()
            for c in columns]
    return list(zip(*cols, strict=False))


def exp_a(day: Day) -> dict:
    from sales_platform.core.warehouse import loading

    columns = tuple(getattr(loading, "BASE_STAGE_COLUMNS", None) or loading.STAGE_COLUMNS)
    batches = day.encrypted_batches()
    cur_s, cur = best_of(lambda: [r for b in batches for r in loading.rows_for_driver(b, "sqlite")])
    new_s, new = best_of(lambda: [r for b in batches for r in rows_for_driver_arrow(b, columns)])
    return {"rows": len(cur), "current_s": cur_s, "candidate_s": new_s, "identical": cur == new,
            "speedup": cur_s / new_s}


# --- B -------------------------------------------------------------------------------------------

def exp_b(day: Day) -> dict:
    import numpy as np
    import pandas as pd

    from sales_platform.core.crypto import Tokenizer
    from sales_platform.core.pipeline import protect_identifiers

    frames = day.cleaned()
    rows = sum(len(f) for f in frames)

    class MemoTokenizer(Tokenizer):
        """Candidate: each distinct value encrypted once per run (a dict keyed by plaintext)."""

        def __init__(self, keyring) -> None:
            super().__init__(keyring)
            self.cache: dict[str, str] = {}

        def encrypt_series(self, values: pd.Series) -> pd.Series:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            cache, encrypt = self.cache, self.encrypt
            tokens = []
            for v in uniques:
                token = cache.get(v)
                if token is None:
                    token = cache[v] = encrypt(str(v))
                tokens.append(token)
            return pd.Series(np.array([*tokens, None], dtype=object)[codes], index=values.index,
                             dtype=object)

    calls = {"n": 0}

    class CountingTokenizer(Tokenizer):
        def encrypt(self, value: str) -> str:
            calls["n"] += 1
            return super().encrypt(value)

    def current():
        t = CountingTokenizer(day.keyring)
        calls["n"] = 0
        return [protect_identifiers(f, t) for f in frames]

    cur_s, cur = best_of(current)
    aes_calls = calls["n"]

    def candidate():
        t = MemoTokenizer(day.keyring)
        return [protect_identifiers(f, t) for f in frames]

    new_s, new = best_of(candidate)
    same = all(a.equals(b) for a, b in zip(cur, new, strict=True))
    distinct = len(set().union(*(set(f["customer_id"]) | set(f["product_id"]) for f in frames)))
    return {"rows": rows, "fragments": len(frames), "aes_siv_calls_current": aes_calls,
            "distinct_ids": distinct, "current_s": cur_s, "candidate_s": new_s,
            "per_1M_rows_current_s": cur_s * 1e6 / rows, "per_1M_rows_candidate_s": new_s * 1e6 / rows,
            "identical": same, "speedup": cur_s / new_s}


# --- C -------------------------------------------------------------------------------------------

def _arrow_string_rules():
    """Candidates for quality.normalize_identifiers / _invalid_identifier on Arrow compute."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def normalize_identifiers(values: pd.Series) -> pd.Series:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
        cleaned = pc.utf8_upper(pc.utf8_trim_whitespace(arr))
        cleaned = pc.if_else(pc.equal(pc.utf8_length(cleaned), 0), pa.scalar(None, pa.string()),
                             cleaned)
        return pd.Series(cleaned.to_numpy(zero_copy_only=False), index=values.index, dtype=object)

    def invalid_identifier(values: pd.Series) -> pd.Series:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
        bad = pc.or_(pc.greater(pc.utf8_length(arr), 64),
                     pc.match_substring_regex(arr, r"[\x00-\x1f\x7f]"))
        return pd.Series(pc.fill_null(bad, False).to_numpy(zero_copy_only=False),
                         index=values.index)

    return normalize_identifiers, invalid_identifier


def exp_c(day: Day) -> dict:
    from sales_platform.core import quality
    from sales_platform.core.dedupe import DuplicateScan

    plain = day.landed()
    rows = sum(len(f) for f in plain)
    cur_s, cur = best_of(lambda: [quality.clean_rows(f, day.rules, day.known) for f in plain])
    out = {"rows": rows, "fragments": len(plain), "clean_rows_one_pass_s": cur_s}
    original = quality.normalize_identifiers, quality._invalid_identifier
    quality.normalize_identifiers, quality._invalid_identifier = _arrow_string_rules()
    try:
        new_s, new = best_of(lambda: [quality.clean_rows(f, day.rules, day.known) for f in plain])
    finally:
        quality.normalize_identifiers, quality._invalid_identifier = original
    same = all(a.rows.astype(object).where(a.rows.notna(), None).equals(
                   b.rows.astype(object).where(b.rows.notna(), None))
               and a.rejects["reason"].tolist() == b.rejects["reason"].tolist()
               for a, b in zip(cur, new, strict=True))
    out.update({"clean_rows_arrow_string_rules_s": new_s, "identical_outcome": same,
                "speedup": cur_s / new_s})
    scan_s, _ = best_of(lambda: _scan(DuplicateScan(), cur), repeat=1)
    out["duplicate_scan_hash_s"] = scan_s
    out["note"] = ("clean_day calls clean_rows for every landed fragment twice (pass 1 feeds "
                   "DuplicateScan, pass 2 classifies) and reads+decrypts every fragment twice")
    return out


def _scan(scan, cleaned):
    for c in cleaned:
        scan.add(c.rows)
    return scan.verdict()


# --- D -------------------------------------------------------------------------------------------

def exp_d(day: Day) -> dict:
    import numpy as np

    frames = day.landed()
    ts = [f["sale_ts"] for f in frames]
    cur_s, cur = best_of(lambda: [t.dt.strftime("%Y-%m-%d") for t in ts])

    def candidate():
        out = []
        for t in ts:
            days = t.to_numpy(dtype="datetime64[D]")
            uniq, inverse = np.unique(days, return_inverse=True)
            out.append(np.array([str(u) for u in uniq], dtype=object)[inverse])
        return out

    new_s, new = best_of(candidate)
    same = all(list(a) == list(b) for a, b in zip(cur, new, strict=True))
    return {"rows": sum(len(t) for t in ts), "current_s": cur_s, "candidate_s": new_s,
            "identical": same, "speedup": cur_s / new_s}


# --- E -------------------------------------------------------------------------------------------

def exp_e(day: Day, work: Path) -> dict:
    from sqlalchemy import event

    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.loading import SalesLoader

    batches = day.encrypted_batches()
    out = {}
    for label, pragmas in (("engine pragmas", ()),
                           ("+ cache_size=-262144, temp_store=MEMORY",
                            ("PRAGMA cache_size=-262144", "PRAGMA temp_store=MEMORY"))):
        best = float("inf")
        for attempt in range(2):
            db = work / f"load-{len(out)}-{attempt}.db"
            engine = make_engine(f"sqlite:///{db}")
            engine.dispose()
            if pragmas:
                @event.listens_for(engine, "connect")
                def _extra(dbapi_connection, _record, pragmas=pragmas) -> None:
                    cursor = dbapi_connection.cursor()
                    for p in pragmas:
                        cursor.execute(p)
                    cursor.close()
            started = time.perf_counter()
            stats = SalesLoader(engine).load_day(DEFAULT_DAY, iter(batches), datetime.now())
            best = min(best, time.perf_counter() - started)
            engine.dispose()
            remove_sqlite(db)
        out[label] = {"seconds": best, "staged": stats.staged}
    return out


# --- H -------------------------------------------------------------------------------------------

def in_key_order(frame):
    """Candidate: a batch sorted by transaction id (B-tree locality in a sales holding other
    days). Measured five times and not adopted: into a sales holding two days 6-17 % faster in
    four runs (equal in the fifth), into an empty sales 13-40 % slower in three of four runs
    (sorted runs pack pages full, and the next batch's keys then split nearly every page)."""
    return frame.sort_values("transaction_id", kind="stable", ignore_index=True)


def exp_h(day: Day, work: Path) -> dict:
    """The day's load into an empty sales and into one holding two other days, both orders."""
    return {f"sales holding {held} other days": _load_orders(day, work, held) for held in (0, 2)}


def _load_orders(day: Day, work: Path, held_days: int) -> dict:
    import shutil
    from datetime import timedelta

    import pandas as pd

    from sales_platform.core.warehouse import loading
    from sales_platform.core.warehouse.engine import make_engine

    batches = day.encrypted_batches()
    held = work / "held.db"
    remove_sqlite(held)
    engine = make_engine(f"sqlite:///{held}")
    for shift in range(1, held_days + 1):  # earlier days with other ids, as history
        earlier = [b.assign(transaction_id=f"h{shift}" + b["transaction_id"],
                            sale_ts=b["sale_ts"] - pd.Timedelta(days=shift)) for b in batches]
        loading.SalesLoader(engine).load_day(DEFAULT_DAY - timedelta(days=shift), iter(earlier),
                                             datetime.now())
    engine.dispose()
    out = {}
    # the loader reads the batches in its prefetch thread: the candidate's sort runs there too
    for label, order in (("file order (the platform)", lambda frame: frame),
                         ("transaction id order (candidate)", in_key_order)):
        db = work / "h.db"
        shutil.copyfile(held, db)
        engine = make_engine(f"sqlite:///{db}")
        started = time.perf_counter()
        stats = loading.SalesLoader(engine).load_day(
            DEFAULT_DAY, lambda order=order: (order(b) for b in batches), datetime.now())
        out[label] = {"seconds": time.perf_counter() - started, "inserted": stats.inserted}
        engine.dispose()
        remove_sqlite(db)
    if len({r["inserted"] for r in out.values()}) != 1:
        raise SystemExit(f"H: the two orders inserted different rows: {out}")
    return out


# --- I -------------------------------------------------------------------------------------------

def exp_i(day: Day, work: Path) -> dict:
    """The day's fresh load (the direct write into sales) into an empty sales created either way,
    then a reload with the same rows (the merge path), best of two each."""
    from sqlalchemy import text
    from sqlalchemy.schema import CreateIndex, CreateTable

    from sales_platform.core.warehouse import loading
    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.tables import create_all, sales

    batches = day.encrypted_batches()
    out = {}
    for label, suffix in (("rowid table + primary key index (the platform)", ""),
                          ("WITHOUT ROWID (candidate)", " WITHOUT ROWID")):
        fresh, reload = float("inf"), float("inf")
        for _ in range(2):
            db = work / "i.db"
            remove_sqlite(db)
            engine = make_engine(f"sqlite:///{db}")
            create_all(engine)
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE sales"))
                ddl = str(CreateTable(sales).compile(dialect=engine.dialect)).rstrip()
                conn.execute(text(ddl + suffix))
                for index in sales.indexes:
                    conn.execute(CreateIndex(index))
            started = time.perf_counter()
            stats = loading.SalesLoader(engine).load_day(DEFAULT_DAY, lambda: iter(batches),
                                                         datetime.now())
            fresh = min(fresh, time.perf_counter() - started)
            started = time.perf_counter()
            again = loading.SalesLoader(engine).load_day(DEFAULT_DAY, lambda: iter(batches),
                                                         datetime.now())
            reload = min(reload, time.perf_counter() - started)
            engine.dispose()
            remove_sqlite(db)
        out[label] = {"fresh_s": fresh, "reload_s": reload, "inserted": stats.inserted,
                      "unchanged_on_reload": again.unchanged}
    if len({(r["inserted"], r["unchanged_on_reload"]) for r in out.values()}) != 1:
        raise SystemExit(f"I: the two tables gave different loads: {out}")
    return out


# --- K, L ----------------------------------------------------------------------------------------

def exp_k(day: Day) -> dict:
    """Each landed fragment read, turned into a frame, cleaned and turned back into an Arrow table,
    best of three per kind of text column."""
    from sales_platform.core.frames import arrow_frame, frame_table
    from sales_platform.core.quality import clean_rows
    from sales_platform.core.store import read_sealed_table

    tables = [read_sealed_table(p, day.keyring) for p in day.areas.fragments("landed", day.day)]
    kinds = {"object (before)": lambda t: t.to_pandas(), "pd.ArrowDtype (the platform)": arrow_frame}
    out, results = {}, {}
    for label, to_frame in kinds.items():
        def run(to_frame=to_frame) -> tuple[list, dict]:
            timings = {"to_pandas_s": 0.0, "clean_rows_s": 0.0, "to_arrow_s": 0.0}
            cleaned = []
            for table in tables:
                started = time.perf_counter()
                frame = to_frame(table)
                timings["to_pandas_s"] += time.perf_counter() - started
                started = time.perf_counter()
                rows = clean_rows(frame, day.rules, day.known).rows
                timings["clean_rows_s"] += time.perf_counter() - started
                started = time.perf_counter()
                cleaned.append(frame_table(rows))
                timings["to_arrow_s"] += time.perf_counter() - started
            return cleaned, timings
        best = None
        for _ in range(3):
            cleaned, timings = run()
            if best is None or sum(timings.values()) < sum(best.values()):
                best = timings
        results[label] = cleaned
        out[label] = {**best, "total_s": sum(best.values())}
    first, second = results.values()
    if not all(a.equals(b) for a, b in zip(first, second, strict=True)):
        raise SystemExit("K: the two kinds of text column gave different cleaned rows")
    return out


def exp_l(day: Day, work: Path) -> dict:
    """The day's encrypted batches (as the load gives them, dates as text) into a scratch file,
    best of three each way."""
    import adbc_driver_sqlite.dbapi

    from sales_platform.core.pipeline import iter_arrow_layer
    from sales_platform.core.warehouse.loading import copy_table
    from sales_platform.core.warehouse.sqlite_scratch import SqliteScratch

    batches = [copy_table(t) for t in iter_arrow_layer(day.areas, "encrypted", day.day)]

    def defaults() -> None:
        with adbc_driver_sqlite.dbapi.connect(str(work / "l.db")) as conn:
            with conn.cursor() as cursor:
                for table in batches:
                    cursor.adbc_ingest("rows", table, mode="create_append")
            conn.commit()
        (work / "l.db").unlink()

    def platform() -> None:
        SqliteScratch(batches, str(work)).remove()

    return {"SQLite defaults (before)": best_of(defaults),
            "journal and fsync off (the platform)": best_of(platform)}


# --- J -------------------------------------------------------------------------------------------

def _staged_path(day: Day, db: Path) -> None:
    """The platform today: three passes over the day's rows, two sealed/plain layers between."""
    from sales_platform.core.pipeline import ENCRYPTED, clean_day, encrypt_day, iter_arrow_layer
    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.loading import SalesLoader

    clean_day(day.areas, day.keyring, day.day, day.rules, day.known)
    encrypt_day(day.areas, day.keyring, day.day)
    engine = make_engine(f"sqlite:///{db}")
    SalesLoader(engine).load_day(DEFAULT_DAY, lambda: iter_arrow_layer(day.areas, ENCRYPTED, day.day),
                                 datetime(2024, 3, 2))
    engine.dispose()


def _one_pass(day: Day, db: Path, adbc: bool = False) -> dict:
    """Candidate: each landed chunk is cleaned, tokenized and handed to a writer thread that
    inserts it straight into sales (one transaction) while the next chunk is cleaned. Copies of a
    transaction id already handed over are held back; after the day's duplicate verdict the first
    copies of conflicting ids are deleted again (identical copies keep the first, as the platform
    does). Cross-day conflicts, rejects, ledger and layers are left out: measurement only.
    With ``adbc`` the writer is an ADBC SQLite connection ingesting the Arrow batch (bound in C,
    the GIL released for the whole batch) instead of sqlite3's executemany of Python rows."""
    import threading
    from queue import Queue

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from sales_platform.core.crypto import Tokenizer
    from sales_platform.core.dedupe import DuplicateScan, _column_hash
    from sales_platform.core.pipeline import _landed_frames, protect_table
    from sales_platform.core.quality import clean_rows
    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.loading import SalesLoader, copy_table, rows_for_driver

    engine = make_engine(f"sqlite:///{db}")
    loader = SalesLoader(engine)
    tokenizer, scan = Tokenizer(day.keyring), DuplicateScan()
    handed: list[np.ndarray] = []  # id hashes already inserted (sorted per chunk)
    held_back: list[str] = []
    timings = {"clean_tokenize_s": 0.0, "writer_busy_s": 0.0}
    queue: Queue = Queue(maxsize=1)
    failure: list[BaseException] = []
    if adbc:
        import adbc_driver_sqlite.dbapi

        engine.dispose()
        raw = adbc_driver_sqlite.dbapi.connect(str(db))  # autocommit off: one transaction
        conn = raw
    else:
        conn = engine.raw_connection()
        raw = conn.driver_connection
        raw.execute("BEGIN")

    def write() -> None:
        try:
            while (payload := queue.get()) is not None:
                started = time.perf_counter()
                if adbc:
                    with raw.cursor() as cursor:
                        cursor.adbc_ingest("sales", payload, mode="append")
                else:
                    loader._bulk_insert(raw, payload, datetime(2024, 3, 2))
                timings["writer_busy_s"] += time.perf_counter() - started
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    stamp = loader._loaded_at_param(datetime(2024, 3, 2))
    for frame in _landed_frames(day.areas, day.keyring, day.day):
        started = time.perf_counter()
        rows = clean_rows(frame, day.rules, day.known).rows
        scan.add(rows)
        tids = _column_hash(rows["transaction_id"], categorize=False)
        _, first = np.unique(tids, return_index=True)
        fresh = np.zeros(len(rows), dtype=bool)
        fresh[first] = True
        for earlier in handed:
            fresh &= ~np.isin(tids, earlier, assume_unique=False)
        handed.append(np.sort(tids[fresh]))
        held_back += rows["transaction_id"][~fresh].tolist()
        table = protect_table(pa.Table.from_pandas(rows[fresh], preserve_index=False), tokenizer)
        payload = copy_table(table, (), datetime(2024, 3, 2)) if adbc else \
            rows_for_driver(table.to_pandas(), "sqlite", (), stamp)
        timings["clean_tokenize_s"] += time.perf_counter() - started
        queue.put(payload)
    queue.put(None)
    writer.join()
    if failure:
        raise failure[0]
    verdict = scan.verdict()
    conflicting = set(verdict.conflicting_tids.tolist())
    doomed = sorted({t for t in held_back
                     if int(_column_hash(pd.Series([t]), False)[0]) in conflicting})
    if adbc:
        with raw.cursor() as cursor:
            for t in doomed:
                cursor.execute("DELETE FROM sales WHERE transaction_id = ?", (t,))
        raw.commit()
    else:
        raw.executemany("DELETE FROM sales WHERE transaction_id = ?", [(t,) for t in doomed])
        raw.execute("COMMIT")
    conn.close()
    engine.dispose()
    return {**timings, "held_back": len(held_back), "deleted_after_verdict": len(doomed)}


def _sales_digest(db: Path) -> tuple[int, str]:
    import hashlib
    import sqlite3

    digest, count = hashlib.sha256(), 0
    with sqlite3.connect(db) as conn:
        for row in conn.execute("SELECT transaction_id, customer_id, product_id, quantity, sale_date, "
                                "sale_ts, source_file, source_sha256, source_row FROM sales "
                                "ORDER BY transaction_id"):
            digest.update(repr(row).encode())
            count += 1
    return count, digest.hexdigest()


def exp_j(day: Day, work: Path) -> dict:
    out = {}
    for label, path in (("staged: clean_day -> encrypt_day -> load_day (the platform)", _staged_path),
                        ("one pass per chunk, insert overlapped (candidate)", _one_pass),
                        ("one pass per chunk, ADBC ingest overlapped (candidate)",
                         lambda d, db: _one_pass(d, db, adbc=True))):
        best, extra = float("inf"), {}
        for _ in range(2):
            db = work / "j.db"
            remove_sqlite(db)
            from sales_platform.core.warehouse.engine import make_engine

            make_engine(f"sqlite:///{db}").dispose()  # tables, as the platform creates them
            started = time.perf_counter()
            extra = path(day, db) or {}
            seconds = time.perf_counter() - started
            if seconds < best:
                best = seconds
            rows, digest = _sales_digest(db)
            remove_sqlite(db)
        out[label] = {"seconds": best, "sales_rows": rows, "sales_digest": digest, **extra}
    if len({(r["sales_rows"], r["sales_digest"]) for r in out.values()}) != 1:
        raise SystemExit(f"J: the two paths left different sales tables: {out}")
    return out


# --- F -------------------------------------------------------------------------------------------

def exp_f(day: Day, pg_url: str) -> dict:
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from worker import _first_per_key, _pg_conninfo, _read_strings

    table = _first_per_key(_read_strings(day.csv))
    blocks = []
    for batch in table.to_batches(max_chunksize=100_000):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(pa.Table.from_batches([batch]), sink, pacsv.WriteOptions(include_header=False))
        blocks.append(sink.getvalue())
    out = {}
    for label, collate in (("database collation", ""), ('COLLATE "C"', ' COLLATE "C"')):
        best = float("inf")
        for _ in range(2):
            with ScratchPgDatabase(pg_url, "collate") as db, \
                    psycopg.connect(_pg_conninfo(db.url)) as conn:
                conn.execute(f"CREATE TABLE t (transaction_id text{collate} PRIMARY KEY, "
                             "customer_id text, product_id text, quantity text, ts text)")
                conn.commit()
                started = time.perf_counter()
                with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT csv)") as copy:
                    for block in blocks:
                        copy.write(block)
                conn.commit()
                best = min(best, time.perf_counter() - started)
        out[label] = {"seconds": best, "rows": table.num_rows, "rows_per_s": table.num_rows / best}
    return out


# --- M -------------------------------------------------------------------------------------------

PG_DIGEST = ("SELECT count(*), md5(string_agg(concat_ws('|', transaction_id, customer_id, product_id, "
             "quantity, sale_date, sale_ts, source_file, source_sha256, source_row), ',' "
             "ORDER BY transaction_id)) FROM sales")


def _typed_sales_batches(day: Day, loaded_at: datetime) -> list:
    """The encrypted layer's batches as Arrow tables typed like the sales columns (for ADBC)."""
    import pyarrow as pa

    from sales_platform.core.pipeline import iter_arrow_layer

    out = []
    for batch in iter_arrow_layer(day.areas, "encrypted", day.day):
        ts = batch.column("sale_ts").cast(pa.timestamp("us"))
        out.append(pa.table({
            "transaction_id": batch.column("transaction_id").cast(pa.string()),
            "customer_id": batch.column("customer_id").cast(pa.string()),
            "product_id": batch.column("product_id").cast(pa.string()),
            "quantity": batch.column("quantity").cast(pa.int32()),
            "sale_date": ts.cast(pa.date32()),
            "sale_ts": ts,
            "source_file": batch.column("source_file").cast(pa.string()),
            "loaded_at": pa.repeat(pa.scalar(loaded_at, pa.timestamp("us")), batch.num_rows),
            "source_sha256": batch.column("source_sha256").cast(pa.string()),
            "source_row": batch.column("source_row").cast(pa.int32()),
        }))
    return out


def _pg_digest(url: str) -> tuple:
    """(rows, md5 of every row in key order) of the database's sales table."""
    from sqlalchemy import text

    from sales_platform.core.warehouse.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(PG_DIGEST)).one())
    finally:
        engine.dispose()


def _pg_fresh_platform(day: Day, url: str) -> tuple[float, tuple]:
    from sales_platform.core.pipeline import iter_arrow_layer
    from sales_platform.core.warehouse.engine import make_engine
    from sales_platform.core.warehouse.loading import SalesLoader

    engine = make_engine(url)
    try:
        started = time.perf_counter()
        SalesLoader(engine).load_day(DEFAULT_DAY, lambda: iter_arrow_layer(day.areas, "encrypted",
                                                                            day.day), datetime.now())
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return seconds, _pg_digest(url)


def _pg_fresh_adbc(day: Day, url: str, via_scratch: bool) -> tuple[float, dict, tuple]:
    import adbc_driver_postgresql.dbapi as pg_adbc
    from worker import _pg_conninfo

    from sales_platform.core.warehouse.engine import make_engine

    make_engine(url).dispose()  # the real sales schema (primary key + sale_date index)
    started = time.perf_counter()
    tables = _typed_sales_batches(day, datetime.now().replace(microsecond=0))
    parts = {"typed Arrow tables": time.perf_counter() - started}
    with pg_adbc.connect(_pg_conninfo(url)) as conn:  # libpq takes keyword=value too
        mark = time.perf_counter()
        with conn.cursor() as cur:
            if via_scratch:
                cur.execute("CREATE UNLOGGED TABLE scratch_sales (LIKE sales INCLUDING DEFAULTS)")
                conn.commit()
            for table in tables:
                cur.adbc_ingest("scratch_sales" if via_scratch else "sales", table, mode="append")
            conn.commit()
            parts["ADBC binary COPY"] = time.perf_counter() - mark
            if via_scratch:
                mark = time.perf_counter()
                cur.execute("INSERT INTO sales SELECT * FROM scratch_sales")
                cur.execute("DROP TABLE scratch_sales")
                conn.commit()
                parts["INSERT ... SELECT in a transaction"] = time.perf_counter() - mark
    return time.perf_counter() - started, parts, _pg_digest(url)


def exp_m(day: Day, pg_url: str, repeat: int = 2) -> dict:
    """Best of ``repeat`` per variant, each into a fresh scratch database."""
    import importlib.util

    if importlib.util.find_spec("adbc_driver_postgresql") is None:
        return {"skipped": "adbc_driver_postgresql not installed (pip install adbc-driver-postgresql)"}
    out: dict = {}
    digests = {}
    variants = {
        "platform load_day (text COPY in the day's transaction)": "platform",
        "ADBC binary COPY straight into sales": "adbc",
        "ADBC binary COPY into an unlogged scratch, then INSERT ... SELECT": "scratch",
    }
    for label, kind in variants.items():
        best, parts = float("inf"), {}
        for _ in range(repeat):
            with ScratchPgDatabase(pg_url, f"exp_m_{kind}") as db:
                if kind == "platform":
                    seconds, digest = _pg_fresh_platform(day, db.url)
                    run_parts = {}
                else:
                    seconds, run_parts, digest = _pg_fresh_adbc(day, db.url, kind == "scratch")
            digests[label] = digest
            if seconds < best:
                best, parts = seconds, run_parts
        out[label] = {"seconds": round(best, 3), "rows": digests[label][0],
                      "rows_per_s": round(digests[label][0] / best),
                      "parts_s": {k: round(v, 3) for k, v in parts.items()}}
    out["same_rows"] = len(set(digests.values())) == 1
    return out


# --- G -------------------------------------------------------------------------------------------

def exp_g(rows: int) -> dict:
    from profile_platform import core_line_hotspots
    from pyinstrument import Profiler

    from sales_platform.core.generator import GeneratorSettings, SalesGenerator

    g = SalesGenerator(GeneratorSettings(seed=42, defect_rate=0.01))
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    started = time.perf_counter()
    n = 0
    for table in g.chunks(DEFAULT_DAY, rows):
        n += table.num_rows
    seconds = time.perf_counter() - started
    profiler.stop()
    lines, total = core_line_hotspots(profiler.last_session.root_frame())
    return {"rows": n, "build_chunks_s": seconds,
            "top_lines": [{"file_line": h["file_line"], "function": h["function"],
                           "seconds": round(h["seconds"], 2), "share": round(h["share"], 3),
                           "goes_to": [g_["call"] for g_ in h["goes_to"][:2]]} for h in lines[:8]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", default="A,B,C,D,E,F,G,H,I,J,K,L,M")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    which = set(args.only.upper().split(","))
    work = scratch_dir(f"sp-exp-{args.rows}-", args.workdir)
    results: dict = {}
    try:
        code_root = snapshot_code(work)
        sys.path.insert(0, str(code_root))
        facts = machine_facts(code_root=code_root)
        print(f"machine {machine_busy_pct(1.0):.0f}% busy; preparing {args.rows:,} rows ...",
              flush=True)
        day = Day(work, args.rows) if which & set("ABCDEFHIJKLM") else None
        for key, fn in (("A", lambda: exp_a(day)), ("B", lambda: exp_b(day)),
                        ("C", lambda: exp_c(day)), ("D", lambda: exp_d(day)),
                        ("E", lambda: exp_e(day, work)),
                        ("F", lambda: exp_f(day, args.pg_url) if pg_reachable(args.pg_url)[0]
                         else {"skipped": "PostgreSQL not reachable"}),
                        ("G", lambda: exp_g(args.rows)), ("H", lambda: exp_h(day, work)),
                        ("I", lambda: exp_i(day, work)), ("J", lambda: exp_j(day, work)),
                        ("K", lambda: exp_k(day)), ("L", lambda: exp_l(day, work)),
                        ("M", lambda: exp_m(day, args.pg_url) if pg_reachable(args.pg_url)[0]
                         else {"skipped": "PostgreSQL not reachable"})):
            if key not in which:
                continue
            busy = machine_busy_pct(1.0)
            results[key] = {**fn(), "machine_busy_pct_before": round(busy)}
            print(f"{key}: {results[key]}", flush=True)
    finally:
        remove_tree(work)
    write_json(RESULTS_DIR / f"experiments-{args.rows}.json",
               {"machine": facts, "rows": args.rows, "results": results,
                "day": date.fromisoformat(DEFAULT_DAY.isoformat()).isoformat()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
