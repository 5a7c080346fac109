"""The products dimension: reading and validating the catalogue."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.identifiers import (
    MAX_IDENTIFIER_LENGTH,
    normalize_id,
    normalize_identifiers,
    refused_character,
)

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
    out.insert(0, "product_token", tokenizer.encrypt_series(out["product_id"], "product_id"))
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


MAX_PRICE = Decimal("9999999999.99")  # dim_products.unit_price is NUMERIC(12, 2)
_TEXT_LIMITS = {"name": 255, "category": 100}


def _item_problem(item: object) -> str | None:
    """Why one API item cannot become a dimension row (never quoting its id), or None."""
    if not isinstance(item, dict):
        return "not a JSON object"
    missing = [c for c in CATALOGUE_COLUMNS if c not in item]
    if missing:
        return f"missing {', '.join(missing)}"
    pid = item["product_id"]
    if not isinstance(pid, str) or not pid.strip():
        return "product_id is not a non-empty string"
    if len(pid.strip()) > MAX_IDENTIFIER_LENGTH or refused_character(pid):
        return (f"product_id longer than {MAX_IDENTIFIER_LENGTH} characters or with control or "
                "invisible format characters")
    for field, limit in _TEXT_LIMITS.items():
        value = item[field]
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            return f"{field} is not a non-empty string of at most {limit} characters"
    price = item["unit_price"]
    try:
        if isinstance(price, bool) or not (0 < Decimal(str(price)) <= MAX_PRICE):
            return f"unit_price is not a number in (0, {MAX_PRICE}]"
    except (InvalidOperation, ValueError):
        return f"unit_price is not a number in (0, {MAX_PRICE}]"
    try:
        pd.Timestamp(item["updated_at"])
    except (ValueError, TypeError):
        return "updated_at is not a date-time"
    return None


def products_from_items(items: list) -> tuple[pd.DataFrame, list[str]]:
    """API items as a catalogue frame, and a reason for each item left out.

    One bad item never stops the dimension: it is left out with a reason naming its position
    (not its id: reasons go to the event log). Ids equal once normalized (core/identifiers.py)
    are one product in the warehouse; the later ones are left out.
    """
    good, reasons, seen = [], [], {}
    for index, item in enumerate(items):
        problem = _item_problem(item)
        if problem is None:
            folded = normalize_id(item["product_id"])
            if folded in seen:
                problem = f"same id as item {seen[folded]} once normalized (trim, NFC, upper case)"
            else:
                seen[folded] = index
        if problem:
            reasons.append(f"item {index}: {problem}")
        else:
            good.append(item)
    return frame_from_items(good), reasons


def frame_from_items(items: list[dict]) -> pd.DataFrame:
    """API items back into a catalogue frame (same types as read_catalogue)."""
    frame = pd.DataFrame(items, columns=list(CATALOGUE_COLUMNS))
    frame["product_id"] = normalize_identifiers(frame["product_id"].astype(str))
    frame["unit_price"] = [Decimal(str(round(float(p), 2))) for p in frame["unit_price"]]
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True).dt.tz_localize(None)
    return frame
