"""Named locks held for the length of a transaction, on every supported dialect.

PostgreSQL: ``pg_advisory_xact_lock``; SQL Server: ``sp_getapplock`` owned by the transaction;
SQLite: an UPDATE of the lock's row in ``warehouse_locks`` (SQLite writers are serialized anyway
by BEGIN IMMEDIATE; the row makes the intent explicit and works on any SQLite connection).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, insert, select, text, update

from sales_platform.core.warehouse.tables import day_snapshots, warehouse_locks


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def take_lock(conn: Connection, name: str) -> None:
    """Block until this transaction holds the lock ``name`` (released at commit or rollback)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
    elif dialect == "mssql":
        conn.execute(text("EXEC sp_getapplock @Resource=:name, @LockMode='Exclusive', "
                          "@LockOwner='Transaction', @LockTimeout=600000"), {"name": name[:255]})
    else:
        updated = conn.execute(warehouse_locks.update().where(warehouse_locks.c.name == name)
                               .values(taken=warehouse_locks.c.taken + 1)).rowcount
        if not updated:
            conn.execute(warehouse_locks.insert().values(name=name, taken=1))


def claim_snapshot(conn: Connection, day, column: str, snapshot_ns: int) -> bool:
    """Record that ``day``'s ``column`` (cleaned_ns or loaded_ns) is written from ``snapshot_ns``;
    False, and nothing recorded, when a newer snapshot was already written (a stale run)."""
    stamp = f"{snapshot_ns:020d}"
    row = conn.execute(select(day_snapshots).where(day_snapshots.c.sale_date == day)).mappings().first()
    if row is None:
        conn.execute(insert(day_snapshots).values(sale_date=day, **{column: stamp}))
        return True
    if row[column] is not None and row[column] > stamp:
        return False
    conn.execute(update(day_snapshots).where(day_snapshots.c.sale_date == day).values(**{column: stamp}))
    return True


def newest_snapshot(conn: Connection, day) -> int:
    row = conn.execute(select(day_snapshots).where(day_snapshots.c.sale_date == day)).mappings().first()
    if row is None:
        return 0
    return max(int(row["cleaned_ns"] or 0), int(row["loaded_ns"] or 0))
