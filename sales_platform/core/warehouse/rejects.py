"""The one writer of ``sales_rejects``: a rejected row with its reason, stage and everything it held.

A row is rejected in the transaction of the stage that rejects it (landing, cleaning, the load), so
no row is ever in neither table (see core/ownership.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert, select

from sales_platform.core.warehouse.locks import claim_snapshot, take_lock
from sales_platform.core.warehouse.tables import sales_rejects

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
