"""Cells of the CSV files people open in a spreadsheet, made inert (OWASP "CSV Injection").

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``); a leading
apostrophe makes it text there and is shown as nothing. Only text is touched: numbers, dates and
empty cells are written as they are, so a negative revenue stays a number (as does text that is
just a number, such as an Atlas guid ``-17``).

Used by every CSV the platform writes for people (exports, lineage tables). Not by the CSV streams
it writes for machines (the database bulk-load stream, mock input files), which must round-trip.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")  # -17 is a number, not a formula


def safe_cell(value: Any) -> Any:
    """``value``, with a leading apostrophe if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and \
            not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Any) -> list[Any]:
    return [safe_cell(value) for value in row]
