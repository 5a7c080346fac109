"""The documented limits the warehouse columns are sized from, the same on every backend.

Column types are derived here from the limits the platform already enforces (an id's length, a
file name's bytes, SALES_PLATFORM_MAX_QUANTITY, SALES_PLATFORM_MAX_FILE_BYTES), never picked by
hand, so a value the pipeline accepts is a value every backend stores (docs/configuration.md,
"Limits"). Text a backend cannot store (NUL, which PostgreSQL text refuses) is replaced before any
database sees it.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from sqlalchemy import BigInteger, Integer, Numeric
from sqlalchemy.types import TypeEngine

UTF8_MAX_BYTES_PER_CHAR = 4
UTF16_MAX_UNITS_PER_CHAR = 2  # SQL Server counts NVARCHAR in UTF-16 units: an astral char is two
MAX_NAME_BYTES = 255  # NAME_MAX of the usual file systems (ext4, XFS, NTFS in UTF-16 units too)
ESCAPED_BYTE_CHARS = 4  # printable_name shows an undecodable or control byte as \xNN
SHA256_HEX = 64
# SQL Server's index key limits (bytes): a clustered index (a primary key), a nonclustered one
MSSQL_CLUSTERED_KEY_BYTES = 900
MSSQL_NONCLUSTERED_KEY_BYTES = 1700
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
UNIT_PRICE_DIGITS = (12, 2)  # dim_products.unit_price: the products API's prices
REVENUE_DIGITS = (38, 2)  # quantity (<= 10^15) x unit price (< 10^10), summed: see the docs
# A drop's name as shown (printable_name) is at most 4 characters per byte of a name the file
# system allows; longer names (only quarantined ones: a blob name over 255 bytes) are cut. The cap
# also keeps (file_name, sha256) within SQL Server's nonclustered key limit (NVARCHAR: 2 bytes a unit).
SHOWN_NAME_LENGTH = min(ESCAPED_BYTE_CHARS * MAX_NAME_BYTES,
                        (MSSQL_NONCLUSTERED_KEY_BYTES - SHA256_HEX) // 2)
NUL_REPLACEMENT = "\ufffd"  # PostgreSQL text cannot hold U+0000; every backend stores this instead


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def stored_name(name: str, limit: int = SHOWN_NAME_LENGTH) -> str:
    """``name`` as the ledger stores it: unchanged when it fits ``limit`` characters (UTF-16 units,
    so SQL Server holds it too); else cut, with ``…#`` and 12 hex digits of its sha256 so two long
    names that share their first characters stay two ledger rows."""
    if utf16_units(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    tail = f"…#{digest}"
    head, room = [], limit - len(tail)
    for ch in name:
        room -= utf16_units(ch)
        if room < 0:
            break
        head.append(ch)
    return "".join(head) + tail


def storable_text(value: object) -> object:
    """A text cell without the characters a backend cannot store (NUL), the same everywhere."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", NUL_REPLACEMENT)
    return value


def integer_capacity(type_: TypeEngine, dialect: str) -> int | Decimal | None:
    """The largest value a column of ``type_`` holds on ``dialect`` (None: not a number type).
    SQLite's INTEGER is always 64-bit."""
    if isinstance(type_, BigInteger) or (isinstance(type_, Integer) and dialect == "sqlite"):
        return BIGINT_MAX
    if isinstance(type_, Integer):
        return INTEGER_MAX
    if isinstance(type_, Numeric) and type_.precision is not None:
        scale = type_.scale or 0
        return Decimal(10) ** (type_.precision - scale) - Decimal(10) ** -scale
    return None
