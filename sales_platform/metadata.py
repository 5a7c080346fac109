"""Metadata helpers: what a person reads on a materialization in the UI."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd


def warehouse_kinds(*others: str) -> set[str]:
    """Kinds of an asset stored in the warehouse: the configured database shows in the UI."""
    from sales_platform.core.settings import warehouse_kind

    return {"sql", warehouse_kind(), *others}


def markdown_table(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False) if len(frame) else "_empty_")


def counts_table(counts: Mapping[str, int], key: str = "reason") -> dg.MetadataValue:
    if not counts:
        return dg.MetadataValue.md("_none_")
    lines = [f"| {key} | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return dg.MetadataValue.md("\n".join(lines))


def column_schema(table) -> dg.TableSchema:
    """The column schema of a SQLAlchemy table, for dagster/column_schema."""
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=str(c.type), description=c.comment,
                       constraints=dg.TableColumnConstraints(nullable=c.nullable,
                                                             unique=bool(c.primary_key)))
        for c in table.columns
    ])


def rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1) if seconds > 0 else 0.0


def reflected_table(engine, name: str):
    """The table as it is in the database (DBA-added and evolved columns included)."""
    from sqlalchemy import MetaData, Table

    return Table(name, MetaData(), autoload_with=engine)
