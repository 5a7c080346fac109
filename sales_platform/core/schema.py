"""The schema contract: canonical columns of a sales drop and how header variants map onto them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TRANSACTION_ID = "transaction_id"
CUSTOMER_ID = "customer_id"
PRODUCT_ID = "product_id"
QUANTITY = "quantity"
TIMESTAMP = "timestamp"

REQUIRED_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, CUSTOMER_ID, PRODUCT_ID, QUANTITY, TIMESTAMP)
IDENTIFIER_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, PRODUCT_ID)

DEFAULT_ALIASES: Mapping[str, str] = {
    "transactionid": TRANSACTION_ID,
    "txn_id": TRANSACTION_ID,
    "customerid": CUSTOMER_ID,
    "customer": CUSTOMER_ID,
    "productid": PRODUCT_ID,
    "product": PRODUCT_ID,
    "sku": PRODUCT_ID,
    "qty": QUANTITY,
    "units": QUANTITY,
    "sale_timestamp": TIMESTAMP,
    "saletimestamp": TIMESTAMP,
    "sold_at": TIMESTAMP,
    "datetime": TIMESTAMP,
}


class SchemaError(ValueError):
    """A file's header does not satisfy the contract."""


def normalize_header(name: str) -> str:
    """Case, spaces and punctuation folded: ' Transaction ID ' -> 'transaction_id'."""
    folded = re.sub(r"[^0-9a-z]+", "_", name.strip().lower())
    return folded.strip("_")


@dataclass(frozen=True)
class SchemaContract:
    """Canonical columns plus the declared aliases that map onto them."""

    required: Sequence[str] = REQUIRED_COLUMNS
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))

    def canonical_name(self, header: str) -> str:
        name = normalize_header(header)
        if name in self.required:
            return name
        return self.aliases.get(name, self.aliases.get(name.replace("_", ""), name))

    def map_header(self, headers: Sequence[str], source: str) -> dict[str, str]:
        """Map each source header to its canonical name; raises SchemaError naming the problem."""
        mapping: dict[str, str] = {}
        seen: dict[str, str] = {}
        for header in headers:
            canonical = self.canonical_name(header)
            if not canonical:
                raise SchemaError(f"{source}: empty column name in header")
            if canonical in seen:
                raise SchemaError(
                    f"{source}: columns {seen[canonical]!r} and {header!r} both map to {canonical!r}"
                )
            seen[canonical] = header
            mapping[header] = canonical
        missing = [c for c in self.required if c not in seen]
        if missing:
            raise SchemaError(
                f"{source}: missing required column(s) {', '.join(missing)}; header was {list(headers)}"
            )
        return mapping
