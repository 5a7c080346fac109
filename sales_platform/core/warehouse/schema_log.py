"""The one writer of ``schema_history``: the column layouts files arrive with, and table changes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, insert, select

from sales_platform.core.warehouse.tables import schema_history


def record_source_schema(engine: Engine, file_name: str, sha: str, columns: Sequence[str],
                         now: datetime) -> bool:
    """Record a file's column set in schema_history; True when this layout was never seen before."""
    return record_source_schemas(engine, [(file_name, sha, columns)], now)[0]


def record_source_schemas(engine: Engine, files: Sequence[tuple[str, str, Sequence[str]]],
                          now: datetime) -> list[bool]:
    """``record_source_schema`` for several files (name, sha256, columns) in one transaction."""
    new: list[bool] = []
    with engine.begin() as conn:
        seen_layouts: set[str] = set()
        for file_name, sha, columns in files:
            layout = json.dumps(list(columns))
            seen = layout in seen_layouts or conn.execute(
                select(schema_history.c.history_id).where(
                    schema_history.c.kind == "source_schema",
                    schema_history.c.columns == layout)).first() is not None
            seen_layouts.add(layout)
            conn.execute(insert(schema_history).values(
                kind="source_schema", file_name=file_name, sha256=sha, columns=layout,
                detail=None if seen else "first seen", recorded_at=now))
            new.append(not seen)
    return new


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
