"""One identity per identifier: the rule that decides when two written ids are the same id.

Transaction, customer and product ids are compared, deduplicated, tokenized and joined in their
normalized form: trimmed, Unicode NFC (a precomposed ``É`` and ``E`` + U+0301 are one letter), upper
case by Python's full mapping (``ß`` -> ``SS``), then NFC again (an upper case can decompose:
``ΐ`` -> ``Ϊ́``). An id holding a character no one can see or type back (controls, format characters
such as U+200B ZERO WIDTH SPACE or the bidi overrides, private use, line and paragraph separators)
is refused, as the products API refuses it (``api/schemas.py``): stripping it would make
``ID-ZW`` + U+200B a silent twin of ``ID-ZW``; refusing it shows the sender the bad export.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sales_platform.core.frames import text_series

MAX_IDENTIFIER_LENGTH = 64  # characters of the normalized id
# Unicode categories an id may not hold (the products API's list): controls, format characters,
# surrogates, private use, line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def normalize_id(value: str) -> str | None:
    """The id's identity: trimmed, NFC, full upper case, NFC; None when nothing is left."""
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", value.strip()).upper())
    return text or None


def refused_character(value: str) -> bool:
    """Whether ``value`` holds a character an id may not hold (see REFUSED_CATEGORIES)."""
    return any(unicodedata.category(ch) in REFUSED_CATEGORIES for ch in value)


def invalid_identifier(value: str) -> bool:
    """A normalized id too long, or holding a refused character."""
    return len(value) > MAX_IDENTIFIER_LENGTH or refused_character(value)


def normalize_identifiers(values: pd.Series) -> pd.Series:
    """``normalize_id`` over a column. ASCII values (almost all) are trimmed and upper-cased by
    Arrow's kernels (ASCII is already NFC); only the others go through ``normalize_id``."""
    arr = pa.array(values, type=pa.string(), from_pandas=True)
    trimmed = pc.utf8_trim_whitespace(arr)
    cleaned = pc.utf8_upper(trimmed)
    cleaned = pc.if_else(pc.equal(pc.utf8_length(cleaned), 0), pa.scalar(None, pa.string()), cleaned)
    wide = ~pc.fill_null(pc.string_is_ascii(arr), True).to_numpy(zero_copy_only=False)
    if wide.any():
        fixed = cleaned.to_numpy(zero_copy_only=False)
        fixed[wide] = [normalize_id(v) for v in pc.filter(arr, pa.array(wide)).to_pylist()]
        cleaned = pa.array(fixed, type=pa.string())
    return text_series(cleaned, values.index)


def invalid_identifiers(values: pd.Series) -> np.ndarray:
    """``invalid_identifier`` over a column of normalized ids (missing ones are not invalid).

    An all-printable ASCII value is valid unless too long (a byte test, not a per-value look-up);
    only the others are looked at character by character."""
    arr = pa.array(values, type=pa.string(), from_pandas=True)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(arr), MAX_IDENTIFIER_LENGTH), False)
    out = too_long.to_numpy(zero_copy_only=False).copy()
    other = ~pc.fill_null(pc.ascii_is_printable(arr), True).to_numpy(zero_copy_only=False)
    if other.any():
        out[other] |= [refused_character(v) for v in pc.filter(arr, pa.array(other)).to_pylist()]
    return out
