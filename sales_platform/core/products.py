"""The products dimension: reading and validating the catalogue."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.quality import normalize_identifiers

CATALOGUE_COLUMNS = ("product_id", "name", "category", "unit_price", "updated_at")


class CatalogueError(ValueError):
    pass


def read_catalogue(path: Path) -> pd.DataFrame:
    """The catalogue CSV, validated: unique ids, names, categories, positive prices."""
    if not path.exists():
        raise CatalogueError(f"{path}: product catalogue not found (run `sales-platform generate`)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in CATALOGUE_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogueError(f"{path.name}: missing column(s) {', '.join(missing)}")
    frame["product_id"] = normalize_identifiers(frame["product_id"])
    prices = pd.to_numeric(frame["unit_price"], errors="coerce")
    problems = []
    for row, (pid, name, price) in enumerate(zip(frame["product_id"], frame["name"], prices, strict=True), 2):
        if pd.isna(pid) or not str(name).strip() or pd.isna(price) or price <= 0:
            problems.append(f"line {row}")
    if problems:
        raise CatalogueError(f"{path.name}: invalid product rows at {', '.join(problems[:10])}")
    if frame["product_id"].duplicated().any():
        dup = frame.loc[frame["product_id"].duplicated(), "product_id"].iloc[0]
        raise CatalogueError(f"{path.name}: duplicate product id {dup}")
    frame["unit_price"] = [Decimal(str(round(p, 2))) for p in prices]
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], errors="coerce").fillna(
        pd.Timestamp(datetime(1970, 1, 1)))
    return frame[list(CATALOGUE_COLUMNS)]


def with_tokens(products: pd.DataFrame, tokenizer: Tokenizer) -> pd.DataFrame:
    """The dimension rows for the warehouse: the product id replaced by its token (no plaintext)."""
    out = products.copy()
    out.insert(0, "product_token", tokenizer.encrypt_series(out["product_id"]))
    out["updated_at"] = [ts.to_pydatetime() for ts in out["updated_at"]]
    return out.drop(columns=["product_id"])


def products_document(catalogue: pd.DataFrame) -> list[dict]:
    """The products dimension as the JSON document exchanged with the API."""
    return [
        {"product_id": str(r.product_id), "name": str(r.name), "category": str(r.category),
         "unit_price": float(r.unit_price),
         "updated_at": pd.Timestamp(r.updated_at).isoformat(timespec="seconds")}
        for r in catalogue.itertuples(index=False)
    ]


def frame_from_items(items: list[dict]) -> pd.DataFrame:
    """API items back into a catalogue frame (same types as read_catalogue)."""
    frame = pd.DataFrame(items, columns=list(CATALOGUE_COLUMNS))
    frame["product_id"] = normalize_identifiers(frame["product_id"].astype(str))
    frame["unit_price"] = [Decimal(str(round(float(p), 2))) for p in frame["unit_price"]]
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True).dt.tz_localize(None)
    return frame
