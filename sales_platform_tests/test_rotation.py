"""Key rotation on real pipeline output, on SQLite and PostgreSQL: every token and sealed file ends
under the new key, decrypts to the same plaintext with the new key alone, and an interrupted
rotation resumes to the same state as an uninterrupted one.

End states are checked absolutely, with the test's own instruments rather than the platform's token
counters: a scan of every column of every table and of every file under the data dir (blob storage
included) for the old key id, and a decryption of everything with the new key alone, compared with the
plaintext computed from the input files (the oracle, the catalogue, the dropped bytes).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import re
import shutil
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import MetaData, create_engine, func, insert, select, text

from sales_platform.core import crypto
from sales_platform.core.crypto import (
    NOT_A_TOKEN,
    CryptoError,
    Keyring,
    Tokenizer,
    file_binding,
    generate_key,
    is_token,
    key_id_of_token,
    open_platform_bytes,
    parse_master_key,
    sealed_identity,
    token_prefixes,
)
from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.keyset import KEYSET_FILE, Keyset, load_keyset, save_keyset
from sales_platform.core.rotation import (
    STAGED_TOKEN_COLUMNS,
    TOKEN_TABLES,
    BatchDone,
    RotationError,
    rotate_keys,
    sealed_files,
    sealed_key_id,
    staged_token_files,
    token_tables,
)
from sales_platform.core.schema import DEFAULT_SENSITIVE
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.engine import cached_engine, dispose_all
from sales_platform.core.warehouse.loading import add_column_ddl, sales_with
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    dim_products,
    sales,
    sales_rejects,
)
from sales_platform.resources.blob import LocalBlobStorage
from sales_platform.rotation_cli import RotationProgress, cmd_key_status, cmd_rotate_keys
from sales_platform_tests.conftest import PG_ADMIN_URL
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    materializations_of,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.oracle import HEADER, Drop, Expected, normalize_id, read_table
from sales_platform_tests.test_pipeline import drops_in, matches_oracle
from sales_platform_tests.test_products_and_exports import expected_totals, read_catalogue, totals

DAYS = ("2024-03-01", "2024-03-02")
AGGREGATES = ["agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
TOKEN_EXPORTS = {"exports/agg_sales_by_product/2024.csv": "product_token",
                 "exports/agg_sales_by_customer/2024.csv": "customer_token"}
STAMPS = {"refreshed_at"}  # rotation re-stamps rotated aggregate rows (so exports are redone)
RELOADED = {*STAMPS, "reject_id", "rejected_at"}  # a rerun of sales_rejects rewrites the day's rows


# Where the documented rules put tokens for run_pipeline's input: identifiers, the sensitive column the
# schema evolution adds (email), a malformed record, the rejected row's other columns, the aggregates.
TOKEN_COLUMNS = frozenset({
    "sales.customer_id", "sales.product_id", "sales.email", "sales_rejects.customer_id",
    "sales_rejects.product_id", "sales_rejects.raw_text", "sales_rejects.extras",
    "dim_products.product_token", "agg_sales_by_product.product_token",
    "agg_sales_by_customer.customer_token"})
# base64url of 0x01 || key id || AES-SIV, standing alone: a run inside standard base64 (the charts
# embedded in report metadata, "+" "/" "=" around it) only looks like one.
TOKEN = re.compile(r"(?<![A-Za-z0-9_+/=-])A[A-Za-z0-9_-]{27,}(?![A-Za-z0-9_+/=-])")
EXTRA_CSV = ("transaction_id,customer_id,product_id,quantity,timestamp,email\n"
             "TX-1,C0000001,P00001,2,2024-03-01T09:00:00,ann@example.com\n"
             "TX-2,C0000002,P00001,1,2024-03-01T09:30:00,bob@example.com,too,many\n"
             "TX-3,C0000003,P00001,-1,2024-03-01T09:45:00,cy@example.com\n"
             # good rows enough that the one malformed record stays under the landing reject rate
             "TX-4,C0000004,P00001,3,2024-03-01T10:00:00,di@example.com\n"
             "TX-5,C0000005,P00001,4,2024-03-01T10:15:00,ed@example.com\n"
             "TX-6,C0000006,P00001,5,2024-03-01T10:30:00,flo@example.com\n")


class Interrupted(Exception):
    pass


def token_ids(text_: str) -> list[str]:
    """Key ids of the tokens in a text (Tink format: base64url of 0x01 || key id || ciphertext)."""
    return [k for k in map(key_id_of_token, TOKEN.findall(text_)) if k != NOT_A_TOKEN]


def bound(path: Path) -> bytes:
    """The associated data a platform file is sealed under (its name)."""
    return file_binding(sealed_identity(path))


def is_sealed(content: bytes) -> bool:
    return content[:1] == bytes([crypto.HEADER_SIZE]) and len(content) >= crypto.HEADER_SIZE + 16


def switch_master(data_dir: Path, key: str, key_b: str) -> None:
    """The deployment's keyset, with key B's first key added as primary, now wrapped under master B
    (what a master-key change plus ``rotate-keys`` leave; the tests name keys by their master keys)."""
    path = data_dir / KEYSET_FILE
    keyset = load_keyset(path, parse_master_key(key))
    entry = Keyset.initial(parse_master_key(key_b)).keys[0]
    keyset.keys.append(entry)
    keyset.primary = entry.number
    save_keyset(path, keyset, parse_master_key(key_b))


@dataclass
class Inputs:
    """What run_pipeline dropped and loaded, read from the files before the platform took them."""

    drops: list[Drop]
    catalogue: dict[str, tuple[str, str, Decimal]]


def run_pipeline(data_dir: Path, url: str, key: str) -> tuple[dict, Inputs]:
    """Products, two days of generated sales with defects (plus a malformed record), aggregates, exports."""
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 3, 1), 2, 300,
             GeneratorSettings(seed=5, customers=120, products=25, defect_rate=0.08))
    # A sensitive column the contract does not declare (schema evolution adds it, as tokens), a
    # rejected row (its email lands in sales_rejects.extras JSON) and a malformed record (raw_text).
    (data_dir / "incoming" / "extra.csv").write_text(EXTRA_CSV)
    inputs = Inputs(drops_in(data_dir / "incoming"), read_catalogue(data_dir))
    resources = resources_for(data_dir, url, key)
    materialize(resources, PRODUCTS)
    for day in DAYS:
        materialize(resources, [*SALES_CHAIN, *AGGREGATES], day)
    materialize(resources, ["agg_exports"])
    return resources, inputs


# ---- the test's own instruments: scans and decryptions, independent of the platform's token lists ------

def db_key_ids(engine) -> dict[str, Counter[str]]:
    """table.column -> key ids of the tokens in its values (inside JSON text too), scanning every column
    of every table of the database."""
    live = MetaData()
    live.reflect(engine)
    found: dict[str, Counter[str]] = defaultdict(Counter)
    with engine.connect() as conn:
        for table in live.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, str):
                        found[f"{table.name}.{column}"].update(token_ids(value))
    return {name: ids for name, ids in found.items() if ids}


def db_mentions(engine, text_: str) -> list[str]:
    """table.column of every value (of any column of any table) that holds ``text_``."""
    live = MetaData()
    live.reflect(engine)
    with engine.connect() as conn:
        return [f"{table.name}.{column}" for table in live.sorted_tables
                for row in conn.execute(select(table)).mappings() for column, value in row.items()
                if text_ in (value.decode("latin-1") if isinstance(value, bytes) else str(value))]


def every_file(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file())


def parquet_strings(content: bytes) -> dict[str, list[str]]:
    """column -> its non-null string values, of a Parquet file's bytes."""
    table = pq.read_table(io.BytesIO(content))
    return {name: [v for v in table[name].to_pylist() if isinstance(v, str)] for name in table.column_names}


def decoded(path: Path, keyring: Keyring) -> tuple[str | None, str]:
    """(key id of the seal or None, the content as text: a sealed file opened with ``keyring``, the string
    values of Parquet, else the bytes)."""
    content = path.read_bytes()
    seal = None
    if is_sealed(content):
        seal = crypto.sealed_key_id(keyring, io.BytesIO(content), bound(path))
        content = open_platform_bytes(keyring, content, sealed_identity(path))
    if content[:4] == b"PAR1":
        return seal, "\n".join(v for values in parquet_strings(content).values() for v in values)
    return seal, content.decode("latin-1")


def file_key_ids(data_dir: Path, keyring: Keyring) -> dict[str, Counter[str]]:
    """File (relative to the data dir) -> key ids of its seal and of the tokens in its content."""
    found = {}
    for path in every_file(data_dir):
        seal, text_ = decoded(path, keyring)
        ids = Counter(token_ids(text_)) + Counter([seal] if seal else [])
        if ids:
            found[str(path.relative_to(data_dir))] = ids
    return found


def assert_key_gone(engine, data_dir: Path, keyring: Keyring, old: str) -> None:
    """The old key id is nowhere: in no value of any table, in no file's bytes, in no file's content
    (sealed files opened with ``keyring``, which must not need the old key)."""
    assert db_mentions(engine, old) == []
    marks = [old.encode(), *(p.encode() for p in token_prefixes(old))]
    in_bytes = [str(p.relative_to(data_dir)) for p in every_file(data_dir)
                if any(m in p.read_bytes() for m in marks)]
    assert in_bytes == []
    in_content = [str(p.relative_to(data_dir)) for p in every_file(data_dir)
                  if old in decoded(p, keyring)[1] or old in token_ids(decoded(p, keyring)[1])]
    assert in_content == []


def area(relative: str) -> str:
    """The data area of a file: archive, blob/archive, blob/exports, staging/landed, ..."""
    parts = relative.split("/")
    return parts[0] if parts[0] == "archive" else "/".join(parts[:2])


def only_key_id(counts: dict[str, Counter[str]], key_id: str) -> bool:
    return bool(counts) and all(set(ids) == {key_id} for ids in counts.values())


def input_records(drops: list[Drop]) -> dict[tuple[str, int], dict[str, str]]:
    """(file, source_row) -> the record's fields by header name; a malformed record as {"raw": line}."""
    out = {}
    for drop in drops:
        table = read_table(drop.content)
        assert table is not None, drop.name
        header, records = table
        names = [cell.strip().lower() for cell in header]
        for row, record in enumerate(records, start=1):
            out[(drop.name, row)] = (dict(zip(names, record, strict=True)) if len(record) == len(names)
                                     else {"raw": ",".join(record)})  # the test's input has no quoting
    return out


def input_values(drops: list[Drop]) -> set[str]:
    """Every field of every input record, as written and normalized."""
    values = set()
    for fields in input_records(drops).values():
        for value in fields.values():
            values |= {value, normalize_id(value)}
    return values


def assert_plaintext_from_inputs(engine, url: str, data_dir: Path, key: str, inputs: Inputs,
                                 exports: bool = True) -> Expected:
    """Everything decrypts with ``key`` alone to the plaintext computed from the input files: the sales
    rows and rejects (oracle), rejected rows' raw values and other columns, the products dimension and
    the token aggregates (oracle x catalogue), archived drops (their bytes), the values in staged and
    sealed fragments, and (``exports``) the exported token aggregates."""
    keyring = Keyring.from_secrets(key)
    tokenizer = Tokenizer(keyring)
    expected = matches_oracle(data_dir, url, key, inputs.drops, known_products=set(inputs.catalogue))
    records = input_records(inputs.drops)
    live = MetaData()
    live.reflect(engine)
    with engine.connect() as conn:
        emails = {r.transaction_id: tokenizer.decrypt(r.email)
                  for r in conn.execute(select(live.tables["sales"])) if r.email is not None}
        rejects = conn.execute(select(sales_rejects)).mappings().all()
        products = {tokenizer.decrypt(r.product_token, "product_id")
                    for r in conn.execute(select(dim_products))}
        by_product = {(r.sale_date, tokenizer.decrypt(r.product_token)): totals(r)
                      for r in conn.execute(select(agg_sales_by_product))}
        by_customer = {(r.sale_date, tokenizer.decrypt(r.customer_token)): totals(r)
                       for r in conn.execute(select(agg_sales_by_customer))}
    good = [f for f in (line.split(",") for line in EXTRA_CSV.splitlines()[1:])
            if len(f) == 6 and int(f[3]) > 0]  # a record of the header's width, a positive quantity
    assert emails == {f[0]: f[5] for f in good}
    for reject in rejects:
        fields = records[(reject["source_file"], reject["source_row"])]
        if "raw" in fields:
            assert tokenizer.decrypt(reject["raw_text"]) == fields["raw"]
            continue
        for column in ("customer_id", "product_id"):
            assert normalize_id(tokenizer.decrypt(reject[column])) == normalize_id(fields[column]), reject
        extras = {k: tokenizer.decrypt(v) if is_token(v) else v
                  for k, v in json.loads(reject["extras"] or "{}").items()}
        assert extras == {k: v for k, v in fields.items() if k not in HEADER}, reject
    assert products == set(inputs.catalogue)
    want = expected_totals(expected, inputs.catalogue)
    assert by_product == want["product"] and by_customer == want["customer"]

    contents, values = {d.content for d in inputs.drops}, input_values(inputs.drops)
    archived: dict[str, set[bytes]] = defaultdict(set)
    for path in every_file(data_dir):
        content = path.read_bytes()
        if is_sealed(content):
            content = open_platform_bytes(keyring, content, sealed_identity(path))
            if path.name.endswith(".csv.sealed"):  # an archived drop (or its blob copy): the dropped bytes
                assert hashlib.sha256(content).hexdigest() == path.name.split(".")[0]
                archived[str(path.parent.relative_to(data_dir))].add(content)
                continue
        if content[:4] == b"PAR1":
            for column, strings in parquet_strings(content).items():
                if column in ("customer_id", "product_id", "raw_text", "email"):
                    plain = [tokenizer.decrypt(v) if is_token(v) else v for v in strings]
                    assert set(plain) <= values, (path, column, set(plain) - values)
    assert archived == {"archive": contents, "blob/archive": contents}
    if exports:
        for name, column in TOKEN_EXPORTS.items():
            group = "product" if column == "product_token" else "customer"
            rows = list(csv.DictReader(io.StringIO((data_dir / "blob" / name).read_text())))
            assert {(date.fromisoformat(r["sale_date"]), tokenizer.decrypt(r[column])): totals(r)
                    for r in rows} == {k: v for k, v in want[group].items() if k[0].year == 2024}, name
    return expected


def _decrypt_json(tokenizer: Tokenizer, text: str | None) -> object:
    data = json.loads(text) if text else None
    return data and {k: tokenizer.decrypt(v) if k in DEFAULT_SENSITIVE else v for k, v in data.items()}


def _decrypted_rows(engine, keyring: Keyring, ignore: set[str] = STAMPS) -> dict[str, list[tuple]]:
    """Every row of every token table with its tokens decrypted (raises if one does not decrypt)."""
    tokenizer = Tokenizer(keyring)
    out = {}
    with engine.connect() as conn:
        for spec in token_tables(engine):
            rows = []
            for row in conn.execute(select(spec.table)).mappings():
                rows.append(tuple(
                    (c, tokenizer.decrypt(v) if c in spec.tokens and v is not None else
                     _decrypt_json(tokenizer, v) if c in spec.json_columns else v)
                    for c, v in row.items() if c not in ignore))
            out[spec.table.name] = sorted(rows, key=repr)
    return out


def _decrypted_files(data_dir: Path, keyring: Keyring) -> dict[str, object]:
    """Plaintext of every sealed file (staging, archive, blob archive copy) and staged token file."""
    tokenizer = Tokenizer(keyring)
    out: dict[str, object] = {}
    for path in sorted(data_dir.rglob("*.sealed")):
        out[str(path.relative_to(data_dir))] = open_platform_bytes(keyring, path.read_bytes(),
                                                                   sealed_identity(path))
    for path in staged_token_files(DataAreas(data_dir)):
        table = pq.read_table(path)
        columns = [c for c in table.column_names if c in (*STAGED_TOKEN_COLUMNS, *DEFAULT_SENSITIVE)
                   and table[c].null_count < len(table)]
        out[str(path.relative_to(data_dir))] = {
            c: [None if v is None else tokenizer.decrypt(v) for v in table[c].to_pylist()] for c in columns}
    return out


def _decrypted_exports(data_dir: Path, keyring: Keyring) -> dict[str, list[dict]]:
    tokenizer = Tokenizer(keyring)
    out = {}
    for name, column in TOKEN_EXPORTS.items():
        rows = list(csv.DictReader(io.StringIO((data_dir / "blob" / name).read_text())))
        # sorted: the export is ordered by its key, which holds the token
        out[name] = sorted(({**r, column: tokenizer.decrypt(r[column])} for r in rows), key=repr)
    return out


def plaintext_state(engine, data_dir: Path, keyring: Keyring, ignore: set[str] = STAMPS) -> dict:
    return {"rows": _decrypted_rows(engine, keyring, ignore), "files": _decrypted_files(data_dir, keyring)}


def joined_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(
            sales.join(dim_products, dim_products.c.product_token == sales.c.product_id))).scalar_one()


def distinct_groups(engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count(func.distinct(column)))).scalar_one()
                     for column in (sales.c.customer_id, sales.c.product_id,
                                    agg_sales_by_customer.c.customer_token))


def sales_counts(result) -> tuple[int, int, int]:
    meta = materializations_of(result, "sales")[0].metadata
    return meta["inserted"].value, meta["updated"].value, meta["deleted"].value


@pytest.mark.slow
def test_rotation_moves_everything_to_the_new_key_and_changes_no_plaintext(backend, data_dir, key):
    key_b = generate_key()
    ring_a, ring_b = Keyring.from_secrets(key), Keyring.from_secrets(key_b, [key])
    only_b = Keyring.from_secrets(key_b)
    a, b = ring_a.active.key_id, ring_b.active.key_id
    resources, inputs = run_pipeline(data_dir, backend.url, key)
    engine, areas = cached_engine(resources["warehouse"].url()), DataAreas(data_dir)
    before = plaintext_state(engine, data_dir, ring_a)
    before_reload = plaintext_state(engine, data_dir, ring_a, RELOADED)
    exports_before = _decrypted_exports(data_dir, ring_a)
    # The start, from the inputs: tokens under key A exactly where the rules put them, every file under A
    # (sealed archive and fragments, staged tokens, exports), all decrypting to the input's plaintext.
    assert {c: set(ids) for c, ids in db_key_ids(engine).items()} == dict.fromkeys(TOKEN_COLUMNS, {a})
    start_files = file_key_ids(data_dir, ring_a)
    assert only_key_id(start_files, a)
    assert {area(f) for f in start_files} == {"archive", "blob/archive", "blob/exports", "staging/landed",
                                              "staging/cleaned", "staging/encrypted", "staging/rejects"}
    expected = assert_plaintext_from_inputs(engine, backend.url, data_dir, key, inputs)

    report = rotate_keys(engine, ring_b, areas, batch_size=97,
                         archive_sink=LocalBlobStorage(root=str(data_dir / "blob")).put_file)

    # Every token in the database is under key B, in the same columns; every sealed or staged file too
    # (the exports are rewritten by the next agg_exports, below).
    assert {c: set(ids) for c, ids in db_key_ids(engine).items()} == dict.fromkeys(TOKEN_COLUMNS, {b})
    assert only_key_id({f: ids for f, ids in file_key_ids(data_dir, only_b).items()
                        if not f.startswith("blob/exports/")}, b)
    # one transaction per batch of 97 rows: the sales rows alone take ceil(n / 97), each other table one
    assert report.batches >= math.ceil(len(expected.sales) / 97) + len(TOKEN_TABLES) - 1
    # With key B alone, everything decrypts to the same plaintext as before (blob archive copy too).
    assert plaintext_state(engine, data_dir, only_b) == before
    with pytest.raises(CryptoError):
        _decrypted_rows(engine, ring_a)
    customers = {s.customer_id for s in expected.sales.values()}
    assert joined_rows(engine) == len(expected.sales)  # every sale still finds its product
    assert distinct_groups(engine) == (len(customers), len({s.product_id for s in expected.sales.values()}),
                                       len(customers))

    # Rotated aggregate rows count as refreshed: the next export rewrites them with the new tokens.
    switch_master(data_dir, key, key_b)
    resources_b = resources_for(data_dir, backend.url, key_b)
    exported = materialize(resources_b, ["agg_exports"]).asset_materializations_for_node("agg_exports")
    # the rotation logs the days it rewrote: their years' exports are written again, the two with
    # tokens among them (checked below, file by file, under the new key)
    assert exported[0].metadata["files_written"].value >= len(TOKEN_EXPORTS)
    assert _decrypted_exports(data_dir, only_b) == exports_before
    # The absolute end state: key A is nowhere, and key B alone gives the input's plaintext everywhere.
    assert_key_gone(engine, data_dir, only_b, a)
    assert_plaintext_from_inputs(engine, backend.url, data_dir, key_b, inputs)
    # The pipeline with key B active finds nothing to change: staged files and tables agree.
    assert sales_counts(materialize(resources_b, ["sales"], DAYS[0])) == (0, 0, 0)
    assert sales_counts(materialize(resources_b, [*SALES_CHAIN, *AGGREGATES], DAYS[1])) == (0, 0, 0)
    dim = materialize(resources_b, PRODUCTS).asset_materializations_for_node("dim_products")[0].metadata
    assert (dim["inserted"].value, dim["updated"].value) == (0, 0)
    assert plaintext_state(engine, data_dir, only_b, RELOADED) == before_reload
    assert rotate_keys(engine, ring_b, areas).total == 0  # nothing left to do


@contextmanager
def cloned(backend, data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A copy of the warehouse and the data dir, to run a second rotation on the same starting state."""
    dispose_all()  # no open connection: PostgreSQL copies a template only when nobody is connected
    clone_dir = tmp_path / "clone"
    shutil.copytree(data_dir, clone_dir)
    if backend.name == "sqlite":
        target = tmp_path / "clone.db"
        with sqlite3.connect(backend.url.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        yield f"sqlite:///{target}", clone_dir
        return
    source, name = backend.url.rsplit("/", 1)[1], f"sp_clone_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", clone_dir
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def table_dump(engine) -> dict[str, list[tuple]]:
    """Every row of every table as it is in the database (columns added by evolution included)."""
    live = MetaData()
    live.reflect(engine)
    with engine.connect() as conn:
        return {t.name: sorted((tuple((c, v) for c, v in r.items() if c not in STAMPS)
                                for r in conn.execute(select(t)).mappings()), key=repr)
                for t in live.sorted_tables}


def file_dump(data_dir: Path, keyring: Keyring) -> dict[str, object]:
    # (the key that opens it, the content): the header is random (salt, nonce prefix), the key is not
    sealed = {str(p.relative_to(data_dir)):
              (sealed_key_id(p, keyring), open_platform_bytes(keyring, p.read_bytes(), sealed_identity(p)))
              for p in sorted(data_dir.rglob("*.sealed"))}
    staged = {str(p.relative_to(data_dir)): pq.read_table(p).to_pylist()
              for p in staged_token_files(DataAreas(data_dir))}
    return {**sealed, **staged}


@pytest.mark.slow
def test_interrupted_rotation_resumes_and_ends_like_an_uninterrupted_one(backend, data_dir, key, tmp_path):
    key_b = generate_key()
    ring_b = Keyring.from_secrets(key_b, [key])
    a, b = Keyring.from_secrets(key).active.key_id, ring_b.active.key_id
    resources, inputs = run_pipeline(data_dir, backend.url, key)
    engine, areas = cached_engine(resources["warehouse"].url()), DataAreas(data_dir)
    before = plaintext_state(engine, data_dir, Keyring.from_secrets(key))
    expected = assert_plaintext_from_inputs(engine, backend.url, data_dir, key, inputs)
    n = len(expected.sales)
    with cloned(backend, data_dir, tmp_path) as (clone_url, clone_dir):
        clone_engine = cached_engine(clone_url)
        rotate_keys(clone_engine, ring_b, DataAreas(clone_dir), batch_size=40,  # the uninterrupted reference
                    archive_sink=LocalBlobStorage(root=str(clone_dir / "blob")).put_file)
        done = []

        def stop_after_first_batch(batch) -> None:
            done.append(batch)
            raise Interrupted

        engine = cached_engine(resources["warehouse"].url())
        sink = LocalBlobStorage(root=str(data_dir / "blob")).put_file
        with pytest.raises(Interrupted):
            rotate_keys(engine, ring_b, areas, batch_size=40, progress=stop_after_first_batch,
                        archive_sink=sink)
        # Mixed state: the first batch is committed, the rest still under key A; both keys decrypt.
        mixed = db_key_ids(engine)
        assert done[0].target == "sales" and done[0].items == 40
        for column in ("sales.customer_id", "sales.product_id"):
            assert mixed.pop(column) == Counter({b: 40, a: n - 40}), column
        assert only_key_id(mixed, a)
        assert set(mixed) == TOKEN_COLUMNS - {"sales.customer_id", "sales.product_id"}
        assert only_key_id(file_key_ids(data_dir, ring_b), a)  # files come after the tables
        assert plaintext_state(engine, data_dir, ring_b) == before
        for one_key in (key, key_b):
            with pytest.raises(CryptoError):
                _decrypted_rows(engine, Keyring.from_secrets(one_key))

        resumed = rotate_keys(engine, ring_b, areas, batch_size=40, archive_sink=sink)

        # The rerun skips the committed batch: it reads only the sales rows still under key A ...
        assert resumed.rows["sales"] == n - 40
        # ... and ends exactly where an uninterrupted rotation of the same start ends.
        assert table_dump(engine) == table_dump(clone_engine)
        assert file_dump(data_dir, ring_b) == file_dump(clone_dir, ring_b)
        assert plaintext_state(engine, data_dir, Keyring.from_secrets(key_b)) == before
        # That end, absolutely: with the exports redone (the runbook's next step), key A is nowhere and key
        # B alone gives the input's plaintext everywhere.
        only_b = Keyring.from_secrets(key_b)
        assert {c: set(ids) for c, ids in db_key_ids(engine).items()} == dict.fromkeys(TOKEN_COLUMNS, {b})
        switch_master(data_dir, key, key_b)
        materialize(resources_for(data_dir, backend.url, key_b), ["agg_exports"])
        assert_key_gone(engine, data_dir, only_b, a)
        assert only_key_id(file_key_ids(data_dir, only_b), b)
        assert_plaintext_from_inputs(engine, backend.url, data_dir, key_b, inputs)


def _agg_row(day: date, column: str, token: str, transactions: int, revenue: Decimal | None,
             **extra) -> dict:
    return {"sale_date": day, column: token, "transactions": transactions, "total_quantity": transactions * 2,
            "total_revenue": revenue, "refreshed_at": datetime(2024, 3, 3), **extra}


@pytest.mark.parametrize("batch_size", [1, 10])
def test_aggregate_rows_meeting_an_already_rotated_row_are_merged(backend, batch_size):
    """An aggregate refreshed mid-rotation holds the same day and plaintext under two keys: merged."""
    engine = cached_engine(backend.url)
    keys = [generate_key() for _ in range(3)]  # A and C are retired, B is active
    ring = Keyring.from_secrets(keys[1], [keys[0], keys[2]])
    tok = {name: Tokenizer(Keyring.from_secrets(k)) for name, k in zip("ABC", keys, strict=True)}
    c1, c2, p1 = ("C1", "customer_id"), ("C2", "customer_id"), ("P1", "product_id")
    day = date(2024, 3, 1)
    product = {"product_name": "Kite", "category": "Toys"}
    with engine.begin() as conn:
        conn.execute(insert(agg_sales_by_customer), [
            _agg_row(day, "customer_token", tok["A"].encrypt(*c1), 2, Decimal("10.00")),
            _agg_row(day, "customer_token", tok["B"].encrypt(*c1), 3, Decimal("15.00")),
            _agg_row(day, "customer_token", tok["C"].encrypt(*c1), 1, Decimal("2.50")),
            _agg_row(day, "customer_token", tok["A"].encrypt(*c2), 4, Decimal("1.00"))])
        conn.execute(insert(agg_sales_by_product), [
            _agg_row(day, "product_token", tok["A"].encrypt(*p1), 1, None, **product),
            _agg_row(day, "product_token", tok["C"].encrypt(*p1), 2, Decimal("5.00"), **product)])

    report = rotate_keys(engine, ring, None, batch_size=batch_size)

    b = Tokenizer(Keyring.from_secrets(keys[1]))
    with engine.connect() as conn:
        customers = {r.customer_token: (r.transactions, r.total_quantity, r.total_revenue)
                     for r in conn.execute(select(agg_sales_by_customer))}
        products = [tuple(r) for r in conn.execute(select(
            agg_sales_by_product.c.product_token, agg_sales_by_product.c.product_name,
            agg_sales_by_product.c.transactions, agg_sales_by_product.c.total_revenue))]
    assert customers == {b.encrypt(*c1): (6, 12, Decimal("27.50")), b.encrypt(*c2): (4, 8, Decimal("1.00"))}
    assert products == [(b.encrypt(*p1), "Kite", 3, Decimal("5.00"))]  # SUM ignores NULL
    assert report.merged_rows == Counter({"agg_sales_by_customer": 2, "agg_sales_by_product": 1})


def test_a_token_under_an_unknown_key_stops_the_rotation_without_showing_the_value(tmp_path):
    engine = cached_engine(f"sqlite:///{tmp_path / 'w.db'}")
    stranger, ring = Keyring.from_secrets(generate_key()), Keyring.from_secrets(generate_key())
    row = {"quantity": 1, "sale_date": date(2024, 3, 1), "sale_ts": datetime(2024, 3, 1, 9),
           "source_file": "a.csv", "loaded_at": datetime(2024, 3, 2)}
    good = Tokenizer(ring).encrypt("C-OK", "customer_id")
    with engine.begin() as conn:
        conn.execute(insert(sales), [
            {**row, "transaction_id": "T1", "customer_id": good, "product_id": good},
            {**row, "transaction_id": "T2",
             "customer_id": Tokenizer(stranger).encrypt("SECRET-C9", "customer_id"),
             "product_id": good},
            {**row, "transaction_id": "T3", "customer_id": "PLAINTEXT-C7", "product_id": good}])
    with pytest.raises(RotationError) as raised:
        rotate_keys(engine, ring, None)
    message = str(raised.value)
    assert stranger.active.key_id in message and "T2" in message and "SECRET" not in message
    with engine.begin() as conn:
        conn.execute(sales.delete().where(sales.c.transaction_id == "T2"))
    with pytest.raises(RotationError) as raised:
        rotate_keys(engine, ring, None)
    assert "not a token" in str(raised.value) and "PLAINTEXT" not in str(raised.value)


def test_cli_dry_run_changes_nothing_then_rotation_and_status(data_dir, key, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "day.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"],
                                                  ["T2", "C2", "P1", "x", "2024-03-01T10:00:00"]])
    resources = resources_for(data_dir, url, key, max_reject_rate=1.0)  # one of two rows is a reject
    materialize(resources, PRODUCTS)
    materialize(resources, SALES_CHAIN, DAYS[0])
    a = Keyring.from_secrets(key).active.key_id
    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SALES_PLATFORM_DB_URL", url)
    monkeypatch.setenv("SALES_PLATFORM_ENCRYPTION_KEY", key)  # the master key stays; the keyset rotates
    engine = cached_engine(url)
    ring = Keyring.from_secrets(key)
    # the input's tokens: one loaded row, one rejected row (customer and product each), one product
    tokens = {"sales.customer_id": Counter({a: 1}), "sales.product_id": Counter({a: 1}),
              "sales_rejects.customer_id": Counter({a: 1}), "sales_rejects.product_id": Counter({a: 1}),
              "dim_products.product_token": Counter({a: 1})}
    assert db_key_ids(engine) == tokens and only_key_id(file_key_ids(data_dir, ring), a)

    assert cmd_rotate_keys(argparse.Namespace(batch_size=1, dry_run=True)) == 0
    dry = capsys.readouterr().out
    assert f"{a} (active)=1" in dry and "dry run: nothing changed" in dry
    assert db_key_ids(engine) == tokens and only_key_id(file_key_ids(data_dir, ring), a)  # nothing changed
    keyset_path = data_dir / KEYSET_FILE
    assert len(load_keyset(keyset_path, parse_master_key(key)).keys) == 2  # first key + legacy (migration)

    assert cmd_rotate_keys(argparse.Namespace(batch_size=1, dry_run=False)) == 0
    out, err = capsys.readouterr()
    keyset = load_keyset(keyset_path, parse_master_key(key))
    b = crypto.key_id_text(keyset.primary)
    assert b != a and keyset.entry(a).status == "disabled"  # a new random primary; the old key retired
    # progress on stderr (not a terminal here: one line per batch, rows done of the stale rows counted)
    assert "  sales: 1/1 row(s); batch of 1 row(s), 2 value(s) re-encrypted" in err.splitlines()
    assert "  sales_rejects: 1/1 row(s); batch of 1 row(s), 2 value(s) re-encrypted" in err.splitlines()
    # the dropped file in archive/ and its raw fragment under staging/
    assert "  sealed files: 2 rewritten" in err.splitlines() and "batch of" not in out
    assert "everything is under the active key" in out and f"key {a} retired" in out and key not in out
    assert cmd_key_status(argparse.Namespace()) == 0
    status = capsys.readouterr().out
    assert f"{b} (active)=1" in status and f"{a} (retired)=" not in status and f"retired {a}" not in status
    assert all(Path(p).exists() for p in sealed_files(DataAreas(data_dir)))
    assert db_key_ids(engine) == {column: Counter({b: 1}) for column in tokens}
    only_b = keyset.keyring()
    assert only_b.key_ids == [b]
    assert only_key_id(file_key_ids(data_dir, only_b), b)
    assert_key_gone(engine, data_dir, only_b, a)
    # a second rotate-keys starts a new rotation (a third key), it does not resume the finished one
    assert cmd_rotate_keys(argparse.Namespace(batch_size=100, dry_run=False)) == 0
    third = load_keyset(keyset_path, parse_master_key(key))
    assert crypto.key_id_text(third.primary) not in (a, b) and third.entry(b).status == "disabled"
    c = crypto.key_id_text(third.primary)
    assert db_key_ids(engine) == {column: Counter({c: 1}) for column in tokens}


def test_tokens_in_evolved_columns_and_extras_json_are_rotated(backend):
    """Sensitive columns added by schema evolution, and sensitive keys in extras JSON (also a rescued
    row's extras nested inside a reject's extras), hold tokens: they end under the new key too."""
    engine = cached_engine(backend.url)
    key_a, key_b = generate_key(), generate_key()
    a, only_b = Tokenizer(Keyring.from_secrets(key_a)), Tokenizer(Keyring.from_secrets(key_b))
    with engine.begin() as conn:
        conn.execute(text(add_column_ddl(conn.dialect, "sales", "email")))
    evolved = sales_with(["email"])
    nested = json.dumps({"email": a.encrypt("ann@example.com", "email")}, ensure_ascii=False, sort_keys=True)
    with engine.begin() as conn:
        conn.execute(insert(evolved).values(
            transaction_id="T1", customer_id=a.encrypt("C1", "customer_id"),
            product_id=a.encrypt("P1", "product_id"), quantity=1,
            sale_date=date(2024, 3, 1), sale_ts=datetime(2024, 3, 1, 9), source_file="a.csv",
            loaded_at=datetime(2024, 3, 2), email=a.encrypt("ann@example.com", "email"),
            extras=json.dumps({"note": "ß kept", "phone": a.encrypt("+44 1", "phone")}, ensure_ascii=False)))
        conn.execute(insert(sales_rejects).values(
            stage="cleaning", source_file="a.csv", reason="quantity_not_positive",
            rejected_at=datetime(2024, 3, 2),
            extras=json.dumps({"extras": nested, "iban": a.encrypt("GB00", "iban")})))

    report = rotate_keys(engine, Keyring.from_secrets(key_b, [key_a]), None)

    with engine.connect() as conn:
        row = conn.execute(select(evolved)).mappings().one()
        reject = json.loads(conn.execute(select(sales_rejects.c.extras)).scalar_one())
    extras = json.loads(row["extras"])
    assert only_b.decrypt(row["email"]) == "ann@example.com" and extras["note"] == "ß kept"
    assert only_b.decrypt(extras["phone"]) == "+44 1" and only_b.decrypt(reject["iban"]) == "GB00"
    assert only_b.decrypt(json.loads(reject["extras"])["email"]) == "ann@example.com"
    b = Keyring.from_secrets(key_b).active.key_id
    assert db_key_ids(engine) == {"sales.customer_id": Counter({b: 1}), "sales.product_id": Counter({b: 1}),
                                  "sales.email": Counter({b: 1}), "sales.extras": Counter({b: 1}),
                                  "sales_rejects.extras": Counter({b: 2})}  # the nested token too
    assert report.values == Counter({"sales.customer_id": 1, "sales.product_id": 1, "sales.email": 1,
                                     "sales.extras": 1, "sales_rejects.extras": 1})


def test_each_distinct_token_is_decrypted_once_per_batch(tmp_path, monkeypatch):
    engine = cached_engine(f"sqlite:///{tmp_path / 'w.db'}")
    key_a, key_b = generate_key(), generate_key()
    a = Tokenizer(Keyring.from_secrets(key_a))
    row = {"quantity": 1, "sale_date": date(2024, 3, 1), "sale_ts": datetime(2024, 3, 1, 9),
           "source_file": "a.csv", "loaded_at": datetime(2024, 3, 2),
           "product_id": a.encrypt("P1", "product_id")}
    with engine.begin() as conn:
        conn.execute(insert(sales), [{**row, "transaction_id": f"T{i:02d}",
                                      "customer_id": a.encrypt(f"C{i % 3}", "customer_id")}
                                     for i in range(30)])
    calls: Counter[str] = Counter()
    decrypt = Tokenizer.decrypt

    def counting(self: Tokenizer, token: str, column: str | None = None) -> str:
        calls[token] += 1
        return decrypt(self, token, column)

    monkeypatch.setattr(Tokenizer, "decrypt", counting)

    report = rotate_keys(engine, Keyring.from_secrets(key_b, [key_a]), None, batch_size=10)

    assert report.batches == 3 and report.values["sales.customer_id"] == 30
    assert sum(calls.values()) == report.distinct_tokens == 3 * 4  # 3 customers + 1 product per batch


def test_rotation_progress_draws_one_bar_per_table_on_a_terminal():
    stream = io.StringIO()
    progress = RotationProgress({"sales": 120, "dim_products": 3}, stream=stream, bars=True)
    for items in (50, 50, 20):
        progress(BatchDone("sales", items, 2 * items))
    progress(BatchDone("dim_products", 3, 3))
    progress(BatchDone("sealed files", 1, 1))
    progress.close()
    final = [part.strip() for part in stream.getvalue().replace("\r", "\n").splitlines() if part.strip()]
    assert any(line.startswith("sales: 100%") and "120/120" in line and "re_encrypted=240" in line
               for line in final), final
    assert any(line.startswith("dim_products: 100%") and "3/3" in line for line in final), final
    assert any(line.startswith("sealed files: 1file") for line in final), final
