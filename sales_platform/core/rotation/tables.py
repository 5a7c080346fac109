"""Rotating the warehouse's token columns: which tables hold tokens, keyset pagination in batches
(one transaction each), rows whose key is a token merged when the rotated key already exists, and
the per-key counts ``key-status`` shows."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

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

from sales_platform.core.crypto import (
    Tokenizer,
    key_id_of_token,
    token_prefixes,
)
from sales_platform.core.rotation.tokens import (
    TOKEN_HEAD,
    BatchDone,
    Progress,
    RotationReport,
    TokenCache,
    key_id_of_head,
    map_json_tokens,
)
from sales_platform.core.schema import DEFAULT_SENSITIVE, EXTRAS_COLUMN
from sales_platform.core.warehouse.loading import sales_with
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    dim_products,
    sales,
    sales_rejects,
)

SUMMED_COLUMNS = ("transactions", "total_quantity", "total_revenue")
IN_LIST_CHUNK = 500  # well under SQL Server's 2100 parameters per statement


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


def rotate_table(engine: Engine, spec: TokenTable, tokenizer: Tokenizer, batch_size: int, now: datetime,
                  report: RotationReport, progress: Progress | None) -> None:
    name = spec.table.name
    prefixes = token_prefixes(tokenizer.keyring.active.key_id)
    last: tuple | None = None
    while True:
        cache = TokenCache(tokenizer)  # per batch: memory stays bounded on large tables
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
                     cache: TokenCache) -> Counter[str]:
    """Tables whose key holds no token: one UPDATE per row and column, matched on key and old value."""
    changed: Counter[str] = Counter()
    for column in spec.tokens:
        params = [{**_key_params(spec, row), "old_token": row[column],
                   "new_token": cache.new(row[column], f"{_where(spec, row)}, column {column}", column)}
                  for row in rows if cache.stale(row[column])]
        changed[column] += _swap_values(conn, spec, column, params)
    for column in spec.json_columns:
        params = []
        for row in rows:
            new = cache.rotate_json(row[column], spec.json_keys, f"{_where(spec, row)}, column {column}")
            if new is not None:
                params.append({**_key_params(spec, row), "old_token": row[column], "new_token": new})
        changed[column] += _swap_values(conn, spec, column, params)
    return changed


def _swap_values(conn: Connection, spec: TokenTable, column: str, params: list[dict]) -> int:
    """``column`` set from old_token to new_token in the rows the params' keys match; their count."""
    if params:
        conn.execute(update(spec.table)
                     .where(*_key_match(spec), spec.table.c[column] == bindparam("old_token"))
                     .values({column: bindparam("new_token")}), params)
    return len(params)


def _replace_keyed_rows(conn: Connection, spec: TokenTable, rows: list[dict], cache: TokenCache,
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


