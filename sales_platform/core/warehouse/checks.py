"""Queries behind the sales asset's checks (Dagster-free, so they are tested on their own)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, Engine, and_, func, or_, select

from sales_platform.core.warehouse.conflicts import live_version
from sales_platform.core.warehouse.tables import sales, sales_rejects

CONFLICT_REASONS = ("duplicate_across_days", "duplicate_conflicting")


def day_row_count(conn: Connection, day: str) -> int:
    return conn.execute(select(func.count()).select_from(sales)
                        .where(sales.c.sale_date == date.fromisoformat(day))).scalar_one()


def duplicate_transaction_ids(engine: Engine, days: list[str], limit: int = 50) -> list[tuple[str, str]]:
    """(day, transaction id) pairs that break transaction identity on the given days.

    The primary key already makes an id unique inside ``sales``; what can go wrong is an id loaded
    while a conflicting copy of it (on another day, or with other content) was rejected, or an id
    stored in a form other than its normalized one (two case variants would then be two sales).
    """
    dates = [date.fromisoformat(d) for d in days]
    # only live versions' rejects: a superseded version's reject stays on a day not re-run yet
    # and no longer makes a conflict (the loader counts copies the same way)
    rejected = select(sales_rejects.c.transaction_id).where(
        sales_rejects.c.reason.in_(CONFLICT_REASONS), live_version(sales_rejects)).scalar_subquery()
    not_normal = sales.c.transaction_id != func.upper(func.trim(sales.c.transaction_id))
    query = (select(sales.c.sale_date, sales.c.transaction_id)
             .where(and_(sales.c.sale_date.in_(dates),
                         or_(sales.c.transaction_id.in_(rejected), not_normal)))
             .order_by(sales.c.sale_date, sales.c.transaction_id).limit(limit))
    with engine.connect() as conn:
        return [(d.isoformat() if hasattr(d, "isoformat") else str(d), t)
                for d, t in conn.execute(query).all()]
