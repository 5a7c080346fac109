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


EVOLVE, FREEZE, RESCUE = "evolve", "freeze", "rescue"
POLICIES = (EVOLVE, FREEZE, RESCUE)
EXTRAS_COLUMN = "extras"  # the JSON column unknown columns go to under the rescue policy
# Columns the platform itself writes: a source column with such a name is renamed src_<name>.
PLATFORM_COLUMNS = frozenset({"sale_date", "sale_ts", "source_file", "source_row", "loaded_at",
                              "reason", "detail", "raw_text", EXTRAS_COLUMN})
DEFAULT_SENSITIVE = ("email", "customer_email", "phone", "customer_phone", "customer_name",
                     "address", "customer_address", "iban", "card_number")
MAX_COLUMN_NAME = 60


class SchemaError(ValueError):
    """A file's header does not satisfy the contract."""


def normalize_header(name: str) -> str:
    """Case, spaces and punctuation folded: ' Transaction ID ' -> 'transaction_id'."""
    folded = re.sub(r"[^0-9a-z]+", "_", name.strip().lower())
    return folded.strip("_")


def safe_column_name(name: str) -> str:
    """A new column's name as a plain identifier: [a-z][a-z0-9_]*, never a platform column.

    Headers are already folded by normalize_header, so quotes, semicolons and spaces cannot
    survive into DDL; the dialect still quotes the name (reserved words, case).
    """
    folded = normalize_header(name)[:MAX_COLUMN_NAME] or "unnamed"
    if not folded[0].isalpha():
        folded = f"c_{folded}"
    if folded in PLATFORM_COLUMNS:
        folded = f"src_{folded}"
    return folded


@dataclass(frozen=True)
class SchemaContract:
    """Canonical columns, the declared aliases that map onto them, and the policy for new columns.

    policy: evolve (new columns are added to the sales table), freeze (a file with unknown columns
    is rejected and quarantined), rescue (unknown columns are kept as JSON in the extras column).
    sensitive: new columns whose values are encrypted like customer_id.
    """

    required: Sequence[str] = REQUIRED_COLUMNS
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    policy: str = EVOLVE
    sensitive: Sequence[str] = DEFAULT_SENSITIVE

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise SchemaError(f"unknown schema policy {self.policy!r}; expected one of {POLICIES}")

    @classmethod
    def from_file(cls, path: str) -> SchemaContract:
        """A contract from JSON: {"policy": ..., "aliases": {...}, "sensitive": [...]}."""
        import json
        from pathlib import Path

        data = json.loads(Path(path).read_text())
        aliases = {**DEFAULT_ALIASES, **{normalize_header(k): v for k, v in
                                         data.get("aliases", {}).items()}}
        return cls(aliases=aliases, policy=data.get("policy", EVOLVE),
                   sensitive=tuple(data.get("sensitive", DEFAULT_SENSITIVE)))

    def canonical_name(self, header: str) -> str:
        name = normalize_header(header)
        if name in self.required:
            return name
        known = self.aliases.get(name, self.aliases.get(name.replace("_", "")))
        return known or safe_column_name(header)

    def extra_columns(self, canonical: Sequence[str]) -> list[str]:
        return [c for c in canonical if c not in self.required]

    def map_header(self, headers: Sequence[str], source: str) -> dict[str, str]:
        """Map each source header to its canonical name; raises SchemaError naming the problem."""
        return self.resolve_header(headers, source)[0]

    def resolve_header(self, headers: Sequence[str], source: str) -> tuple[dict[str, str], list[str]]:
        """``map_header``, and a note for each alias set aside: an alias of a column the header
        also names exactly (``product`` beside ``product_id``) is that file's own column, kept
        under its own name (``product``: often the product's name), not a second product_id."""
        exact = {normalize_header(h) for h in headers} & set(self.required)
        mapping: dict[str, str] = {}
        seen: dict[str, str] = {}
        notes: list[str] = []
        for header in headers:
            canonical = self.canonical_name(header)
            if canonical in exact and normalize_header(header) != canonical:
                alias, canonical = canonical, safe_column_name(header)
                notes.append(f"column {header.strip()!r} is an alias of {alias}, but the header "
                             f"also has {alias} itself: {alias} is read from that one and "
                             f"{header.strip()!r} is kept as its own column {canonical!r}")
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
        return mapping, notes
