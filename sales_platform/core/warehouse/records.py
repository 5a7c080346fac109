"""Rejects, file ledger and product dimension writes (small tables; plain SQLAlchemy Core)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert, select, update

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.warehouse.locks import claim_snapshot, take_lock
from sales_platform.core.warehouse.tables import (
    dim_products,
    sales_rejects,
    schema_history,
)

REJECT_TEXT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp",
                       "detail", "raw_text")


NUL_REPLACEMENT = "\ufffd"
ROUTING_COLUMNS = frozenset({"source_file", "source_row", "reason", "sale_ts", "source_sha256"})
CLEANING_STAGE = "cleaning"
CONFLICT_STAGE = "conflict"  # decided by the load: a transaction id on two days
DAY_STAGES = (CLEANING_STAGE, CONFLICT_STAGE)


def _extras_json(frame: pd.DataFrame) -> list[str | None]:
    """A rejected row's other columns (new ones from schema evolution) kept as JSON: nothing lost."""
    others = [c for c in frame.columns if c not in REJECT_TEXT_COLUMNS and c not in ROUTING_COLUMNS]
    if not others:
        return [None] * len(frame)
    records = frame[others].astype(object).where(frame[others].notna(), None).to_dict("records")
    return [json.dumps(r, ensure_ascii=False, sort_keys=True, default=str) for r in records]


def _reject_records(frame: pd.DataFrame, stage: str, sale_date: date | None, sha: str | None,
                    now: datetime) -> list[dict]:
    out = pd.DataFrame(index=frame.index)
    out["extras"] = _extras_json(frame)
    for column in REJECT_TEXT_COLUMNS:
        values = frame[column] if column in frame else pd.Series(None, index=frame.index)
        values = values.astype(object).where(values.notna(), None)
        # PostgreSQL text cannot hold NUL (0x00): the reject is kept, its reason says why
        out[column] = values.map(lambda v: v.replace("\x00", NUL_REPLACEMENT) if isinstance(v, str) else v)
    out["source_file"] = frame["source_file"]
    if "source_sha256" in frame:
        out["source_sha256"] = frame["source_sha256"]
    out["source_row"] = frame["source_row"].astype("Int64").astype(object) if "source_row" in frame \
        else None
    out["reason"] = frame["reason"]
    records = out.to_dict("records")
    for record in records:
        if record["source_row"] is pd.NA:
            record["source_row"] = None
        record.update(stage=stage, sale_date=sale_date, rejected_at=now)
        record.setdefault("source_sha256", sha)
    return records


def replace_day_rejects(engine: Engine, day: date, frames: Iterable[pd.DataFrame],
                        now: datetime, snapshot_ns: int | None = None) -> int | None:
    """Rejects of a cleaned day, replacing those of an earlier run of the same day.

    Under a per-day lock: two runs of one day at once (READ COMMITTED on PostgreSQL would let both
    delete nothing of the other's and insert) end with one copy of the day's rejects. The day's
    cross-day conflict rejects go too: the day's load decides them again. Returns None, writing
    nothing, when rejects from a newer snapshot of the landed rows are already there.
    """
    written = 0
    with engine.begin() as conn:
        take_lock(conn, f"rejects:{day.isoformat()}")
        if snapshot_ns is not None and not claim_snapshot(conn, day, "cleaned_ns", snapshot_ns):
            return None
        conn.execute(delete(sales_rejects).where(sales_rejects.c.stage.in_(DAY_STAGES),
                                                 sales_rejects.c.sale_date == day))
        for frame in frames:
            records = _reject_records(frame, CLEANING_STAGE, day, None, now)
            if records:
                conn.execute(insert(sales_rejects), records)
                written += len(records)
    return written


def cross_day_ids(engine: Engine, day: date) -> list[str]:
    """Transaction ids rejected on ``day`` because they are also on another day."""
    with engine.connect() as conn:
        return sorted(set(conn.execute(select(sales_rejects.c.transaction_id).where(
            sales_rejects.c.sale_date == day,
            sales_rejects.c.reason == "duplicate_across_days")).scalars()))


def replace_file_rejects(conn: Connection, file_name: str, sha: str, frame: pd.DataFrame | None,
                         now: datetime) -> int:
    """Landing rejects of a file version (no valid sale date, malformed records), replacing those
    of the earlier version of the same exact name."""
    conn.execute(delete(sales_rejects).where(sales_rejects.c.stage == "landing",
                                             sales_rejects.c.source_file == file_name))
    if frame is None or not len(frame):
        return 0
    records = _reject_records(frame.drop(columns=["source_sha256"], errors="ignore"),
                              "landing", None, sha, now)
    conn.execute(insert(sales_rejects), records)
    return len(records)


def record_source_schema(engine: Engine, file_name: str, sha: str, columns: Sequence[str],
                         now: datetime) -> bool:
    """Record a file's column set in schema_history; True when this layout was never seen before."""
    layout = json.dumps(list(columns))
    with engine.begin() as conn:
        seen = conn.execute(select(schema_history.c.history_id).where(
            schema_history.c.kind == "source_schema", schema_history.c.columns == layout)).first()
        conn.execute(insert(schema_history).values(
            kind="source_schema", file_name=file_name, sha256=sha, columns=layout,
            detail=None if seen else "first seen", recorded_at=now))
    return seen is None


def record_table_change(engine: Engine, table: str, columns: Sequence[str], detail: str,
                        now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(insert(schema_history).values(kind="table_change", table_name=table,
                                                   columns=json.dumps(list(columns)), detail=detail,
                                                   recorded_at=now))


def source_layouts(engine: Engine, shas: Sequence[str]) -> set[str]:
    """Distinct column layouts of the given files."""
    if not shas:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(select(schema_history.c.columns).where(
            schema_history.c.kind == "source_schema", schema_history.c.sha256.in_(list(shas))))
            .scalars())


def known_product_ids(engine: Engine, tokenizer: Tokenizer) -> frozenset[str] | None:
    """Product ids of the dimension (its tokens decrypted in memory), or None when it is empty."""
    with engine.connect() as conn:
        tokens = conn.execute(select(dim_products.c.product_token)).scalars().all()
    return frozenset(tokenizer.decrypt(t, "product_id") for t in tokens) if tokens else None


def upsert_products(engine: Engine, products: pd.DataFrame,
                    remove_missing: bool = False) -> dict[str, int]:
    """Insert or update products by token (the dimension is small: thousands of rows).

    ``products`` carries product_token, name, category, unit_price, updated_at; a plaintext
    product_id column, if present, is never written. ``remove_missing`` deletes the products
    that are not in ``products`` (the catalogue is the system of record).
    """
    columns = [c.name for c in dim_products.columns]
    inserted = updated = removed = 0
    with engine.begin() as conn:
        if remove_missing:
            gone = set(conn.execute(select(dim_products.c.product_token)).scalars()) \
                - set(products["product_token"])
            for token in gone:
                conn.execute(delete(dim_products).where(dim_products.c.product_token == token))
            removed = len(gone)
        existing = {r.product_token: r for r in conn.execute(select(dim_products)).all()}
        for record in products[columns].to_dict("records"):
            old = existing.get(record["product_token"])
            if old is None:
                conn.execute(insert(dim_products).values(**record))
                inserted += 1
            elif any(getattr(old, k) != v for k, v in record.items() if k != "updated_at"):
                conn.execute(update(dim_products)
                             .where(dim_products.c.product_token == record["product_token"])
                             .values(**record))
                updated += 1
    return {"inserted": inserted, "updated": updated,
            "unchanged": len(products) - inserted - updated, "removed": removed}
