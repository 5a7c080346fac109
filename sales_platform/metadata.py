"""Metadata helpers: what a person reads on a materialization in the UI."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd


def warehouse_kinds(*others: str) -> set[str]:
    """Kinds of an asset stored in the warehouse: the configured database shows in the UI."""
    from sales_platform.core.settings import warehouse_kind

    return {"sql", warehouse_kind(), *others}


def blob_kind() -> str:
    """Where blob-stored assets really live: Azure when a container is configured, else the folder."""
    from sales_platform.core.settings import BLOB_CONTAINER, value

    return "azure" if value(BLOB_CONTAINER) else "filesystem"


def markdown_table(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False) if len(frame) else "_empty_")


def counts_table(counts: Mapping[str, int], key: str = "reason") -> dg.MetadataValue:
    if not counts:
        return dg.MetadataValue.md("_none_")
    lines = [f"| {key} | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return dg.MetadataValue.md("\n".join(lines))


# What each warehouse column means, shown in the UI's column schema (one place for every table).
COLUMN_DESCRIPTIONS = {
    "transaction_id": "Sale identifier from the file, trimmed and upper-cased (unique in sales)",
    "customer_id": "Customer id as an AES-SIV token (Tink deterministic-AEAD format), never plaintext",
    "product_id": "Product id as an AES-SIV token; joins dim_products.product_token",
    "product_token": "Product id as an AES-SIV token (the same token as sales.product_id)",
    "customer_token": "Customer id as an AES-SIV token",
    "quantity": "Units sold (whole number, 1..SALES_PLATFORM_MAX_QUANTITY)",
    "sale_ts": "Sale time in UTC (naive timestamps read in SALES_PLATFORM_SOURCE_TIMEZONE)",
    "sale_date": "Sale day in UTC: the daily partition key",
    "timestamp": "The timestamp text as it was in the file",
    "source_file": "Name of the dropped file the row came from",
    "source_sha256": "sha256 of the file version the row came from (file_ledger.sha256)",
    "source_row": "1-based data record number in that file",
    "loaded_at": "When the row was last written by a load",
    "extras": "Columns outside the contract, as JSON (schema policy rescue)",
    "reason": "Why the row was rejected or the day requested again",
    "detail": "More about the reason (never a data cell of another column)",
    "raw_text": "The rejected row as it was in the file, encrypted (AES-SIV token; needs the key)",
    "stage": "Where the row was rejected: cleaning or conflict",
    "rejected_at": "When the row was rejected",
    "reject_id": "Surrogate key of the rejected row",
    "name": "Product name from the catalogue (or lock name in warehouse_locks)",
    "product_name": "Product name from dim_products",
    "category": "Product category from the catalogue",
    "unit_price": "Unit price from the catalogue: revenue = quantity x unit_price",
    "updated_at": "When the catalogue last changed the product",
    "transactions": "Number of sales rows",
    "total_quantity": "Sum of quantity",
    "total_revenue": "Sum of quantity x unit_price (rows without a price count 0)",
    "refreshed_at": "When the aggregate row was recomputed",
    "month": "Calendar month (1-12)",
    "year": "Calendar year",
    "file_name": "Exact name of the dropped file",
    "sha256": "sha256 of the file's bytes: with the name, the identity of a file version",
    "status": "Ledger state: landed, loaded, blocked, superseded, quarantined, skipped_duplicate",
    "rows_landed": "Rows of the file version landed (per day in file_day_counts)",
    "rows_read": "Data rows read from the file",
    "rows_rejected": "Rows of the file version rejected",
    "error": "Why a file was quarantined or blocked (no data cells)",
}


def column_schema(table) -> dg.TableSchema:
    """The column schema of a SQLAlchemy table, for dagster/column_schema."""
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=str(c.type),
                       description=c.comment or COLUMN_DESCRIPTIONS.get(c.name),
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
