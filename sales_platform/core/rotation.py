"""Key rotation: every token and sealed file re-encrypted under the active key, resumably.

Deploy the new key as SALES_PLATFORM_ENCRYPTION_KEY with the old one in SALES_PLATFORM_RETIRED_KEYS,
then ``rotate_keys``. It rewrites, in order:

- the token columns of the warehouse, table by table, in batches (keyset pagination on the primary
  key, one transaction per batch). Only values not under the active key are selected, so a rerun
  after an interruption continues where the last committed batch stopped. Columns added to sales
  by schema evolution whose name the contract marks sensitive hold tokens too, as do sensitive keys
  inside the ``extras`` JSON columns;
- the plain Parquet files under staging/ that hold tokens (encrypted layer, rejects), atomically;
- the sealed files under staging/ and archive/ whose header names another key, atomically (written
  beside, then renamed), plus the off-machine archive copy when an ``archive_sink`` is given.

Tokens are deterministic (AES-SIV), so one plaintext maps to exactly one token per key: rotated
tables still group and join, and a rerun of the pipeline with the new key changes nothing.
Once ``token_counts_by_key`` and ``sealed_counts_by_key`` show only the active key, the retired key
can be removed.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)

from sales_platform.core import crypto
from sales_platform.core.crypto import (
    NOT_A_TOKEN,
    CryptoError,
    Keyring,
    Tokenizer,
    b64d,
    key_id_of_token,
    key_id_text,
    open_sealed,
    seal_stream,
    token_prefixes,
)
from sales_platform.core.legacy import KEY_ID_LENGTH, TOKEN_SEPARATOR
from sales_platform.core.schema import DEFAULT_SENSITIVE, EXTRAS_COLUMN
from sales_platform.core.store import PLAIN_SUFFIX, DataAreas, write_plain_table
from sales_platform.core.warehouse.loading import sales_with
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    dim_products,
    sales,
    sales_rejects,
)

TOKEN_HEAD = 9  # characters read to tell a token's key id: "<8 hex>~" (legacy) or 8 of base64url
SEALED_SUFFIX = ".sealed"
ROTATING_SUFFIX = ".rotating"  # a re-sealed file being written, beside the one it replaces
# Columns of the plain Parquet files under staging/ that hold tokens (see pipeline.protect_identifiers
# and landing.Lander._malformed).
STAGED_TOKEN_COLUMNS = ("customer_id", "product_id", "raw_text")
SUMMED_COLUMNS = ("transactions", "total_quantity", "total_revenue")
IN_LIST_CHUNK = 500  # well under SQL Server's 2100 parameters per statement


class RotationError(RuntimeError):
    """A value cannot be rotated. The message names where, never the value (it may be plaintext)."""


@dataclass(frozen=True)
class TokenTable:
    table: Table
    tokens: tuple[str, ...]
    json_columns: tuple[str, ...] = ()  # JSON objects whose sensitive keys hold tokens
    json_keys: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.table.primary_key.columns)

    @property
    def token_in_key(self) -> bool:
        """Rows are identified by their token: rotating one may meet a row already rotated."""
        return any(t in self.key for t in self.tokens)


TOKEN_TABLES: tuple[TokenTable, ...] = (
    TokenTable(sales, ("customer_id", "product_id")),
    TokenTable(sales_rejects, ("customer_id", "product_id", "raw_text")),
    TokenTable(dim_products, ("product_token",)),
    TokenTable(agg_sales_by_product, ("product_token",)),
    TokenTable(agg_sales_by_customer, ("customer_token",)),
)


def token_tables(engine: Engine, sensitive: Sequence[str] = DEFAULT_SENSITIVE) -> tuple[TokenTable, ...]:
    """TOKEN_TABLES plus what schema evolution added: sensitive columns of the live sales table, and
    sensitive keys in the extras JSON of sales and sales_rejects."""
    with engine.connect() as conn:
        live = {c["name"] for c in inspect(conn).get_columns(sales.name)}
    evolved = tuple(sorted(c for c in live if c in sensitive and c not in sales.c))
    keys = tuple(sensitive)
    json_of = {t.name: (EXTRAS_COLUMN,) if keys and EXTRAS_COLUMN in t.c else ()
               for t in (sales, sales_rejects)}
    rejects = TOKEN_TABLES[1]
    return (TokenTable(sales_with(evolved), ("customer_id", "product_id", *evolved), json_of["sales"], keys),
            TokenTable(rejects.table, rejects.tokens, json_of["sales_rejects"], keys),
            *TOKEN_TABLES[2:])


@dataclass(frozen=True)
class BatchDone:
    """Reported to ``progress`` after each committed batch (or each rewritten file)."""

    target: str  # a table name, "staged token files" or "sealed files"
    items: int  # rows read in the batch, or 1 file
    rotated: int  # token values (or files) re-encrypted by it


@dataclass
class RotationReport:
    active_key_id: str
    values: Counter[str] = field(default_factory=Counter)  # "table.column" -> tokens re-encrypted
    rows: Counter[str] = field(default_factory=Counter)  # table -> rows touched
    merged_rows: Counter[str] = field(default_factory=Counter)  # table -> rows merged into a rotated row
    token_files: Counter[str] = field(default_factory=Counter)  # "staging/<layer>" -> files rewritten
    sealed_files: Counter[str] = field(default_factory=Counter)  # "staging/<layer>", "archive"
    batches: int = 0
    distinct_tokens: int = 0  # tokens decrypted and re-encrypted (once per batch or file)

    @property
    def total(self) -> int:
        return sum(self.values.values()) + sum(self.token_files.values()) + sum(self.sealed_files.values())

    def lines(self) -> list[str]:
        out = [f"active key {self.active_key_id}: {self.batches} batch(es), "
               f"{self.distinct_tokens} distinct token(s) re-encrypted"]
        for counts, what in ((self.values, "token value(s) re-encrypted"),
                             (self.merged_rows, "row(s) merged into an existing row"),
                             (self.token_files, "file(s) with tokens rewritten"),
                             (self.sealed_files, "sealed file(s) re-sealed")):
            out += [f"  {name}: {n} {what}" for name, n in sorted(counts.items())]
        if self.total == 0:
            out.append("  nothing to rotate: everything is under the active key")
        return out


Progress = Callable[[BatchDone], None]


class _TokenCache:
    """Old token -> token under the active key; each distinct token is decrypted once."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.active = tokenizer.keyring.active.key_id
        self.done: dict[tuple[str, str], str] = {}

    def stale(self, value: object) -> bool:
        return isinstance(value, str) and key_id_of_token(value) != self.active

    def new(self, token: str, where: str, column: str) -> str:
        """``column`` names the associated data of the token (the column it belongs to)."""
        cached = (token, column)
        if cached not in self.done:
            try:
                self.done[cached] = self.tokenizer.reencrypt(token, column)
            except CryptoError:
                raise RotationError(f"{where}: a value under key id {key_id_of_token(token)} cannot be "
                                    f"decrypted with the keyring {self.tokenizer.keyring.key_ids}; its key "
                                    "is not in the keyset (or, for the previous format, not in "
                                    "SALES_PLATFORM_RETIRED_KEYS)") from None
        return self.done[cached]

    def rotate_json(self, text: str | None, keys: Sequence[str], where: str) -> str | None:
        """The JSON text with its stale tokens under ``keys`` re-encrypted; None when nothing changes."""
        def rotate(key: str, token: str) -> str:
            return self.new(token, f"{where}, key {key}", key) if self.stale(token) else token

        return map_json_tokens(text, keys, rotate)


def map_json_tokens(text: str | None, keys: Sequence[str], fn: Callable[[str, str], str]) -> str | None:
    """Apply ``fn(key, token)`` to the tokens under ``keys`` of a JSON object, also inside a nested
    extras JSON string (sales_rejects keeps a rescued row's extras that way). Returns the new text,
    or None when nothing changed or the text is not a JSON object."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    changed = False
    for key, value in data.items():
        new = value
        if key in keys and isinstance(value, str) and is_token_like(value):
            new = fn(key, value)
        elif key == EXTRAS_COLUMN and isinstance(value, str):
            new = map_json_tokens(value, keys, fn) or value
        if new != value:
            data[key], changed = new, True
    # the writers' own spelling (landing.rescue_extras, records._extras_json)
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str) if changed else None


def is_token_like(value: str) -> bool:
    return key_id_of_token(value) != NOT_A_TOKEN


def key_id_of_head(head: str) -> str:
    """The key id from a token's first TOKEN_HEAD characters (what the SQL counts group by)."""
    if len(head) > KEY_ID_LENGTH and head[KEY_ID_LENGTH] == TOKEN_SEPARATOR:
        return head[:KEY_ID_LENGTH]
    try:
        raw = b64d(head[:8]) if head.startswith("A") and len(head) >= 8 else b""
    except ValueError:
        raw = b""
    return key_id_text(int.from_bytes(raw[1:5], "big")) if raw[:1] == b"\x01" else NOT_A_TOKEN


def rotate_keys(engine: Engine, keyring: Keyring, areas: DataAreas | None, batch_size: int = 5000,
                progress: Progress | None = None,
                archive_sink: Callable[[str, Path], str] | None = None,
                now: datetime | None = None,
                sensitive: Sequence[str] = DEFAULT_SENSITIVE) -> RotationReport:
    """Re-encrypt every token and sealed file not under ``keyring.active`` (see the module doc).

    ``progress`` is called after each committed batch; if it raises, the rotation stops there and a
    rerun continues from the first value still under an old key. ``archive_sink`` (e.g. the blob
    resource's ``put_file``) receives each re-sealed archive file under ``archive/<name>``, like
    the raw_sales asset's archive copy. Rotated aggregate rows get ``refreshed_at = now``, so the
    next agg_exports run re-exports their years with the new tokens. ``sensitive`` is the schema
    contract's list of sensitive column names (their values are tokens too).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(active_key_id=keyring.active.key_id)
    tokenizer = Tokenizer(keyring)
    stamp = now or datetime.now()
    for spec in token_tables(engine, sensitive):
        _rotate_table(engine, spec, tokenizer, batch_size, stamp, report, progress)
    if areas is not None:
        # Exclusive locks: no landing or cleaning reads a file while it is being replaced.
        with areas.lock("intake"), areas.lock("landing"):
            _rotate_token_files(areas, tokenizer, report, progress, tuple(sensitive))
            _reseal_files(areas, keyring, report, progress, archive_sink)
    return report


# --- warehouse tables -----------------------------------------------------------------------------

def _after(columns: list, values: tuple) -> object:
    """(a, b) > (x, y) spelled out: row-value comparison is not portable (SQL Server)."""
    return or_(*(and_(*(c == v for c, v in zip(columns[:i], values[:i], strict=True)), columns[i] > values[i])
                 for i in range(len(columns))))


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _not_under(column, prefixes: tuple[str, ...]):
    """The column's token is not under the key whose token prefixes are given."""
    return and_(*(column.not_like(_like_escaped(p) + "%", escape="\\") for p in prefixes))


def _stale(spec: TokenTable, prefixes: tuple[str, ...]):
    """Rows holding a token not under the active key (or JSON that may hold one)."""
    table = spec.table
    return or_(*(and_(table.c[t].is_not(None), _not_under(table.c[t], prefixes)) for t in spec.tokens),
               *_json_candidates(spec))


def stale_rows(engine: Engine, active_key_id: str,
               sensitive: Sequence[str] = DEFAULT_SENSITIVE) -> dict[str, int]:
    """``{table: rows a rotation to active_key_id will read}`` (progress totals; rows whose JSON only
    may hold a token are counted too, so it is an upper bound)."""
    prefixes = token_prefixes(active_key_id)
    with engine.connect() as conn:
        return {spec.table.name: conn.execute(select(func.count()).select_from(spec.table)
                                              .where(_stale(spec, prefixes))).scalar_one()
                for spec in token_tables(engine, sensitive)}


def _batch_query(spec: TokenTable, prefixes: tuple[str, ...], last: tuple | None, batch_size: int,
                 dialect: str):
    table = spec.table
    key = [table.c[k] for k in spec.key]
    stale = _stale(spec, prefixes)
    wanted = list(table.c) if spec.token_in_key else \
        [*key, *(table.c[t] for t in (*spec.tokens, *spec.json_columns))]
    query = select(*wanted).where(stale).order_by(*key).limit(batch_size)
    if last is not None:
        query = query.where(_after(key, last))
    # Lock the batch's rows: a concurrent writer waits for the batch instead of being overwritten.
    return query if dialect == "sqlite" else query.with_for_update()


def _json_candidates(spec: TokenTable) -> list:
    """Rows whose JSON may hold a sensitive key (checked in Python: JSON is not portable SQL)."""
    return [spec.table.c[c].like(f"%{k}%") for c in spec.json_columns for k in spec.json_keys]


def _rotate_table(engine: Engine, spec: TokenTable, tokenizer: Tokenizer, batch_size: int, now: datetime,
                  report: RotationReport, progress: Progress | None) -> None:
    name = spec.table.name
    prefixes = token_prefixes(tokenizer.keyring.active.key_id)
    last: tuple | None = None
    while True:
        cache = _TokenCache(tokenizer)  # per batch: memory stays bounded on large tables
        with engine.begin() as conn:  # one transaction per batch: an interruption loses one batch at most
            rows = [dict(r) for r in conn.execute(
                _batch_query(spec, prefixes, last, batch_size, engine.dialect.name)).mappings()]
            if not rows:
                return
            if spec.token_in_key:
                changed = _replace_keyed_rows(conn, spec, rows, cache, now, report)
            else:
                changed = _update_in_place(conn, spec, rows, cache)
        last = tuple(rows[-1][k] for k in spec.key)
        report.batches += 1
        report.rows[name] += len(rows)
        report.values.update({f"{name}.{column}": n for column, n in changed.items()})
        report.distinct_tokens += len(cache.done)
        if progress is not None:
            progress(BatchDone(name, len(rows), sum(changed.values())))


def _key_params(spec: TokenTable, row: Mapping) -> dict:
    return {f"k_{k}": row[k] for k in spec.key}


def _key_match(spec: TokenTable) -> list:
    return [spec.table.c[k] == bindparam(f"k_{k}") for k in spec.key]


def _where(spec: TokenTable, row: Mapping) -> str:
    return f"{spec.table.name} row {', '.join(f'{k}={row[k]}' for k in spec.key if k not in spec.tokens)}"


def _update_in_place(conn: Connection, spec: TokenTable, rows: list[dict],
                     cache: _TokenCache) -> Counter[str]:
    """Tables whose key holds no token: one UPDATE per row and column, matched on key and old value."""
    changed: Counter[str] = Counter()
    for column in spec.tokens:
        params = [{**_key_params(spec, row), "old_token": row[column],
                   "new_token": cache.new(row[column], f"{_where(spec, row)}, column {column}", column)}
                  for row in rows if cache.stale(row[column])]
        if params:
            statement = (update(spec.table)
                         .where(*_key_match(spec), spec.table.c[column] == bindparam("old_token"))
                         .values({column: bindparam("new_token")}))
            conn.execute(statement, params)
            changed[column] += len(params)
    for column in spec.json_columns:
        params = []
        for row in rows:
            new = cache.rotate_json(row[column], spec.json_keys, f"{_where(spec, row)}, column {column}")
            if new is not None:
                params.append({**_key_params(spec, row), "old_token": row[column], "new_token": new})
        if params:
            statement = (update(spec.table)
                         .where(*_key_match(spec), spec.table.c[column] == bindparam("old_token"))
                         .values({column: bindparam("new_token")}))
            conn.execute(statement, params)
            changed[column] += len(params)
    return changed


def _replace_keyed_rows(conn: Connection, spec: TokenTable, rows: list[dict], cache: _TokenCache,
                        now: datetime, report: RotationReport) -> Counter[str]:
    """Aggregate tables: the token is part of the primary key.

    Usually a row simply gets its new key. But a row for the same day and plaintext may already
    exist under the active key (the aggregate was refreshed mid-rotation), or two old keys may map to
    the same new one: those rows are merged (counts summed), as the aggregate would have grouped them.
    """
    (token,) = spec.tokens
    targets: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for row in rows:
        new = {**row, token: cache.new(row[token], _where(spec, row), token), **_stamp(spec, now)}
        targets[tuple(new[k] for k in spec.key)].append((row, new))
    existing = _existing_rows(conn, spec, targets)
    moves = [pair for key, pairs in targets.items() if len(pairs) == 1 and key not in existing
             for pair in pairs]
    if moves:
        statement = (update(spec.table).where(*_key_match(spec))
                     .values({token: bindparam("new_token"),
                              **{c: bindparam("now") for c in _stamp(spec, now)}}))
        conn.execute(statement, [{**_key_params(spec, old), "new_token": new[token], "now": now}
                                 for old, new in moves])
    for key, pairs in targets.items():
        if len(pairs) > 1 or key in existing:
            _merge_into(conn, spec, pairs, existing.get(key), now)
            report.merged_rows[spec.table.name] += len(pairs) - (0 if key in existing else 1)
    return Counter({token: len(rows)})


def _stamp(spec: TokenTable, now: datetime) -> dict:
    """Aggregates are re-stamped (their exports are redone); a table without the column is not."""
    return {"refreshed_at": now} if "refreshed_at" in spec.table.c else {}


def _existing_rows(conn: Connection, spec: TokenTable, targets: Mapping[tuple, list]) -> dict[tuple, dict]:
    """Rows already holding one of ``targets``' keys (under the active key, so not in the batch)."""
    table = spec.table
    found: dict[tuple, dict] = {}
    columns = list(spec.key)
    for start in range(0, len(targets), IN_LIST_CHUNK):
        chunk = list(targets)[start:start + IN_LIST_CHUNK]
        where = [table.c[c].in_(sorted({k[i] for k in chunk})) for i, c in enumerate(columns)]
        for row in conn.execute(select(table).where(*where)).mappings():
            key = tuple(row[c] for c in columns)
            if key in targets:
                found[key] = dict(row)
    return found


def _merge_into(conn: Connection, spec: TokenTable, pairs: list[tuple[dict, dict]], existing: dict | None,
                now: datetime) -> None:
    table = spec.table
    conn.execute(delete(table).where(*_key_match(spec)), [_key_params(spec, old) for old, _ in pairs])
    rows = [new for _, new in pairs]
    if existing is not None:
        rows.insert(0, existing)
    merged = rows[0]
    for row in rows[1:]:
        merged = _merge(merged, row)
    merged.update(_stamp(spec, now))
    if existing is None:
        conn.execute(insert(table), [merged])
    else:
        values = {c: v for c, v in merged.items() if c not in spec.key}
        conn.execute(update(table).where(*(table.c[k] == merged[k] for k in spec.key)).values(values))


def _merge(a: dict, b: dict) -> dict:
    """Two aggregate rows of one group: counts summed (SQL SUM semantics for NULL), labels kept."""
    out = dict(a)
    for column, value in b.items():
        if column in SUMMED_COLUMNS:
            if value is not None:
                out[column] = value if out[column] is None else out[column] + value
        elif out.get(column) is None:
            out[column] = value
    return out


def _prefix_expression(column, dialect: str):
    # literal numbers, not bound parameters: SQL Server matches GROUP BY to the select list textually
    start, length = literal_column("1"), literal_column(str(TOKEN_HEAD))
    return (func.substring if dialect == "mssql" else func.substr)(column, start, length)


def token_counts_by_key(engine: Engine,
                        sensitive: Sequence[str] = DEFAULT_SENSITIVE) -> dict[str, dict[str, int]]:
    """``{"table.column": {key_id: values}}`` for every token column (NULLs not counted); tokens in
    extras JSON are counted under ``table.extras``."""
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for spec in token_tables(engine, sensitive):
            for column in spec.tokens:
                prefix = _prefix_expression(spec.table.c[column], engine.dialect.name).label("prefix")
                rows = conn.execute(select(prefix, func.count()).where(spec.table.c[column].is_not(None))
                                    .group_by(prefix)).all()
                per_key: Counter[str] = Counter()
                for head, n in rows:
                    per_key[key_id_of_head(head or "")] += n
                counts[f"{spec.table.name}.{column}"] = dict(sorted(per_key.items()))
            for column in spec.json_columns:
                counts[f"{spec.table.name}.{column}"] = _json_counts(conn, spec, column)
    return counts


def _json_counts(conn: Connection, spec: TokenTable, column: str) -> dict[str, int]:
    per_key: Counter[str] = Counter()
    rows = conn.execution_options(yield_per=5000).execute(
        select(spec.table.c[column]).where(or_(*_json_candidates(spec))))

    def count(_key: str, token: str) -> str:
        per_key[key_id_of_token(token)] += 1
        return token

    for (text,) in rows:
        map_json_tokens(text, spec.json_keys, count)
    return dict(sorted(per_key.items()))


# --- files ---------------------------------------------------------------------------------------

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
    """The key of ``keyring`` that opens a sealed file (Tink's streaming format names no key: its first
    segment is tried with each key), or the key id in a legacy SPSEAL1 header."""
    with open(path, "rb") as handle:
        return crypto.sealed_key_id(keyring, handle)


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


def _rotate_token_files(areas: DataAreas, tokenizer: Tokenizer, report: RotationReport,
                        progress: Progress | None, sensitive: tuple[str, ...]) -> None:
    for path in staged_token_files(areas):
        cache = _TokenCache(tokenizer)
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


def _reseal_files(areas: DataAreas, keyring: Keyring, report: RotationReport, progress: Progress | None,
                  archive_sink: Callable[[str, Path], str] | None) -> None:
    _clear_interrupted(areas)
    for path in sealed_files(areas):
        if sealed_key_id(path, keyring) == keyring.active.key_id:
            continue
        in_archive = path.parent == areas.archive
        reseal_file(keyring, path, (lambda tmp, p=path: archive_sink(f"archive/{p.name}", tmp))
                    if in_archive and archive_sink is not None else None)
        report.sealed_files[_label(areas, path)] += 1
        if progress is not None:
            progress(BatchDone("sealed files", 1, 1))


def reseal_file(keyring: Keyring, path: Path, before_replace: Callable[[Path], object] | None = None) -> None:
    """Decrypt ``path`` with the keyring and seal it again under the active key, atomically.

    Streams segment by segment (archived drops can be large). ``before_replace`` gets the new file
    first (e.g. to upload the off-machine copy): if it fails, the old file stays and a rerun retries.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}{ROTATING_SUFFIX}")
    try:
        with open(path, "rb") as source, open(tmp, "wb") as out:
            try:
                seal_stream(keyring.active, open_sealed(keyring, source), out)
            except CryptoError as exc:
                raise RotationError(f"{path}: {exc}") from None
            out.flush()
            os.fsync(out.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

