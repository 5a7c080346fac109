"""Sales categories (Low / Medium / High by a sale's revenue) and the fill rules of the analysis.

Revenue of a sale = quantity x the product's unit price in dim_products. The bins are upper bounds,
closed on the right like ``pandas.cut``: with the default ``100,500`` a sale is Low when its revenue
is <= 100, Medium when 100 < revenue <= 500, High above 500 (a revenue of 0 is Low).

Fill rules (what is filled, and what is not):

* a month and category with no sales gets a row with 0 transactions and 0 revenue: zero is the true
  count, and charts and Power BI show a zero bar instead of a gap. Its mean stays NULL (undefined);
* a sale whose product has no price (not in dim_products) is NOT given revenue 0 (the guide's
  ``fillna(0)``): that would pull the mean down and call a real sale Low. It is counted under
  ``Unpriced`` with NULL revenue and mean;
* missing transaction, customer or product ids, quantities or timestamps are never filled: cleaning
  rejects those rows with a reason (``sales_rejects``); a guessed id or day would be a made-up fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sales_platform.core.settings import CATEGORY_BINS, DEFAULT_CATEGORY_BINS, SettingError, value

LABELS = ("Low", "Medium", "High")
UNPRICED = "Unpriced"
CENT = Decimal("0.01")


def parse_bins(text: str, name: str = CATEGORY_BINS) -> tuple[Decimal, Decimal]:
    """``"100,500"`` -> (100, 500): two increasing positive revenue bounds (errors name ``name``)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        bounds = tuple(Decimal(p) for p in parts)
    except InvalidOperation:
        raise SettingError(f"{name}={text!r} is not two numbers separated by a comma "
                           f"(e.g. {DEFAULT_CATEGORY_BINS})") from None
    if len(bounds) != len(LABELS) - 1 or not all(b.is_finite() for b in bounds):
        raise SettingError(f"{name}={text!r} must be two revenue bounds, Low|Medium and "
                           f"Medium|High (e.g. {DEFAULT_CATEGORY_BINS})")
    low, high = bounds
    if not 0 < low < high:
        raise SettingError(f"{name}={text!r}: bounds must be positive and increasing")
    return low, high


def category_bins() -> tuple[Decimal, Decimal]:
    """The configured bins (``SALES_PLATFORM_CATEGORY_BINS``, default ``100,500``)."""
    return parse_bins(value(CATEGORY_BINS, DEFAULT_CATEGORY_BINS))


def bins_text(bins: Sequence[Decimal]) -> str:
    return ",".join(str(b) for b in bins)


def revenue(quantity: int, unit_price: Decimal | None) -> Decimal | None:
    """A sale's revenue in cents precision, or None when its price is unknown (never 0)."""
    if unit_price is None:
        return None
    return (Decimal(quantity) * Decimal(str(unit_price))).quantize(CENT, ROUND_HALF_UP)


def sales_category(amount: Decimal | None, bins: Sequence[Decimal]) -> str:
    """Low / Medium / High for a revenue (right-closed bins), Unpriced for an unknown one."""
    if amount is None:
        return UNPRICED
    low, high = bins
    return LABELS[0] if amount <= low else LABELS[1] if amount <= high else LABELS[2]


def mean(total: Decimal | None, count: int) -> Decimal | None:
    """Mean revenue to the cent; None when undefined (no priced sale)."""
    if total is None or count == 0:
        return None
    return (total / count).quantize(CENT, ROUND_HALF_UP)
