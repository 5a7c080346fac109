"""Identifiers and sensitive columns replaced by tokens before anything is written in the clear."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.schema import EXTRAS_COLUMN, IDENTIFIER_COLUMNS


def protect_identifiers(frame: pd.DataFrame, tokenizer: Tokenizer,
                        sensitive: Sequence[str] = ()) -> pd.DataFrame:
    """Identifiers and sensitive columns as tokens, also inside the rescue policy's extras JSON."""
    out = frame.copy()
    for column in (*IDENTIFIER_COLUMNS, *sensitive):
        if column in out:
            out[column] = tokenizer.encrypt_series(out[column], column)
    if sensitive and EXTRAS_COLUMN in out:
        out[EXTRAS_COLUMN] = out[EXTRAS_COLUMN].map(
            lambda text: _protect_json(text, tokenizer, set(sensitive)))
    return out


def _protect_json(text: object, tokenizer: Tokenizer, sensitive: set[str]) -> object:
    if not isinstance(text, str):
        return text
    values = json.loads(text)
    for key in sensitive & set(values):
        if isinstance(values[key], str) and values[key]:
            values[key] = tokenizer.encrypt(values[key], key)
    return json.dumps(values, ensure_ascii=False, sort_keys=True)
