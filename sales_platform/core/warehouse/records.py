"""Rejects, file ledger and product dimension writes (small tables; plain SQLAlchemy Core)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine, delete, func, insert, select, update

from sales_platform.core.warehouse.tables import (
    dim_products,
    file_ledger,
    sales,
    sales_rejects,
    schema_history,
)

REJECT_TEXT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp",
                       "detail", "raw_text")
LEDGER_RECEIVED = "received"
LEDGER_LANDED = "landed"
LEDGER_LOADED = "loaded"
LEDGER_QUARANTINED = "quarantined"
LEDGER_DUPLICATE = "skipped_duplicate"
LEDGER_SUPERSEDED = "superseded"


NUL_REPLACEMENT = "\ufffd"
ROUTING_COLUMNS = frozenset({"source_file", "source_row", "reason", "sale_ts"})


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
    out["source_row"] = frame["source_row"].astype("Int64").astype(object) if "source_row" in frame \
        else None
    out["reason"] = frame["reason"]
    records = out.to_dict("records")
    for record in records:
        if record["source_row"] is pd.NA:
            record["source_row"] = None
        record.update(stage=stage, sale_date=sale_date, source_sha256=sha, rejected_at=now)
    return records


def replace_day_rejects(engine: Engine, day: date, frames: Iterable[pd.DataFrame],
                        now: datetime) -> int:
    """Rejects of a cleaned day, replacing those of an earlier run of the same day."""
    written = 0
    with engine.begin() as conn:
        conn.execute(delete(sales_rejects).where(sales_rejects.c.stage == "cleaning",
                                                 sales_rejects.c.sale_date == day))
        for frame in frames:
            records = _reject_records(frame, "cleaning", day, None, now)
            if records:
                conn.execute(insert(sales_rejects), records)
                written += len(records)
    return written


def replace_file_rejects(engine: Engine, file_name: str, sha: str, frame: pd.DataFrame | None,
                         now: datetime) -> int:
    """Landing rejects of a file (rows with no valid sale date, malformed records)."""
    with engine.begin() as conn:
        conn.execute(delete(sales_rejects).where(sales_rejects.c.stage == "landing",
                                                 sales_rejects.c.source_file == file_name))
        if frame is None or not len(frame):
            return 0
        records = _reject_records(frame, "landing", None, sha, now)
        conn.execute(insert(sales_rejects), records)
        return len(records)


@dataclass
class LedgerEntry:
    file_name: str
    sha256: str
    size_bytes: int
    status: str
    rows_read: int | None = None
    rows_landed: int | None = None
    rows_rejected: int | None = None
    days_touched: Sequence[str] = ()
    error: str | None = None
    archive_path: str | None = None
    code_version: str | None = None


def ledger_record(engine: Engine, entry: LedgerEntry, now: datetime) -> None:
    """Insert or update the ledger row of (file name, sha256)."""
    values = {**entry.__dict__, "days_touched": json.dumps(list(entry.days_touched)),
              "processed_at": now}
    key = (file_ledger.c.file_name == entry.file_name) & (file_ledger.c.sha256 == entry.sha256)
    with engine.begin() as conn:
        found = conn.execute(select(file_ledger.c.file_id).where(key)).first()
        if found:
            conn.execute(update(file_ledger).where(key).values(**values))
        else:
            conn.execute(insert(file_ledger).values(**values, received_at=now))


def ledger_supersede(engine: Engine, file_name: str, keep_sha: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(file_ledger)
            .where(file_ledger.c.file_name == file_name, file_ledger.c.sha256 != keep_sha,
                   file_ledger.c.status.in_([LEDGER_LANDED, LEDGER_LOADED]))
            .values(status=LEDGER_SUPERSEDED)
        )


def ledger_landed_by_sha(engine: Engine, sha: str) -> dict | None:
    """A file with this content already landed (under any name), if any."""
    with engine.connect() as conn:
        row = conn.execute(
            select(file_ledger).where(file_ledger.c.sha256 == sha,
                                      file_ledger.c.status.in_([LEDGER_LANDED, LEDGER_LOADED]))
        ).mappings().first()
    return dict(row) if row else None


def ledger_awaiting_load(engine: Engine) -> list[dict]:
    """Landed files whose days are not all loaded yet (what the load sensor acts on)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(file_ledger.c.file_name, file_ledger.c.sha256, file_ledger.c.days_touched)
            .where(file_ledger.c.status == LEDGER_LANDED).order_by(file_ledger.c.file_id)
        ).mappings().all()
    return [{**r, "days": json.loads(r["days_touched"] or "[]")} for r in rows]


def ledger_by_sha(engine: Engine, sha: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(file_ledger).where(file_ledger.c.sha256 == sha)).mappings().all()
    return [dict(r) for r in rows]


def ledger_entries_for_day(engine: Engine, day: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(file_ledger.c.file_name, file_ledger.c.sha256, file_ledger.c.status)
            .where(file_ledger.c.days_touched.like(f'%"{day}"%'),
                   file_ledger.c.status.in_([LEDGER_LANDED, LEDGER_LOADED]))
        ).mappings().all()
    return [dict(r) for r in rows]


def ledger_mark_loaded(engine: Engine, day: str, now: datetime) -> None:
    """Files whose every touched day is loaded move from landed to loaded."""
    with engine.begin() as conn:
        for row in conn.execute(
            select(file_ledger.c.file_id, file_ledger.c.days_touched)
            .where(file_ledger.c.status == LEDGER_LANDED,
                   file_ledger.c.days_touched.like(f'%"{day}"%'))
        ).all():
            days = json.loads(row.days_touched or "[]")
            loaded = conn.execute(
                select(func.count(func.distinct(sales.c.sale_date)))
                .where(sales.c.sale_date.in_([date.fromisoformat(d) for d in days]))
            ).scalar_one()
            if loaded >= len(days):
                conn.execute(update(file_ledger).where(file_ledger.c.file_id == row.file_id)
                             .values(status=LEDGER_LOADED, processed_at=now))


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


def known_product_ids(engine: Engine) -> frozenset[str] | None:
    """Product ids of the dimension, or None when it is empty (the rule cannot apply)."""
    with engine.connect() as conn:
        ids = conn.execute(select(dim_products.c.product_id)).scalars().all()
    return frozenset(ids) if ids else None


def upsert_products(engine: Engine, products: pd.DataFrame) -> dict[str, int]:
    """Insert or update products by id (the dimension is small: thousands of rows)."""
    inserted = updated = 0
    with engine.begin() as conn:
        existing = {r.product_id: r for r in conn.execute(select(dim_products)).all()}
        for record in products.to_dict("records"):
            old = existing.get(record["product_id"])
            if old is None:
                conn.execute(insert(dim_products).values(**record))
                inserted += 1
            elif any(getattr(old, k) != v for k, v in record.items() if k != "updated_at"):
                conn.execute(update(dim_products)
                             .where(dim_products.c.product_id == record["product_id"])
                             .values(**record))
                updated += 1
    return {"inserted": inserted, "updated": updated,
            "unchanged": len(products) - inserted - updated}
