"""A transaction id on two sale days: every copy is rejected as ``duplicate_across_days``.

``sales`` is keyed on transaction_id alone, so a day's load must not take over a row of another
day. The rule is symmetric and independent of load order: when a staged row's id is in ``sales``
on another day, or already rejected for this reason on another day, the staged row and the other
day's row both go to ``sales_rejects`` (stage ``conflict``, each on its own day) and the other
day's row leaves ``sales``. A later load that no longer has the id leaves the other day's reject
alone but names that day for a reload (``days_no_longer_in_conflict``), so its row comes back.
All statements are set-based SQLAlchemy Core and compile for every dialect.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    String,
    Table,
    and_,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import aliased

from sales_platform.core.warehouse.records import CONFLICT_STAGE
from sales_platform.core.warehouse.tables import sales_rejects

DUPLICATE_ACROSS_DAYS = "duplicate_across_days"


class CrossDayConflicts:
    def __init__(self, stage: Table, target: Table, day: date) -> None:
        self.stage, self.target, self.day = stage, target, day

    def _ids_elsewhere(self):
        """Staged ids that are in sales, or conflict-rejected, on another day."""
        s, t, r = self.stage, self.target, sales_rejects
        in_sales = exists().where(t.c.transaction_id == s.c.transaction_id,
                                  t.c.sale_date != self.day)
        rejected = exists().where(r.c.transaction_id == s.c.transaction_id,
                                  r.c.stage == CONFLICT_STAGE, r.c.sale_date != self.day)
        return select(s.c.transaction_id).where(or_(in_sales, rejected))

    def settle(self, conn: Connection, now: datetime) -> tuple[int, int]:
        """Move conflicting rows to rejects; returns (staged rows rejected, other rows evicted)."""
        ids = conn.execute(self._ids_elsewhere()).scalars().all()
        if not ids:
            return 0, 0
        s, t = self.stage, self.target
        rejected = self._reject(conn, s, s.c.transaction_id.in_(ids), literal(self.day, Date),
                                f"also on another day than {self.day}", now)
        others = and_(t.c.transaction_id.in_(ids), t.c.sale_date != self.day)
        evicted = self._reject(conn, t, others, t.c.sale_date,
                               f"also on {self.day}", now)
        conn.execute(delete(t).where(others))
        conn.execute(delete(s).where(s.c.transaction_id.in_(ids)))
        return rejected, evicted

    @staticmethod
    def _reject(conn: Connection, source: Table, where, sale_date, detail: str,
                now: datetime) -> int:
        c = source.c
        rows = select(
            literal(CONFLICT_STAGE, String).label("stage"), sale_date.label("sale_date"),
            c.source_file, c.source_sha256, c.source_row,
            literal(DUPLICATE_ACROSS_DAYS, String).label("reason"),
            literal(detail, String).label("detail"), c.transaction_id, c.customer_id, c.product_id,
            cast(c.quantity, String).label("quantity"), cast(c.sale_ts, String).label("timestamp"),
            literal(now, DateTime).label("rejected_at"),
        ).where(where)
        columns = ["stage", "sale_date", "source_file", "source_sha256", "source_row", "reason",
                   "detail", "transaction_id", "customer_id", "product_id", "quantity", "timestamp",
                   "rejected_at"]
        return conn.execute(insert(sales_rejects).from_select(columns, rows)).rowcount or 0

    def days_no_longer_in_conflict(self, conn: Connection) -> list[str]:
        """Days holding a conflict reject whose id now has no copy on any other day."""
        r, t = sales_rejects, self.target
        other = aliased(sales_rejects)
        lonely = and_(
            r.c.stage == CONFLICT_STAGE, r.c.sale_date != self.day,
            ~exists().where(t.c.transaction_id == r.c.transaction_id, t.c.sale_date != r.c.sale_date),
            ~exists().where(other.c.transaction_id == r.c.transaction_id,
                            other.c.stage == CONFLICT_STAGE, other.c.sale_date != r.c.sale_date))
        days = conn.execute(select(func.distinct(r.c.sale_date)).where(lonely)).scalars().all()
        return sorted(d.isoformat() if hasattr(d, "isoformat") else str(d) for d in days)
