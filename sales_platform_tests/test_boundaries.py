"""Every rule with a threshold or a period, exactly at its boundary, one step under and one over.

Each test aims at one rule and is named after it, so the first red test names the rule that broke.
Expectations are written by hand from the inputs (the rules in docs/pipeline.md and
docs/configuration.md), cross-checked with the oracle where it implements the rule; never taken
from a platform count. Rules decided in plain Python run on the core alone; rules decided in SQL
(rollups, the ledger) run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import Engine, insert, select

from sales_platform.core import quality as q
from sales_platform.core import settings
from sales_platform.core.crypto import Keyring, Tokenizer, generate_key
from sales_platform.core.csvread import MAX_ROW_CHARS
from sales_platform.core.intake import Intake
from sales_platform.core.landing import MAX_COLUMNS
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse import tables as t
from sales_platform.core.warehouse.engine import cached_engine, make_engine
from sales_platform.core.warehouse.ledger import LANDED, LOADED, refresh_versions
from sales_platform.defs.aggregates.assets import DAILY_AGGREGATES
from sales_platform_tests import oracle
from sales_platform_tests.boundary_support import module_backend, range_run
from sales_platform_tests.helpers import HEADER, materialize, resources_for, write_csv

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
CENT = Decimal("0.01")


# ---- quantity: 1 .. SALES_PLATFORM_MAX_QUANTITY (default 1000) ----------------------------------

def _row(**overrides: str) -> pd.DataFrame:
    row = {"transaction_id": "T1", "customer_id": "C1", "product_id": "P1", "quantity": "2",
           "timestamp": "2024-03-01T10:00:00", **overrides}
    frame = pd.DataFrame([row])
    frame["sale_ts"] = q.parse_timestamps(frame["timestamp"])
    frame["source_file"], frame["source_row"] = "f.csv", 1
    return frame


def _cleaning_reason(rules: q.QualityRules, **overrides: str) -> str | None:
    rejects = q.clean_rows(_row(**overrides), rules, None).rejects
    return rejects["reason"].iloc[0] if len(rejects) else None


@pytest.mark.parametrize(("quantity", "reason"), [
    ("999", None), ("1000", None), ("1001", q.QUANTITY_OUTLIER),
    ("1000.0", None), ("1e3", None), ("1.001e3", q.QUANTITY_OUTLIER), (" 1000 ", None),
])
def test_quantity_outlier_is_strictly_above_the_default_max_quantity(quantity: str, reason):
    assert q.QualityRules().max_quantity == 1000  # the documented default
    assert _cleaning_reason(q.QualityRules(), quantity=quantity) == reason
    expected = int(float(quantity)) if reason is None else reason
    assert oracle.check_quantity(quantity) == expected  # the oracle agrees with the hand verdict


@pytest.mark.parametrize(("quantity", "reason"), [
    ("1", None), ("2", None), ("0", q.QUANTITY_NOT_POSITIVE), ("-1", q.QUANTITY_NOT_POSITIVE),
    ("0.0", q.QUANTITY_NOT_POSITIVE), ("-0", q.QUANTITY_NOT_POSITIVE),
])
def test_quantity_not_positive_is_zero_and_below(quantity: str, reason):
    assert _cleaning_reason(q.QualityRules(), quantity=quantity) == reason


@pytest.mark.parametrize(("limit", "quantity", "reason"), [
    (7, "6", None), (7, "7", None), (7, "8", q.QUANTITY_OUTLIER),
    (1, "1", None), (1, "2", q.QUANTITY_OUTLIER),
    # the largest limit allowed: one over it still exact in float64
    (10**15, str(10**15 - 1), None), (10**15, str(10**15), None),
    (10**15, str(10**15 + 1), q.QUANTITY_OUTLIER),
])
def test_quantity_outlier_follows_the_configured_max_quantity(limit: int, quantity: str, reason):
    assert _cleaning_reason(q.QualityRules(max_quantity=limit), quantity=quantity) == reason


@pytest.mark.parametrize(("raw", "accepted"), [
    ("1", True), ("0", False), (str(10**15), True), (str(10**15 + 1), False)])
def test_max_quantity_setting_accepts_1_to_10_pow_15(raw: str, accepted: bool, monkeypatch):
    monkeypatch.setenv(settings.MAX_QUANTITY, raw)
    _setting_verdict(settings.MAX_QUANTITY, accepted, 1000, 1, settings.MAX_QUANTITY_LIMIT, True)


@pytest.mark.parametrize(("raw", "accepted"), [
    ("0", True), ("1", True), ("-0.001", False), ("1.001", False)])
def test_max_reject_rate_setting_accepts_0_to_1(raw: str, accepted: bool, monkeypatch):
    monkeypatch.setenv(settings.MAX_REJECT_RATE, raw)
    _setting_verdict(settings.MAX_REJECT_RATE, accepted, 0.2, 0.0, 1.0, False)


def _setting_verdict(name: str, accepted: bool, default: float, low: float, high: float,
                     integer: bool) -> None:
    # the bounds the resource factory reads the setting with (resources/factory.py)
    if accepted:
        settings.env_number(name, default, low, high, integer=integer)
    else:
        with pytest.raises(settings.SettingError, match=name):
            settings.env_number(name, default, low, high, integer=integer)


# ---- time: future tolerance (1 h after now, UTC) and the start date -----------------------------

def _timestamp_reason(raw: str, now: datetime = NOW, **rules) -> str | None:
    _, reasons = q.route_timestamps(pd.Series([raw]), q.QualityRules(**rules), now)
    return reasons[0]


@pytest.mark.parametrize(("raw", "reason"), [
    ("2026-06-01T12:59:59Z", None),
    ("2026-06-01T13:00:00Z", None),  # exactly now + 1 h: not more than 1 h after now
    ("2026-06-01T13:00:01Z", q.FUTURE_TIMESTAMP),
    ("2026-06-01T13:00:00.000001Z", q.FUTURE_TIMESTAMP),  # the stored second is floored, not the rule
    ("2026-06-01T13:00:00.5Z", q.FUTURE_TIMESTAMP),
    ("2026-06-01T15:00:00+02:00", None),  # the same instant written with an offset
    ("2026-06-01T15:00:01+02:00", q.FUTURE_TIMESTAMP),
    ("2026-06-01 13:00:00", None),  # naive: read in the source zone (UTC)
])
def test_future_timestamp_is_more_than_one_hour_after_now(raw: str, reason):
    assert _timestamp_reason(raw) == reason
    verdict = oracle.check_timestamp(raw, now=NOW)
    assert (verdict if isinstance(verdict, str) else None) == reason


def test_future_tolerance_edge_is_taken_from_now_with_its_fraction_and_zone():
    # now in another zone and with a fraction: the edge is the same instant + 1 h, to the microsecond
    now = datetime(2026, 6, 1, 14, 0, 0, 500000, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert _timestamp_reason("2026-06-01T15:00:00.5Z", now) is None
    assert _timestamp_reason("2026-06-01T15:00:00.500001Z", now) == q.FUTURE_TIMESTAMP


@pytest.mark.parametrize(("raw", "start", "reason"), [
    ("2024-01-01T00:00:00Z", date(2024, 1, 1), None),
    ("2023-12-31T23:59:59Z", date(2024, 1, 1), q.BEFORE_START_DATE),
    ("2023-12-31T23:59:59.999999Z", date(2024, 1, 1), q.BEFORE_START_DATE),
    ("2024-01-01T00:59:59+01:00", date(2024, 1, 1), q.BEFORE_START_DATE),  # 23:59:59 UTC the day before
    ("2024-01-01T01:00:00+01:00", date(2024, 1, 1), None),
    ("2024-03-01T00:00:00", date(2024, 3, 1), None),
    ("2024-02-29T23:59:59", date(2024, 3, 1), q.BEFORE_START_DATE),
])
def test_before_start_date_is_strictly_before_its_first_utc_midnight(raw: str, start: date, reason):
    assert _timestamp_reason(raw, start_date=start) == reason
    verdict = oracle.check_timestamp(raw, now=NOW, start_date=start)
    assert (verdict if isinstance(verdict, str) else None) == reason


# ---- identifiers: at most 64 characters once trimmed and upper-cased ----------------------------

@pytest.mark.parametrize(("customer", "reason"), [
    ("C" * 63, None), ("c" * 64, None), ("C" * 65, q.INVALID_IDENTIFIER),
    ("  " + "C" * 64 + "  ", None),  # the spaces are trimmed before the length is taken
    ("ß" * 32, None),  # upper-cased to SS: 64 characters
    ("ß" * 32 + "a", q.INVALID_IDENTIFIER),  # 65 once upper-cased, 33 as written
])
def test_identifier_length_limit_is_64_characters_after_normalization(customer: str, reason):
    assert _cleaning_reason(q.QualityRules(), customer_id=customer) == reason
    record = ["T1", customer, "P1", "1", "2024-03-01T10:00:00"]
    expected = oracle.expected_state([oracle.Drop("a.csv", oracle.csv_bytes([record]))], now=NOW)
    assert [r.reason for r in expected.rejects] == ([reason] if reason else [])


# ---- landing: the UTC sale day, record size, width and file size --------------------------------

def _intake(data_dir: Path, key: str, tmp_path: Path, **limits) -> Intake:
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'landing.db'}")
    return Intake(areas, engine, Keyring.from_secrets(key), SchemaContract(), q.QualityRules(),
                  code_version="test", now=NOW.replace(tzinfo=None), settle_s=0, **limits)


def test_sale_day_is_the_utc_date_at_month_and_year_ends(data_dir: Path, key: str, tmp_path: Path):
    rows = [["T1", "C1", "P1", "1", "2024-01-31T23:59:59Z"], ["T2", "C1", "P1", "1", "2024-02-01T00:00:00Z"],
            ["T3", "C1", "P1", "1", "2024-12-31T23:59:59"], ["T4", "C1", "P1", "1", "2025-01-01T00:00:00"],
            ["T5", "C1", "P1", "1", "2025-01-01T00:59:59+01:00"],  # 2024-12-31 23:59:59 UTC
            ["T6", "C1", "P1", "1", "2024-02-29T19:00:00-05:00"]]  # 2024-03-01 00:00 UTC
    content = oracle.csv_bytes(rows)
    (data_dir / "incoming" / "edges.csv").write_bytes(content)
    (outcome,) = _intake(data_dir, key, tmp_path).run()
    by_hand = {"2024-01-31": 1, "2024-02-01": 1, "2024-12-31": 2, "2025-01-01": 1, "2024-03-01": 1}
    assert outcome.rows_by_day == by_hand
    expected = oracle.expected_state([oracle.Drop("edges.csv", content)], now=NOW)
    assert {d.isoformat(): n for d, n in expected.rows_by_day().items()} == by_hand


@pytest.mark.parametrize("reader", ["arrow", "csv module"])
@pytest.mark.parametrize(("extra", "reason"), [(-1, None), (0, None), (1, "row_too_large")])
def test_row_too_large_is_a_record_over_1_mib_of_text(extra: int, reason, reader: str, data_dir: Path,
                                                      key: str, tmp_path: Path):
    fields = ["T1", "", "P1", "1", "2024-03-01T10:00:00"]
    fields[1] = "C" * (MAX_ROW_CHARS + extra - sum(len(f) for f in fields))  # the fields' characters
    rows = [["T0", "C0", "P1", "1", "2024-03-01T09:00:00"], fields]
    if reader == "csv module":  # a malformed record sends the whole file through the exact reader
        rows.append(["T2", "too", "few"])
    write_csv(data_dir / "incoming" / "wide_row.csv", rows)
    intake = _intake(data_dir, key, tmp_path)
    (outcome,) = intake.run()
    with intake.engine.connect() as conn:
        rejects = conn.execute(select(t.sales_rejects.c.source_row, t.sales_rejects.c.reason)
                               .order_by(t.sales_rejects.c.source_row)).all()
    expected = [(2, reason)] if reason else []
    if reader == "csv module":
        expected.append((3, "malformed_row"))
    assert (outcome.rows_landed, rejects) == (1 if reason else 2, expected)


@pytest.mark.parametrize(("columns", "landed"), [(MAX_COLUMNS - 1, True), (MAX_COLUMNS, True),
                                                 (MAX_COLUMNS + 1, False)])
def test_max_columns_quarantines_only_wider_files(columns: int, landed: bool, data_dir: Path, key: str,
                                                  tmp_path: Path):
    assert MAX_COLUMNS == 200  # the documented default of SALES_PLATFORM_MAX_COLUMNS
    extras = [f"extra_{i}" for i in range(columns - len(HEADER))]
    write_csv(data_dir / "incoming" / "wide.csv",
              [["T1", "C1", "P1", "1", "2024-03-01T10:00:00", *("x" for _ in extras)]], [*HEADER, *extras])
    (outcome,) = _intake(data_dir, key, tmp_path).run()
    assert outcome.status == ("landed" if landed else "quarantined"), outcome.error


@pytest.mark.parametrize(("slack", "landed"), [(1, True), (0, True), (-1, False)])
def test_max_file_bytes_quarantines_only_larger_files(slack: int, landed: bool, data_dir: Path, key: str,
                                                      tmp_path: Path):
    path = write_csv(data_dir / "incoming" / "sized.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]])
    limit = path.stat().st_size + slack  # slack 0: the file is exactly at the limit
    (outcome,) = _intake(data_dir, key, tmp_path, max_file_bytes=limit).run()
    assert outcome.status == ("landed" if landed else "quarantined"), outcome.error


# ---- the reject rate: a day over SALES_PLATFORM_MAX_REJECT_RATE (default 0.2) is blocked --------

GOOD_ROW = ["C1", "P1", "1"]


@dataclass(frozen=True)
class RateDay:
    day: str
    good: int  # rows that pass every rule
    bad: int  # rows rejected for a quality failure (quantity 0)
    identical_copies: int = 0  # collapsed duplicates of a good row: not a quality failure

    def rows(self) -> list[list[str]]:
        stamp = f"{self.day}T10:00:00"
        good = [[f"{self.day}-G{i}", *GOOD_ROW, stamp] for i in range(self.good)]
        bad = [[f"{self.day}-B{i}", "C1", "P1", "0", stamp] for i in range(self.bad)]
        return good + bad + [good[0]] * self.identical_copies


RATE_DAYS = {
    "at": RateDay("2024-05-01", good=4, bad=1),  # 1 of 5 = 0.2: not over
    "under": RateDay("2024-05-02", good=5, bad=1),  # 1 of 6
    "over": RateDay("2024-05-03", good=3, bad=1),  # 1 of 4
    "copies": RateDay("2024-05-04", good=3, bad=1, identical_copies=1),  # 1 failed of 5 read
}


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int]]:
    """One range run over the four days, at the default limit: each file's ledger state and its
    day's rows in sales."""
    root = tmp_path_factory.mktemp("rate")
    data_dir = root / "data"
    for name, spec in RATE_DAYS.items():
        write_csv(data_dir / "incoming" / f"{name}.csv", spec.rows())
    resources = resources_for(data_dir, f"sqlite:///{root / 'w.db'}", generate_key())
    assert resources["platform"].max_reject_rate == 0.2  # the documented default
    days = sorted(s.day for s in RATE_DAYS.values())
    range_run(resources, days[0], days[-1])
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        status = dict(conn.execute(select(t.file_ledger.c.file_name, t.file_ledger.c.status)).all())
        loaded = [d.isoformat() for d in conn.execute(select(t.sales.c.sale_date)).scalars()]
    return {name: (status[f"{name}.csv"], loaded.count(spec.day)) for name, spec in RATE_DAYS.items()}


def test_reject_rate_exactly_at_the_limit_loads_the_day(rate_run):
    assert rate_run["at"] == (LOADED, RATE_DAYS["at"].good)


def test_reject_rate_just_under_the_limit_loads_the_day(rate_run):
    assert rate_run["under"] == (LOADED, RATE_DAYS["under"].good)


def test_reject_rate_just_over_the_limit_blocks_the_day(rate_run):
    assert rate_run["over"] == ("blocked", 0)


def test_identical_duplicates_do_not_count_toward_the_reject_rate_at_the_limit(rate_run):
    assert rate_run["copies"] == (LOADED, RATE_DAYS["copies"].good)


# ---- the ledger: a version is loaded only when every landed row is accounted for ----------------

def _ledger_row(engine: Engine, days: list[str], landed: int) -> None:
    now = datetime(2024, 6, 1)
    with engine.begin() as conn:
        conn.execute(insert(t.file_ledger).values(
            file_name="v.csv", sha256="a" * 64, size_bytes=1, status=LANDED, rows_read=landed * len(days),
            rows_landed=landed * len(days), rows_rejected=0, days_touched=json.dumps(days),
            days_affected=json.dumps(days), received_at=now))
        conn.execute(insert(t.file_day_counts), [
            {"file_name": "v.csv", "sha256": "a" * 64, "sale_date": date.fromisoformat(d),
             "rows_landed": landed} for d in days])


def _account(engine: Engine, day: str, in_sales: int, rejected: int) -> None:
    """Rows of v.csv on ``day``: some in sales, some rejected at cleaning."""
    at = datetime.fromisoformat(f"{day}T10:00:00")
    common = {"source_file": "v.csv", "source_sha256": "a" * 64}
    with engine.begin() as conn:
        for i in range(in_sales):
            conn.execute(insert(t.sales).values(
                transaction_id=f"{day}-{i}", customer_id="tok", product_id="tok", quantity=1,
                sale_date=at.date(), sale_ts=at, loaded_at=at, source_row=i + 1, **common))
        for i in range(rejected):
            conn.execute(insert(t.sales_rejects).values(
                stage="cleaning", sale_date=at.date(), source_row=in_sales + i + 1, reason="quantity_outlier",
                rejected_at=at, **common))


def _status(engine: Engine, day: str) -> str:
    with engine.begin() as conn:
        refresh_versions(conn, day, datetime(2024, 6, 2))
        return conn.execute(select(t.file_ledger.c.status)).scalar_one()


def test_file_version_one_row_short_of_accounted_is_not_loaded(backend):
    engine = make_engine(backend.url)
    _ledger_row(engine, ["2024-05-01"], landed=3)
    _account(engine, "2024-05-01", in_sales=1, rejected=1)  # 2 of 3
    assert _status(engine, "2024-05-01") == LANDED
    with engine.begin() as conn:  # the third row arrives as a reject: every row accounted for
        conn.execute(insert(t.sales_rejects).values(
            stage="cleaning", sale_date=date(2024, 5, 1), source_file="v.csv", source_sha256="a" * 64,
            source_row=3, reason="quantity_outlier", rejected_at=datetime(2024, 5, 1)))
    assert _status(engine, "2024-05-01") == LOADED
    engine.dispose()


def test_file_version_one_row_short_on_its_last_day_is_not_loaded(backend):
    engine = make_engine(backend.url)
    _ledger_row(engine, ["2024-05-30", "2024-05-31"], landed=2)
    _account(engine, "2024-05-30", in_sales=2, rejected=0)
    _account(engine, "2024-05-31", in_sales=1, rejected=0)
    assert _status(engine, "2024-05-31") == LANDED
    engine.dispose()


# ---- rollups and exports: the first and last day of each month and year -------------------------

@dataclass(frozen=True)
class Sale:
    day: str
    quantity: int
    customer: str
    product: str


PRICES = {"PA": Decimal("1.00"), "PB": Decimal("2.50"),
          # revenue exactly at and one cent over each category bound (bins 100,500, right-closed)
          "P100": Decimal("100.00"), "P100X": Decimal("100.01"), "P500": Decimal("500.00"),
          "P500X": Decimal("500.01")}
# Each day's quantity is its own power of two: a total says which days it summed.
SALES = [
    Sale("2024-01-01", 1, "CA", "PA"), Sale("2024-01-31", 2, "CB", "PB"),
    Sale("2024-02-01", 4, "CA", "PB"), Sale("2024-02-15", 8, "CB", "PA"),
    Sale("2024-02-29", 16, "CA", "PA"),
    Sale("2024-12-01", 32, "CB", "PB"), Sale("2024-12-31", 64, "CA", "PA"),
    Sale("2024-12-31", 128, "CB", "PB"), Sale("2025-01-01", 256, "CA", "PA"),
    # March: one sale per side of each category bound, on the month's first and last day
    Sale("2024-03-01", 1, "CA", "P100"), Sale("2024-03-31", 1, "CB", "P100X"),
    Sale("2024-03-01", 1, "CA", "P500"), Sale("2024-03-31", 1, "CB", "P500X"),
]
ROLLUPS = ["agg_sales_monthly", "agg_sales_yearly", "agg_sales_by_category_monthly", "agg_exports",
           "agg_sales_by_year_json"]
Totals = tuple[int, int, Decimal]  # transactions, total quantity, total revenue


def _revenue(sale: Sale) -> Decimal:
    return sale.quantity * PRICES[sale.product]


def _totals(sales: list[Sale]) -> Totals:
    return len(sales), sum(s.quantity for s in sales), sum((_revenue(s) for s in sales), Decimal(0))


def _grouped(key) -> dict:
    groups: dict = {}
    for sale in SALES:
        groups.setdefault(key(sale), []).append(sale)
    return {k: _totals(v) for k, v in groups.items()}


@dataclass
class Rollups:
    tables: dict[str, list[dict]]
    exports: dict[str, str]  # blob name -> text
    tokenizer: Tokenizer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rollups(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollups]:
    """SALES written into `sales`, each day's aggregates refreshed as the day step does, then one
    run of the rollups and exports."""
    root = tmp_path_factory.mktemp(f"rollups_{request.param}")
    key = generate_key()
    with module_backend(request.param, root) as url, pytest.MonkeyPatch.context() as mp:
        mp.delenv(settings.CATEGORY_BINS, raising=False)  # the documented default bins 100,500
        resources = resources_for(root / "data", url, key)
        engine = cached_engine(resources["warehouse"].url())
        tokenizer = Tokenizer(Keyring.from_secrets(key))
        _write_sales(engine, tokenizer)
        now = datetime.now()
        for day in sorted({s.day for s in SALES}):
            for aggregate in DAILY_AGGREGATES:
                aggregate.refresh_day(engine, day, now)
        materialize(resources, ROLLUPS, instance=dg.DagsterInstance.ephemeral())
        with engine.connect() as conn:
            tables = {name: [dict(r) for r in conn.execute(select(t.metadata.tables[name])).mappings()]
                      for name in ("agg_sales_daily", "agg_sales_monthly", "agg_sales_yearly",
                                   "agg_sales_by_category_monthly", "agg_sales_by_product",
                                   "agg_sales_by_customer")}
        blob = root / "data" / "blob"
        exports = {p.relative_to(blob).as_posix(): p.read_text() for p in (blob / "exports").rglob("*")
                   if p.is_file()}
        yield Rollups(tables, exports, tokenizer)


def _write_sales(engine: Engine, tokenizer: Tokenizer) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t.dim_products), [
            {"product_token": tokenizer.encrypt(p, "product_id"), "name": f"Product {p}",
             "category": "Toys", "unit_price": price, "updated_at": datetime(2024, 1, 1)}
            for p, price in PRICES.items()])
        conn.execute(insert(t.sales), [
            {"transaction_id": f"T{i}", "customer_id": tokenizer.encrypt(s.customer, "customer_id"),
             "product_id": tokenizer.encrypt(s.product, "product_id"), "quantity": s.quantity,
             "sale_date": date.fromisoformat(s.day), "sale_ts": _edge_time(s.day), "source_file": "f.csv",
             "loaded_at": datetime(2025, 1, 2), "source_sha256": "b" * 64, "source_row": i + 1}
            for i, s in enumerate(SALES)])


def _edge_time(day: str) -> datetime:
    """The first second of a month's first day, the last second of any other day."""
    moment = datetime.fromisoformat(day)
    return moment if moment.day == 1 else moment + timedelta(hours=23, minutes=59, seconds=59)


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT)


def _as_totals(row: dict) -> Totals:
    return int(row["transactions"]), int(row["total_quantity"]), _money(row["total_revenue"])


def test_daily_rollup_holds_the_first_and_last_day_of_each_month_and_year(rollups):
    got = {r["sale_date"].isoformat(): _as_totals(r) for r in rollups.tables["agg_sales_daily"]}
    assert got == _grouped(lambda s: s.day)


def test_monthly_rollup_sums_the_first_and_last_day_of_each_month(rollups):
    got = {(r["year"], r["month"]): _as_totals(r) for r in rollups.tables["agg_sales_monthly"]}
    assert got == _grouped(lambda s: (int(s.day[:4]), int(s.day[5:7])))


def test_yearly_rollup_sums_the_first_and_last_day_of_each_year(rollups):
    got = {r["year"]: _as_totals(r) for r in rollups.tables["agg_sales_yearly"]}
    assert got == _grouped(lambda s: int(s.day[:4]))


def test_by_product_rollup_holds_each_boundary_day(rollups):
    got = {(r["sale_date"].isoformat(), rollups.tokenizer.decrypt(r["product_token"], "product_id")):
           _as_totals(r) for r in rollups.tables["agg_sales_by_product"]}
    assert got == _grouped(lambda s: (s.day, s.product))


def test_by_customer_rollup_holds_each_boundary_day(rollups):
    got = {(r["sale_date"].isoformat(), rollups.tokenizer.decrypt(r["customer_token"], "customer_id")):
           _as_totals(r) for r in rollups.tables["agg_sales_by_customer"]}
    assert got == _grouped(lambda s: (s.day, s.customer))


def _category(revenue: Decimal) -> str:
    """The documented bins 100,500, right-closed."""
    return "Low" if revenue <= 100 else "Medium" if revenue <= 500 else "High"


def _by_category() -> dict[tuple[int, int, str], tuple[int, Decimal]]:
    expected: dict[tuple[int, int, str], tuple[int, Decimal]] = {}
    for year, month in {(int(s.day[:4]), int(s.day[5:7])) for s in SALES}:
        for label in ("Low", "Medium", "High"):  # empty categories are filled with zeros
            expected[(year, month, label)] = (0, Decimal("0.00"))
    for sale in SALES:
        key = (int(sale.day[:4]), int(sale.day[5:7]), _category(_revenue(sale)))
        n, total = expected[key]
        expected[key] = (n + 1, total + _revenue(sale))
    return expected


def test_by_category_monthly_rollup_counts_the_first_and_last_day_of_each_month(rollups):
    got = {(r["year"], r["month"], r["sales_category"]): (r["transactions"], _money(r["total_revenue"]))
           for r in rollups.tables["agg_sales_by_category_monthly"]}
    assert got == _by_category()


def test_category_bins_are_right_closed_at_their_bounds(rollups):
    march = {r["sales_category"]: r["transactions"] for r in rollups.tables["agg_sales_by_category_monthly"]
             if (r["year"], r["month"]) == (2024, 3)}
    # revenue 100.00 Low, 100.01 Medium, 500.00 Medium, 500.01 High
    assert march == {"Low": 1, "Medium": 2, "High": 1}


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _csv_totals(row: dict[str, str]) -> Totals:
    return int(row["transactions"]), int(row["total_quantity"]), _money(row["total_revenue"])


@pytest.mark.parametrize("year", [2024, 2025])
def test_yearly_csv_export_by_day_holds_its_years_first_and_last_day(rollups, year: int):
    rows = _csv_rows(rollups.exports[f"exports/agg_sales_by_day/{year}.csv"])
    assert {r["sale_date"]: _csv_totals(r) for r in rows} == {
        d: v for d, v in _grouped(lambda s: s.day).items() if d.startswith(str(year))}


@pytest.mark.parametrize("year", [2024, 2025])
def test_yearly_csv_export_by_month_holds_its_years_first_and_last_month(rollups, year: int):
    rows = _csv_rows(rollups.exports[f"exports/agg_sales_by_month/{year}.csv"])
    assert {(int(r["year"]), int(r["month"])): _csv_totals(r) for r in rows} == {
        k: v for k, v in _grouped(lambda s: (int(s.day[:4]), int(s.day[5:7]))).items() if k[0] == year}


@pytest.mark.parametrize("year", [2024, 2025])
def test_yearly_csv_export_by_year_sums_its_first_and_last_day(rollups, year: int):
    (row,) = _csv_rows(rollups.exports[f"exports/agg_sales_by_year/{year}.csv"])
    assert (int(row["year"]), _csv_totals(row)) == (year, _grouped(lambda s: int(s.day[:4]))[year])


@pytest.mark.parametrize(("name", "column", "field"), [
    ("agg_sales_by_product", "product_token", "product"), ("agg_sales_by_customer", "customer_token",
                                                           "customer")])
def test_yearly_csv_export_by_product_and_customer_hold_the_boundary_days(rollups, name: str, column: str,
                                                                          field: str):
    for year in (2024, 2025):
        rows = _csv_rows(rollups.exports[f"exports/{name}/{year}.csv"])
        got = {(r["sale_date"], rollups.tokenizer.decrypt(r[column], f"{field}_id")): _csv_totals(r)
               for r in rows}
        assert got == {k: v for k, v in _grouped(lambda s, f=field: (s.day, getattr(s, f))).items()
                       if k[0].startswith(str(year))}


def test_yearly_json_export_sums_the_first_and_last_day_of_each_year(rollups):
    got = {r["year"]: (r["transactions"], r["total_quantity"], _money(r["total_revenue"]))
           for r in json.loads(rollups.exports["exports/agg_sales_by_year.json"])}
    assert got == _grouped(lambda s: int(s.day[:4]))
