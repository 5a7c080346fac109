"""Independent test oracle: a plain-Python re-implementation of the platform's documented data rules.

Tests drop CSV files, then ask :func:`expected_state` what the sales table and the rejects table must
contain. Deliberately simple and standard-library only; it never imports ``sales_platform`` (nor pandas or
pyarrow), so a bug in the platform cannot leak into the expectation.

Rules, in the order they apply (first failing rule wins for a record):

1. Only names ending ``.csv`` (any case), not starting with ``.`` and not ending in a temporary-download
   suffix are taken; anything else is skipped as ``not_csv``.
2. A drop whose sha256 equals the sha256 of any *current* version is skipped as ``duplicate``.
3. A drop that cannot be read at all is skipped as ``quarantined`` and replaces nothing. Otherwise it becomes
   the current version of its exact name, replacing the previous version entirely.
4. Records of current versions: a first ``sep=,`` line is skipped; blank records and header rows
   (a later record naming the five columns: its section is read in its own column order) are
   ignored; the others are numbered 1.. (``source_row``); a wrong field count, or a value in an
   empty-named trailing column, is a landing ``malformed_row``.
5. Timestamp (landing): ``missing_timestamp``, ``invalid_timestamp``, ``future_timestamp``,
   ``before_start_date``.
6. Row rules (cleaning): missing ids, ``invalid_identifier``, quantity rules, ``unknown_product``.
7. Duplicates by normalized transaction id across all current files and days: ``duplicate_across_days``,
   ``duplicate_conflicting``, ``duplicate_identical`` (the earliest-landed copy, lowest row, is kept).
8. Given ``max_reject_rate``: a current version whose landing rejects (rules 4-5) are strictly more
   than that share of its records is blocked: its landing rejects stay, its other records are in
   neither table (not cleaned, so in no rule 6 or 7 either) until it is unblocked.

A reject keeps the customer and product ids it was rejected with (stored as tokens): a row rule's
reject (landing or cleaning) the cells as written, untrimmed; a duplicate the normalized ids, since it
is a copy of a normalized transaction; a malformed record none (its whole text is one token).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

HEADER: tuple[str, ...] = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp")
TEMP_SUFFIXES: tuple[str, ...] = (".tmp", ".partial", ".part", ".crdownload")
BOM = b"\xef\xbb\xbf"
MAX_ID_LENGTH = 64

LANDING = "landing"
CLEANING = "cleaning"

# Shape only; the values (month 13, Feb 30, hour 24, offset +25:00) are checked by ``datetime``.
# ASCII digits only; ``T`` and ``Z`` upper-case only; a fraction needs seconds.
_TS_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[T ]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,6}))?)?"
    r"(?P<z>Z|(?P<sign>[+-])(?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?)?"
)
_QTY_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_REFUSED = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}  # Unicode categories an id may not hold


@dataclass(frozen=True)
class Drop:
    """One file dropped into the drop zone, in drop order."""

    name: str
    content: bytes


@dataclass(frozen=True)
class ExpectedSale:
    """One row the sales table must hold."""

    transaction_id: str
    customer_id: str
    product_id: str
    quantity: int
    sale_ts: datetime  # naive UTC, whole seconds
    sale_date: date
    source_file: str
    source_row: int


@dataclass(frozen=True)
class ExpectedReject:
    """One row the rejects table must hold."""

    source_file: str
    source_row: int
    reason: str
    sale_date: date | None
    transaction_id: str | None
    stage: str
    # what its customer_id / product_id tokens decrypt to (not part of equality: older tests
    # compare rejects without them)
    customer_id: str | None = field(default=None, compare=False)
    product_id: str | None = field(default=None, compare=False)


@dataclass
class Expected:
    """What the platform must hold after landing and processing a sequence of drops."""

    sales: dict[str, ExpectedSale]
    rejects: list[ExpectedReject]
    current_files: dict[str, str]
    skipped: list[tuple[str, str, str]]
    current_order: list[str] = field(default_factory=list)  # current names, in landing order
    blocked: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule 8: name -> (rejected, read)

    def rows_by_day(self) -> dict[date, int]:
        """Sales rows per UTC day."""
        return dict(Counter(sale.sale_date for sale in self.sales.values()))

    def rejects_by_reason(self) -> dict[str, int]:
        """Reject count per reason."""
        return dict(Counter(reject.reason for reject in self.rejects))

    def rejects_by_day(self) -> dict[date | None, int]:
        """Reject count per day (``None`` for landing-stage rejects)."""
        return dict(Counter(reject.sale_date for reject in self.rejects))

    def accounted(self) -> dict[str, int]:
        """Per current file name: how many of its records ended in sales or rejects."""
        counts = dict.fromkeys(self.current_files, 0)
        for sale in self.sales.values():
            counts[sale.source_file] += 1
        for reject in self.rejects:
            counts[reject.source_file] += 1
        return counts


@dataclass(frozen=True)
class _Version:
    name: str
    sha256: str
    position: int  # index of the drop that landed it
    header: list[str]
    records: list[tuple[list[str], list[str]]]  # (data record, its section's header); row = index + 1


@dataclass(frozen=True)
class _Row:
    position: int
    source_file: str
    source_row: int
    transaction_id: str
    customer_id: str
    product_id: str
    quantity: int
    sale_ts: datetime
    sale_date: date


def csv_bytes(rows: list[list[str]], header: Sequence[str] | None = HEADER) -> bytes:
    """Build a UTF-8 CSV file (``\\n`` line endings); ``header=None`` writes no header line."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(list(header))
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def sha256_hex(content: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(content).hexdigest()


def is_taken(name: str) -> bool:
    """Rule 1: is this file name picked up from the drop zone at all?"""
    lower = name.lower()
    if name.startswith(".") or lower.endswith(TEMP_SUFFIXES):
        return False
    return lower.endswith(".csv")


def read_table(content: bytes) -> tuple[list[str], list[list[str]]] | None:
    """Rule 3/4: (header, non-blank data records), or ``None`` if the file cannot be read at all.
    Header rows inside the file are not data records (see ``read_sections``)."""
    sections = read_sections(content)
    if sections is None:
        return None
    return sections[0][0], [record for _, records in sections for record in records]


def read_sections(content: bytes) -> list[tuple[list[str], list[list[str]]]] | None:
    """Rule 3/4: the file's sections, each (its header's cells, its data records), or ``None`` if
    the file cannot be read at all.

    A first line ``sep=,`` (Excel) is skipped, any other ``sep=`` refuses the file. The header is
    the first non-blank record. A later record naming all five columns is another header: with
    the same columns it starts a section read in its own order, with others the file is refused.
    ``csv.Error`` (e.g. a field over the csv module's size limit) also counts as unreadable.
    """
    if b"\x00" in content:
        return None
    if content.startswith(BOM):
        content = content[len(BOM):]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip():
        return None
    try:
        records = [record for record in csv.reader(io.StringIO(text, newline="")) if record]
    except csv.Error:
        return None
    first_line = next(line for line in text.splitlines() if line.strip())
    if first_line.strip().lower().startswith("sep="):
        if first_line.strip().lower() != "sep=,":
            return None
        records = records[1:]
    if len(records) < 2:
        return None
    names = column_names(records[0])
    if not set(HEADER) <= set(names):
        return None
    sections: list[tuple[list[str], list[list[str]]]] = [(records[0], [])]
    for record in records[1:]:
        if set(HEADER) <= set(column_names(record)):
            if sorted(column_names(record)) != sorted(names):
                return None
            sections.append((record, []))
        else:
            sections[-1][1].append(record)
    if not any(records for _, records in sections):
        return None
    return sections


def column_names(header: list[str]) -> list[str]:
    """A header's column names: trimmed and lower-cased, a leading BOM dropped, and blank cells at
    its end (a delimiter ending every line) not columns."""
    names = [cell.strip().lower() for cell in header]
    if names:
        names[0] = names[0].lstrip("\ufeff").strip()
    while names and not names[-1]:
        names.pop()
    return names


def fits(header: list[str], record: list[str]) -> bool:
    """A record has one field per named column, or also the blank trailing ones."""
    named = len(column_names(header))
    return len(record) == named or (len(record) == len(header) and not any(
        field.strip() for field in record[named:]))


def _column_index(header: list[str]) -> dict[str, int]:
    """Canonical column name -> index (first occurrence wins)."""
    index: dict[str, int] = {}
    for position, name in enumerate(column_names(header)):
        index.setdefault(name, position)
    return index


def parse_timestamp(value: str, source_timezone: str = "UTC") -> datetime | str:
    """Rule 5 (shape and values): an aware UTC datetime (fraction kept), or a reject reason."""
    value = value.strip()
    if not value:
        return "missing_timestamp"
    match = _TS_RE.fullmatch(value)
    if match is None:
        return "invalid_timestamp"
    parts = match.groupdict()
    tzinfo: timezone | None = None
    try:
        if parts["z"] == "Z":
            tzinfo = UTC
        elif parts["z"]:
            hours, minutes = int(parts["oh"]), int(parts["om"] or 0)
            if minutes > 59:
                return "invalid_timestamp"
            offset = timedelta(hours=hours, minutes=minutes)
            tzinfo = timezone(-offset if parts["sign"] == "-" else offset)
        fraction = (parts["f"] or "").ljust(6, "0")
        wall = datetime(
            int(parts["y"]), int(parts["mo"]), int(parts["d"]), int(parts["h"]), int(parts["mi"]),
            int(parts["s"] or 0), int(fraction or 0), tzinfo=tzinfo,
        )
    except ValueError:
        return "invalid_timestamp"
    if tzinfo is not None:
        return _to_utc(wall)
    zone = ZoneInfo(source_timezone)
    local = wall.replace(tzinfo=zone)
    try:
        if local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset():
            return "invalid_timestamp"  # DST gap or fold
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
            return "invalid_timestamp"  # DST gap
    except OverflowError:
        pass  # at the ends of the datetime range there is no DST to worry about
    return _to_utc(local)


def _to_utc(moment: datetime) -> datetime:
    """Convert to UTC; instants outside datetime's range stay in their own zone (compare still works)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return moment


def check_timestamp(value: str, *, now: datetime, source_timezone: str = "UTC",
                    start_date: date = date(2024, 1, 1)) -> datetime | str:
    """Rule 5 in full: the aware UTC instant, or the landing reject reason."""
    parsed = parse_timestamp(value, source_timezone)
    if isinstance(parsed, str):
        return parsed
    if parsed > now + timedelta(hours=1):
        return "future_timestamp"
    if parsed < datetime.combine(start_date, time(0), tzinfo=UTC):
        return "before_start_date"
    return parsed


def normalize_id(value: str) -> str:
    """Identifier normalization (docs/pipeline.md): strip, NFC, upper-case, NFC again."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value.strip()).upper())


def invalid_id(ident: str) -> bool:
    """Over 64 characters once normalized, or a character of a refused category (controls, format
    characters such as U+200B, surrogates, private use, line/paragraph separators)."""
    return len(ident) > MAX_ID_LENGTH or any(unicodedata.category(ch) in _REFUSED for ch in ident)


def catalogue_prices(content: bytes) -> dict[str, Decimal]:
    """A product catalogue CSV (columns ``product_id`` and ``unit_price``, others ignored): normalized
    product id -> unit price to the cent. Its keys are the ``known_products`` once it is loaded into
    ``dim_products``; revenue of a sale is its quantity times this price."""
    text = content.decode("utf-8-sig")
    prices: dict[str, Decimal] = {}
    for record in csv.DictReader(io.StringIO(text, newline="")):
        price = Decimal(record["unit_price"].strip()).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        prices[normalize_id(record["product_id"])] = price
    return prices


def check_quantity(value: str, max_quantity: int = 1000) -> int | str:
    """Quantity rules: the integer quantity, or the cleaning reject reason."""
    value = value.strip()
    if not value:
        return "missing_quantity"
    if _QTY_RE.fullmatch(value) is None or not math.isfinite(float(value)):
        return "quantity_not_numeric"
    number = Decimal(value)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent < 0:  # whole iff every digit right of the point is zero
        fraction_digits = digits[exponent:] if -exponent <= len(digits) else digits
        if any(fraction_digits):
            return "quantity_not_integer"
    quantity = int(number)
    if quantity <= 0:
        return "quantity_not_positive"
    if quantity > max_quantity:
        return "quantity_outlier"
    return quantity


def _land(drops: Sequence[Drop]) -> tuple[dict[str, _Version], list[tuple[str, str, str]]]:
    """Rules 1-3: the current version of each name, and the skipped drops."""
    current: dict[str, _Version] = {}
    skipped: list[tuple[str, str, str]] = []
    for position, drop in enumerate(drops):
        digest = sha256_hex(drop.content)
        if not is_taken(drop.name):
            skipped.append((drop.name, digest, "not_csv"))
            continue
        if any(version.sha256 == digest for version in current.values()):
            skipped.append((drop.name, digest, "duplicate"))
            continue
        sections = read_sections(drop.content)
        if sections is None:
            skipped.append((drop.name, digest, "quarantined"))
            continue
        records = [(record, header) for header, rows in sections for record in rows]
        current[drop.name] = _Version(drop.name, digest, position, sections[0][0], records)
    return current, skipped


def _check_record(version: _Version, header: list[str], source_row: int, record: list[str], *,
                  now: datetime, known_products: set[str] | None, source_timezone: str, max_quantity: int,
                  start_date: date) -> _Row | ExpectedReject:
    """Rules 4-6 for one record: the row that passed, or its reject."""
    columns = _column_index(header)

    def reject(reason: str, day: date | None = None, tid: str | None = None) -> ExpectedReject:
        stage = LANDING if day is None else CLEANING
        return ExpectedReject(version.name, source_row, reason, day, tid, stage,
                              record[columns["customer_id"]], record[columns["product_id"]])

    if not fits(header, record):
        return ExpectedReject(version.name, source_row, "malformed_row", None, None, LANDING)
    moment = check_timestamp(record[columns["timestamp"]], now=now, source_timezone=source_timezone,
                             start_date=start_date)
    if isinstance(moment, str):
        return reject(moment)
    sale_ts = moment.replace(microsecond=0, tzinfo=None)
    day = sale_ts.date()
    tid = normalize_id(record[columns["transaction_id"]])
    cid = normalize_id(record[columns["customer_id"]])
    pid = normalize_id(record[columns["product_id"]])
    if not tid:
        return reject("missing_transaction_id", day)
    if not cid:
        return reject("missing_customer_id", day, tid)
    if not pid:
        return reject("missing_product_id", day, tid)
    if any(invalid_id(ident) for ident in (tid, cid, pid)):
        return reject("invalid_identifier", day, tid)
    quantity = check_quantity(record[columns["quantity"]], max_quantity)
    if isinstance(quantity, str):
        return reject(quantity, day, tid)
    if known_products is not None and pid not in known_products:
        return reject("unknown_product", day, tid)
    return _Row(version.position, version.name, source_row, tid, cid, pid, quantity, sale_ts, day)


def expected_state(drops: Sequence[Drop], *, now: datetime, known_products: set[str] | None = None,
                   source_timezone: str = "UTC", max_quantity: int = 1000,
                   start_date: date = date(2024, 1, 1),
                   max_reject_rate: float | None = None) -> Expected:
    """Everything the platform must hold after landing ``drops`` (in order) and processing them."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    current, skipped = _land(drops)
    versions = sorted(current.values(), key=lambda version: version.position)
    rejects: list[ExpectedReject] = []
    passed: list[_Row] = []
    blocked: dict[str, tuple[int, int]] = {}

    for version in versions:
        outcomes = [_check_record(version, header, source_row, record, now=now,
                                  known_products=known_products, source_timezone=source_timezone,
                                  max_quantity=max_quantity, start_date=start_date)
                    for source_row, (record, header) in enumerate(version.records, start=1)]
        at_landing = [o for o in outcomes if isinstance(o, ExpectedReject) and o.stage == LANDING]
        # rule 8, in integers: rejected / read > rate  <=>  rejected > rate * read
        if max_reject_rate is not None and Decimal(len(at_landing)) > \
                Decimal(str(max_reject_rate)) * len(outcomes):
            blocked[version.name] = (len(at_landing), len(outcomes))
            rejects.extend(at_landing)
            continue
        for outcome in outcomes:
            if isinstance(outcome, ExpectedReject):
                rejects.append(outcome)
            else:
                passed.append(outcome)

    groups: dict[str, list[_Row]] = {}
    for row in passed:
        groups.setdefault(row.transaction_id, []).append(row)
    sales: dict[str, ExpectedSale] = {}
    for tid, rows in groups.items():
        rows.sort(key=lambda row: (row.position, row.source_row))
        if len({row.sale_date for row in rows}) > 1:
            reason: str | None = "duplicate_across_days"
        elif len({(row.customer_id, row.product_id, row.quantity, row.sale_ts) for row in rows}) > 1:
            reason = "duplicate_conflicting"
        else:
            reason = None
        if reason is None:
            first, rest = rows[0], rows[1:]
            sales[tid] = ExpectedSale(tid, first.customer_id, first.product_id, first.quantity, first.sale_ts,
                                      first.sale_date, first.source_file, first.source_row)
            rows, reason = rest, "duplicate_identical"
        for row in rows:
            rejects.append(
                ExpectedReject(row.source_file, row.source_row, reason, row.sale_date, tid, CLEANING,
                               row.customer_id, row.product_id)
            )

    order = {version.name: version.position for version in versions}
    rejects.sort(key=lambda reject: (order[reject.source_file], reject.source_row))
    return Expected(
        sales=sales,
        rejects=rejects,
        current_files={version.name: version.sha256 for version in versions},
        skipped=skipped,
        current_order=[version.name for version in versions],
        blocked=blocked,
    )


# ---- rollups and exports: every aggregate table from the expected sales rows -----------------------

Totals = tuple[int, int, Decimal]  # transactions, total quantity, total revenue
CENT = Decimal("0.01")
CATEGORY_LABELS = ("Low", "Medium", "High")


def _sum(lines: list[tuple[int, Decimal | None]], unknown_is_none: bool = False) -> Totals:
    priced = [r for _, r in lines if r is not None]
    revenue = sum(priced, Decimal(0)) if priced or not unknown_is_none else None
    return len(lines), sum(q for q, _ in lines), revenue  # type: ignore[return-value]


def _category(revenue: Decimal | None, bins: tuple[Decimal, Decimal]) -> str:
    if revenue is None:
        return "Unpriced"
    return "Low" if revenue <= bins[0] else "Medium" if revenue <= bins[1] else "High"


def expected_rollups(sales: Sequence[ExpectedSale], prices: dict[str, Decimal],
                     bins: tuple[Decimal, Decimal] = (Decimal(100), Decimal(500))) -> dict[str, dict]:
    """The aggregate tables the platform must hold for ``sales`` (revenue = quantity x the product's
    price; a product without a price adds no revenue, and NULL per product). Keys per table:
    ``daily`` day, ``by_product`` (day, product id), ``by_customer`` (day, customer id), ``monthly``
    (year, month), ``yearly`` year -> Totals; ``by_category`` (year, month, category) ->
    (transactions, total revenue, mean revenue): every month with a sale has Low, Medium and High
    (zeros when empty, mean None), and Unpriced only when it has an unpriced sale (revenue None)."""
    groups: dict[str, dict] = {name: {} for name in ("daily", "by_product", "by_customer", "monthly",
                                                     "yearly")}
    cells: dict[tuple[int, int, str], list[Decimal | None]] = {}
    for sale in sales:
        price = prices.get(sale.product_id)
        revenue = None if price is None else (sale.quantity * price).quantize(CENT)
        day = sale.sale_date
        for name, key in (("daily", day), ("by_product", (day, sale.product_id)),
                          ("by_customer", (day, sale.customer_id)), ("monthly", (day.year, day.month)),
                          ("yearly", day.year)):
            groups[name].setdefault(key, []).append((sale.quantity, revenue))
        cells.setdefault((day.year, day.month, _category(revenue, bins)), []).append(revenue)
    tables = {name: {k: _sum(v, unknown_is_none=name == "by_product") for k, v in per.items()}
              for name, per in groups.items()}
    tables["by_category"] = {}
    for year, month in {(y, m) for y, m, _ in cells}:
        for label in (*CATEGORY_LABELS, "Unpriced"):
            found = cells.get((year, month, label), [])
            if label == "Unpriced":
                if found:
                    tables["by_category"][(year, month, label)] = (len(found), None, None)
                continue
            total = sum((r for r in found if r is not None), Decimal(0)).quantize(CENT)
            mean = (total / len(found)).quantize(CENT, "ROUND_HALF_UP") if found else None
            tables["by_category"][(year, month, label)] = (len(found), total, mean)
    return tables
