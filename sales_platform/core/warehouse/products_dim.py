"""The one writer of ``dim_products`` (keyed by the product token; no plaintext product id)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, delete, insert, select, update

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.warehouse.tables import dim_products


def known_product_ids(engine: Engine, tokenizer: Tokenizer) -> frozenset[str] | None:
    """Product ids of the dimension (its tokens decrypted in memory), or None when it is empty."""
    with engine.connect() as conn:
        tokens = conn.execute(select(dim_products.c.product_token)).scalars().all()
    return frozenset(tokenizer.decrypt(t, "product_id") for t in tokens) if tokens else None


def upsert_products(engine: Engine, products: pd.DataFrame,
                    remove_missing: bool = False) -> dict[str, int]:
    """Insert or update products by token (the dimension is small: thousands of rows).

    ``products`` carries product_token, name, category, unit_price, updated_at; a plaintext
    product_id column, if present, is never written. ``remove_missing`` deletes the products
    that are not in ``products`` (the catalogue is the system of record).
    """
    columns = [c.name for c in dim_products.columns]
    inserted = updated = removed = 0
    with engine.begin() as conn:
        if remove_missing:
            gone = set(conn.execute(select(dim_products.c.product_token)).scalars()) \
                - set(products["product_token"])
            for token in gone:
                conn.execute(delete(dim_products).where(dim_products.c.product_token == token))
            removed = len(gone)
        existing = {r.product_token: r for r in conn.execute(select(dim_products)).all()}
        for record in products[columns].to_dict("records"):
            old = existing.get(record["product_token"])
            if old is None:
                conn.execute(insert(dim_products).values(**record))
                inserted += 1
            elif any(getattr(old, k) != v for k, v in record.items() if k != "updated_at"):
                conn.execute(update(dim_products)
                             .where(dim_products.c.product_token == record["product_token"])
                             .values(**record))
                updated += 1
    return {"inserted": inserted, "updated": updated,
            "unchanged": len(products) - inserted - updated, "removed": removed}
