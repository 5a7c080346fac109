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

from collections.abc import Iterable
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
    update,
)

from sales_platform.core.warehouse.rejects import CONFLICT_STAGE
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects

LIVE_STATES = ("landed", "loaded", "blocked")  # as in ledger.LIVE (that module imports this one)

DUPLICATE_ACROSS_DAYS = "duplicate_across_days"


WITHIN_DAY_REASONS = ("duplicate_conflicting", "duplicate_identical")
COPY_REASONS = (*WITHIN_DAY_REASONS, DUPLICATE_ACROSS_DAYS)  # rejects that are copies of an id
WITHIN_DAY_MARK = "within the day: "


class CrossDayConflicts:
    def __init__(self, stage: Table, target: Table, day: date,
                 conflicts_before: Iterable[str] = ()) -> None:
        self.stage, self.target, self.day = stage, target, day
        self.known_before = set(conflicts_before)  # as the day's cleaning saw them
        self.before: set[str] = set()  # ids in conflict on this day before this load
        self.after: set[str] = set()
        self.evicted_days: list[str] = []  # other days whose rows this load moved to rejects

    def _copies_elsewhere(self, tid_column, in_sales: bool = True):
        """An id has a copy on another day: in sales, or as a duplicate reject (every copy that
        passed the row rules counts, also those rejected as duplicates within their day). Only
        copies of current file versions count: a superseded version's row waiting for its day's
        reload (or held there by a blocked day) is no sale any more. ``in_sales=False`` looks at
        the rejects only (for ids already in sales: the primary key rules out a second copy)."""
        t, r = self.target, sales_rejects.alias()  # an alias: the caller may scan sales_rejects
        rejected = exists().where(r.c.transaction_id == tid_column, r.c.reason.in_(COPY_REASONS),
                                  r.c.sale_date != self.day, live_version(r))
        if not in_sales:
            return rejected
        return or_(
            exists().where(t.c.transaction_id == tid_column, t.c.sale_date != self.day, live_version(t)),
            rejected)

    def _conflicting_ids(self, conn: Connection) -> list[str]:
        s, r = self.stage, sales_rejects
        staged = select(s.c.transaction_id).where(self._copies_elsewhere(s.c.transaction_id))
        own_duplicates = select(r.c.transaction_id).where(
            r.c.sale_date == self.day, r.c.reason.in_(COPY_REASONS),
            self._copies_elsewhere(r.c.transaction_id))
        return sorted(set(conn.execute(staged).scalars()) | set(conn.execute(own_duplicates).scalars()))

    def day_rows_in_conflict(self, conn: Connection) -> bool:
        """Whether a row of this day already in ``sales`` (written there directly) or one of the
        day's duplicate rejects has a copy on another day."""
        own = self.target.alias()
        r = sales_rejects
        rows = select(own.c.transaction_id).where(  # in sales: no other copy there (primary key)
            own.c.sale_date == self.day,
            self._copies_elsewhere(own.c.transaction_id, in_sales=False)).limit(1)
        rejects = select(r.c.transaction_id).where(
            r.c.sale_date == self.day, r.c.reason.in_(COPY_REASONS),
            self._copies_elsewhere(r.c.transaction_id)).limit(1)
        return (conn.execute(rows).first() is not None
                or conn.execute(rejects).first() is not None)

    def reset(self, conn: Connection) -> None:
        """Forget the day's earlier cross-day verdicts: this load decides them again."""
        r = sales_rejects
        self.before = self.known_before | set(conn.execute(select(r.c.transaction_id).where(
            r.c.sale_date == self.day, r.c.reason == DUPLICATE_ACROSS_DAYS)).scalars())
        conn.execute(delete(r).where(r.c.stage == CONFLICT_STAGE, r.c.sale_date == self.day))
        marked = conn.execute(select(r.c.reject_id, r.c.detail).where(
            r.c.sale_date == self.day, r.c.reason == DUPLICATE_ACROSS_DAYS,
            r.c.detail.like(f"{WITHIN_DAY_MARK}%"))).all()
        for reject_id, detail in marked:
            conn.execute(update(r).where(r.c.reject_id == reject_id).values(
                reason=detail[len(WITHIN_DAY_MARK):].split(";")[0], detail=None))

    def settle(self, conn: Connection, now: datetime) -> tuple[int, int]:
        """Move conflicting rows to rejects; returns (staged rows rejected, other rows evicted)."""
        self.reset(conn)
        ids = self._conflicting_ids(conn)
        self.after = set(ids)
        if not ids:
            return 0, 0
        s, t, r = self.stage, self.target, sales_rejects
        rejected = self._reject(conn, s, s.c.transaction_id.in_(ids), literal(self.day, Date),
                                f"also on another day than {self.day}", now)
        others = and_(t.c.transaction_id.in_(ids), t.c.sale_date != self.day, live_version(t))
        # their daily aggregates change too, whether or not their day is in this run
        self.evicted_days = sorted({str(d)[:10] for d in conn.execute(
            select(t.c.sale_date).distinct().where(others)).scalars()})
        evicted = self._reject(conn, t, others, t.c.sale_date, f"also on {self.day}", now)
        conn.execute(delete(t).where(others))
        conn.execute(delete(s).where(s.c.transaction_id.in_(ids)))
        # copies rejected as duplicates within their own day are copies across days too
        for reason in WITHIN_DAY_REASONS:
            conn.execute(update(r).where(r.c.transaction_id.in_(ids), r.c.reason == reason)
                         .values(reason=DUPLICATE_ACROSS_DAYS,
                                 detail=f"{WITHIN_DAY_MARK}{reason}; also on another day"))
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
        # counted first: INSERT ... SELECT reports no row count on every driver (SQLite: -1)
        count = conn.execute(select(func.count()).select_from(rows.subquery())).scalar_one()
        conn.execute(insert(sales_rejects).from_select(columns, rows))
        return count

    def days_no_longer_in_conflict(self, conn: Connection) -> list[str]:
        """Days holding a cross-day reject of an id this day no longer holds, which now has no
        copy on any other day (only ids this day let go of: other days' loads in flight do not
        count as a change)."""
        released = sorted(self.before - self.after)
        if not released:
            return []
        return lonely_conflict_days(conn, released, self.target, exclude_day=self.day)


def live_version(table):
    """The row belongs to a current (live) file version."""
    return exists().where(file_ledger.c.file_name == table.c.source_file,
                          file_ledger.c.sha256 == table.c.source_sha256,
                          file_ledger.c.status.in_(LIVE_STATES))


def lonely_conflict_days(conn: Connection, ids, target: Table = sales,
                         exclude_day: date | None = None) -> list[str]:
    """Days holding a cross-day reject of one of ``ids`` that has no live copy on another day
    any more: their row must come back, so they need a load."""
    ids = sorted(ids)
    if not ids:
        return []
    r, t = sales_rejects, target
    other = sales_rejects.alias()
    lonely = and_(
        r.c.transaction_id.in_(ids), r.c.reason == DUPLICATE_ACROSS_DAYS,
        ~exists().where(t.c.transaction_id == r.c.transaction_id, t.c.sale_date != r.c.sale_date,
                        live_version(t)),
        ~exists().where(other.c.transaction_id == r.c.transaction_id,
                        other.c.reason.in_(COPY_REASONS), other.c.sale_date != r.c.sale_date,
                        live_version(other)))
    if exclude_day is not None:
        lonely = and_(lonely, r.c.sale_date != exclude_day)
    days = conn.execute(select(func.distinct(r.c.sale_date)).where(lonely)).scalars().all()
    return sorted(d.isoformat() if hasattr(d, "isoformat") else str(d) for d in days)


def purge_superseded_rows(conn: Connection, day: date) -> list[str]:
    """Remove the day's sales rows of versions that are no longer current (a blocked day keeps
    no superseded sale); returns the days whose cross-day conflict this lets go of."""
    t = sales
    stale = and_(t.c.sale_date == day, ~live_version(t))
    ids = conn.execute(select(t.c.transaction_id).where(stale)).scalars().all()
    if not ids:
        return []
    conn.execute(delete(t).where(stale))
    return lonely_conflict_days(conn, ids)
