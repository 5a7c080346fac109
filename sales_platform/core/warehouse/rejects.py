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

from sales_platform.core.limits import storable_text
from sales_platform.core.warehouse.locks import claim_snapshot, take_lock
from sales_platform.core.warehouse.tables import sales_rejects

REJECT_TEXT_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp",
                       "detail", "raw_text")

ROUTING_COLUMNS = frozenset({"source_file", "source_row", "reason", "sale_ts", "source_sha256"})
CLEANING_STAGE = "cleaning"
CONFLICT_STAGE = "conflict"  # decided by the load: a transaction id on two days
DAY_STAGES = (CLEANING_STAGE, CONFLICT_STAGE)


def _value(value: object) -> object:
    """A cell as the database takes it: missing (None, NaN, NA, NaT) as None, numpy scalars as
    Python ones."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _text(value: object) -> object:
    # PostgreSQL text cannot hold NUL (0x00): replaced the same way on every backend
    return storable_text(_value(value))


def _reject_records(frame: pd.DataFrame, stage: str, sale_date: date | None, sha: str | None,
                    now: datetime) -> list[dict]:
    """One insert record per rejected row; a row's other columns (new ones from schema evolution)
    kept as JSON in ``extras``: nothing lost. Plain Python over the rows: rejects come in small
    frames, where pandas' per-column work cost more than the rows."""
    others = [c for c in frame.columns if c not in REJECT_TEXT_COLUMNS and c not in ROUTING_COLUMNS]
    records = []
    for row in frame.to_dict("records"):
        extras = None
        if others:
            extras = json.dumps({c: _value(row[c]) for c in others}, ensure_ascii=False,
                                sort_keys=True, default=str)
        source_row = _value(row.get("source_row"))
        file_sha = _value(row.get("source_sha256"))
        records.append({
            "extras": extras, **{c: _text(row.get(c)) for c in REJECT_TEXT_COLUMNS},
            "source_file": row["source_file"], "source_sha256": file_sha if file_sha else sha,
            "source_row": int(source_row) if source_row is not None else None,
            "reason": row["reason"], "stage": stage, "sale_date": sale_date, "rejected_at": now})
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
