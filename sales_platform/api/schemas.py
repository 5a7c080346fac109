"""Request bodies of the products API, validated with pydantic.

The bounds are the warehouse's: an id the API accepts is one the cleaning rules accept (at most
64 characters, no control characters, see core/quality.py) and a name, category and price fit
dim_products' columns. Every field is typed ``Any`` plus a validator, so each problem gets one
documented sentence (no pydantic wording, and never the submitted value echoed back).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from sales_platform.core.identifiers import normalize_id

TOKEN_HEADER = "X-API-Token"  # the header carrying the API token (server and clients)
MAX_PRODUCT_ID_LENGTH = 64  # sales.product_id before tokenization (core/quality.py)
MAX_NAME_LENGTH = 255  # dim_products.name
MAX_CATEGORY_LENGTH = 100  # dim_products.category
MAX_PRICE = 9_999_999_999.99  # dim_products.unit_price is NUMERIC(12, 2)
MAX_TIMESTAMP_LENGTH = 40
MAX_SQLITE_INT = 2**63 - 1
PRICE_PROBLEM = "must be a number greater than 0"
MAX_ITEMS = 50_000  # a 5 MB body holds about 40,000 real products
MAX_PROBLEMS = 100  # validation stops there: enough to fix a payload, bounded memory and time

# Unicode categories refused: controls (NUL included), and in ids also format characters
# (bidi overrides, zero-width joiners) that make two different ids look the same.
_TEXT_REFUSED = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ID_REFUSED = _TEXT_REFUSED | {"Cf", "Co"}

Problem = dict[str, Any]


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("sales_platform", message)


def _text(limit: int, refused: frozenset[str]):
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _problem("must be a string")
        if not value.strip():
            raise _problem("must not be empty")
        if len(value) > limit:
            raise _problem(f"must be at most {limit} characters")
        if any(unicodedata.category(ch) in refused for ch in value):
            raise _problem("must not contain NUL, control or invisible formatting characters")
        return value

    return check


def _product_id(value: Any) -> str:
    value = _text(MAX_PRODUCT_ID_LENGTH, _ID_REFUSED)(value)
    if value != value.strip():
        raise _problem("must not start or end with whitespace")
    return value


def _is_number(value: Any) -> bool:
    # bool is an int subclass: True must not pass as a price of 1.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _price(value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise _problem(PRICE_PROBLEM)
    if value > MAX_PRICE:
        raise _problem(f"must be at most {MAX_PRICE:.2f}")
    return float(value)


def _timestamp(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        raise _problem("must be an ISO-8601 string")
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise _problem("must be an ISO-8601 date-time, e.g. 2024-01-31T12:00:00") from None


def _count(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SQLITE_INT
    if not ok:
        raise _problem("must be an integer >= 0")
    return value


def _year(value: Any) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9999):
        raise _problem("must be an integer year (1-9999)")
    return value


def _amount(value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise _problem("must be a number >= 0")
    return float(value)


class ProductIn(BaseModel):
    """One product as PUT /products takes it; unknown fields are refused, not dropped."""

    model_config = ConfigDict(extra="forbid")
    product_id: Annotated[Any, AfterValidator(_product_id)]
    name: Annotated[Any, AfterValidator(_text(MAX_NAME_LENGTH, _TEXT_REFUSED))]
    category: Annotated[Any, AfterValidator(_text(MAX_CATEGORY_LENGTH, _TEXT_REFUSED))]
    unit_price: Annotated[Any, AfterValidator(_price)]
    updated_at: Annotated[Any, AfterValidator(_timestamp)]


class SalesYearIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    year: Annotated[Any, AfterValidator(_year)]
    transactions: Annotated[Any, AfterValidator(_count)]
    total_quantity: Annotated[Any, AfterValidator(_count)]
    total_revenue: Annotated[Any, AfterValidator(_amount)]


_WORDING = {"missing": "is required", "extra_forbidden": "unknown field",
            "model_type": "must be a JSON object", "model_attributes_type": "must be a JSON object",
            "list_type": "body must be a JSON list"}


def id_key(product_id: str) -> str:
    """The identity of a product id as the warehouse sees it (trimmed, NFC, full upper case)."""
    return normalize_id(product_id) or ""


def _problems(exc: ValidationError, index: int) -> list[Problem]:
    out = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = error["loc"]
        out.append({"index": index, "field": str(loc[0]) if loc else None,
                    "problem": _WORDING.get(error["type"], error["msg"])})
    return out


class _Duplicates:
    """Items whose key (folded like the warehouse folds ids) an earlier item of the body has."""

    def __init__(self, key: str, fold: bool) -> None:
        self.key, self.fold, self.first_seen = key, fold, {}

    def check(self, index: int, item: Any) -> list[Problem]:
        value = item.get(self.key) if isinstance(item, dict) else None
        if not isinstance(value, str | int) or isinstance(value, bool):
            return []
        identity = id_key(value) if self.fold and isinstance(value, str) else value
        first = self.first_seen.setdefault(identity, (index, value))
        if first[0] == index:
            return []
        same = first[1] == value
        return [{"index": index, "field": self.key, "problem": f"duplicate of index {first[0]}"
                 + ("" if same else " (the ids differ only in case or spacing)")}]


def parse_products(body: Iterable[Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Normalized products, or the problems of the body's items (the first MAX_PROBLEMS)."""
    return _parse(ProductIn, body, "product_id", fold=True)


def parse_sales_years(body: Iterable[Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    return _parse(SalesYearIn, body, "year", fold=False)


def _parse(model: type[BaseModel], body: Iterable[Any], key: str,
           fold: bool) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Item by item, stopping at MAX_PROBLEMS problems or past MAX_ITEMS items: a hostile list
    (``[{},{},...]``, millions of items) costs what its first problems cost, never a problem
    object per item."""
    items: list[dict[str, Any]] = []
    problems: list[Problem] = []
    duplicates = _Duplicates(key, fold)
    for index, item in enumerate(body):
        if index >= MAX_ITEMS:
            problems.append({"index": index, "field": None,
                             "problem": f"more than {MAX_ITEMS} items in one request; "
                                        "send smaller batches"})
            break
        try:
            validated = model.model_validate(item)
        except ValidationError as exc:
            problems += _problems(exc, index)
        else:
            if not problems:  # once refused, the valid items are not kept
                items.append(validated.model_dump())
        problems += duplicates.check(index, item)
        if len(problems) >= MAX_PROBLEMS:
            del problems[MAX_PROBLEMS:]
            break
    return ([], problems) if problems else (items, [])
