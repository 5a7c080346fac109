"""Rollups and exports follow every change to `sales` (SQLite and PostgreSQL).

One story per backend, its state captured after each step and compared, whole tables, with the
oracle (sales_platform_tests/oracle.py) computed from the dropped files and the catalogue:

1. three files: 2024-12-30 (b.csv), three sales on 2025-01-01 (a.csv), 2025-02-10 (c.csv);
2. the correction: a new version of a.csv moves 2025-01-01's three sales to 2024-12-31, and only
   2024-12-31..2025-01-01 are re-run: month 2025-01 loses all its rows, year 2025 is touched through
   a day while its other day (2025-02-10) is not re-run, December and 2024 gain;
3. a new version of c.csv moves 2025-02-10's sale to 2024-11-20: year 2025 loses all its rows;
4. the runbook: rollups and exports left as the old max(refreshed_at) rule left them (2025 still
   there, nothing logged), the checks fail, "Rebuild aggregates" is followed, all is right again;
5. d.csv repeats 2024-12-30's transaction id on 2025-03-05 and only 2025-03-05 runs: the load moves
   2024-12-30's row to the rejects, and that day's aggregates, December and 2024 follow.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import delete, insert, select

from sales_platform.core.crypto import Keyring, Tokenizer, generate_key
from sales_platform.core.warehouse import tables as t
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.defs.aggregates.checks import (
    by_category_matches_sales,
    monthly_matches_daily,
    yearly_matches_daily,
)
from sales_platform.defs.exports.checks import exports_match_daily, yearly_json_matches_daily
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests import oracle
from sales_platform_tests.boundary_support import module_backend, range_run
from sales_platform_tests.helpers import PRODUCTS, all_assets, materialize, resources_for, write_csv

CHECKS = [monthly_matches_daily, yearly_matches_daily, by_category_matches_sales, exports_match_daily,
          yearly_json_matches_daily]
ROLLUPS = ["agg_sales_monthly", "agg_sales_yearly", "agg_sales_by_category_monthly", "agg_exports",
           "agg_sales_by_year_json"]
DAILY = ["agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
PRODUCT_IDS, PRICE = ["P1", "P2"], Decimal("2.50")
EXPORT_TABLES = {"agg_sales_by_day": "daily", "agg_sales_by_month": "monthly",
                 "agg_sales_by_year": "yearly", "agg_sales_by_product": "by_product",
                 "agg_sales_by_customer": "by_customer"}
CENT = Decimal("0.01")
JSON = "exports/agg_sales_by_year.json"


def _sale(tid: str, customer: str, product: str, quantity: int, moment: str) -> list[str]:
    return [tid, customer, product, str(quantity), moment]


B = [_sale("T4", "C2", "P2", 5, "2024-12-30T08:00:00")]
A1 = [_sale("T1", "C1", "P1", 1, "2025-01-01T00:00:00"), _sale("T2", "C2", "P2", 2, "2025-01-01T12:00:00"),
      _sale("T3", "C1", "P2", 4, "2025-01-01T23:59:59")]
A2 = [[*row[:4], "2024-12-31T" + row[4][11:]] for row in A1]  # the same three sales, a day earlier
C1 = [_sale("T5", "C3", "P1", 8, "2025-02-10T09:30:00")]
C2 = [_sale("T5", "C3", "P1", 8, "2024-11-20T09:30:00")]
D = [_sale("T4", "C3", "P1", 2, "2025-03-05T10:00:00")]  # 2024-12-30's transaction id again


@dataclass
class State:
    """What the platform holds after a step, with ids decrypted, next to the oracle's tables."""

    tables: dict[str, dict]
    exports: dict[tuple[str, int], dict]  # (export, year) -> key -> totals; {} for a header-only file
    api: dict[int, tuple]
    blob_json: dict[int, tuple]
    checks: dict[str, bool]
    expected: dict[str, dict]


def _money(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value)).quantize(CENT)


def _totals(row) -> tuple:
    return int(row["transactions"]), int(row["total_quantity"]), _money(row["total_revenue"])


def _key(name: str, row, decrypt) -> tuple | int | date:
    """The row's key as the oracle writes it (plaintext ids)."""
    day = lambda: date.fromisoformat(str(row["sale_date"])[:10])  # noqa: E731
    if name == "daily":
        return day()
    if name == "by_product":
        return day(), decrypt(row["product_token"], "product_id")
    if name == "by_customer":
        return day(), decrypt(row["customer_token"], "customer_id")
    if name == "monthly":
        return int(row["year"]), int(row["month"])
    return int(row["year"])


TABLES = {"daily": t.agg_sales_daily, "by_product": t.agg_sales_by_product,
          "by_customer": t.agg_sales_by_customer, "monthly": t.agg_sales_monthly,
          "yearly": t.agg_sales_yearly}


def _read_tables(engine, decrypt) -> dict[str, dict]:
    with engine.connect() as conn:
        got = {name: {_key(name, r, decrypt): _totals(r) for r in conn.execute(select(table)).mappings()}
               for name, table in TABLES.items()}
        got["by_category"] = {
            (int(r.year), int(r.month), r.sales_category):
            (int(r.transactions), _money(r.total_revenue), _money(r.mean_revenue))
            for r in conn.execute(select(t.agg_sales_by_category_monthly))}
    return got


def _read_exports(blob: Path, decrypt) -> dict[tuple[str, int], dict]:
    found = {}
    for path in (blob / "exports").glob("*/*.csv"):
        rows = csv.DictReader(io.StringIO(path.read_text(), newline=""))
        table = EXPORT_TABLES[path.parent.name]
        found[(path.parent.name, int(path.stem))] = {_key(table, r, decrypt): _totals(r) for r in rows}
    return found


def _by_year(records: list[dict]) -> dict[int, tuple]:
    return {int(r["year"]): _totals(r) for r in records}


class Story:
    def __init__(self, root: Path, url: str):
        self.data = root / "data"
        self.key = generate_key()
        self.resources = resources_for(self.data, url, self.key)
        self.engine = cached_engine(self.resources["warehouse"].url())
        self.decrypt = Tokenizer(Keyring.from_secrets(self.key)).decrypt
        self.drops: list[oracle.Drop] = []
        self.saved: dict[str, bytes] = {}  # blob name -> content, for the stale state of step 4
        self.instance = dg.DagsterInstance.ephemeral()

    def drop(self, name: str, rows: list[list[str]]) -> None:
        path = write_csv(self.data / "incoming" / name, rows)
        self.drops.append(oracle.Drop(name, path.read_bytes()))

    def run_days(self, first: str, last: str) -> None:
        assert range_run(self.resources, first, last, instance=self.instance).success

    def rollups(self) -> dict[str, bool]:
        result = dg.materialize([*all_assets(), *CHECKS], selection=ROLLUPS, resources=self.resources,
                                instance=self.instance)
        return self.check_results(result)

    @staticmethod
    def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    def run_checks(self) -> dict[str, bool]:
        result = dg.materialize([*all_assets(), *CHECKS], resources=self.resources, instance=self.instance,
                                selection=dg.AssetSelection.checks(*CHECKS))
        return self.check_results(result)

    def state(self, checks: dict[str, bool]) -> State:
        catalogue = (self.data / "catalogue" / "products.csv").read_bytes()
        prices = oracle.catalogue_prices(catalogue)
        expected = oracle.expected_state(self.drops, now=datetime.now(UTC), known_products=set(prices))
        api = ProductsApiResource(store_path=str(self.data / "products_api.sqlite")).get_sales_by_year()
        blob_json = json.loads((self.data / "blob" / JSON).read_text())
        return State(_read_tables(self.engine, self.decrypt), _read_exports(self.data / "blob", self.decrypt),
                     _by_year(api), _by_year(blob_json), checks,
                     oracle.expected_rollups(list(expected.sales.values()), prices))


def _write_catalogue(data: Path) -> None:
    path = data / "catalogue" / "products.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("product_id,name,category,unit_price,updated_at\n" + "".join(
        f"{p},Product {p},Toys,{PRICE},2024-01-01T00:00:00\n" for p in PRODUCT_IDS))


def _leave_2025_as_the_old_rule_did(story: Story, before: State) -> None:
    """Rollups and exports of step 1 for 2025 put back, nothing logged: what the max(refreshed_at)
    rule left after the corrections."""
    now = datetime(2025, 3, 1)
    with story.engine.begin() as conn:
        for table in (t.agg_sales_monthly, t.agg_sales_yearly, t.agg_sales_by_category_monthly):
            conn.execute(delete(table).where(table.c.year == 2025))
        conn.execute(delete(t.agg_changes))
        conn.execute(insert(t.agg_sales_monthly), [
            {"year": y, "month": m, "transactions": n, "total_quantity": q, "total_revenue": r,
             "refreshed_at": now} for (y, m), (n, q, r) in before.tables["monthly"].items() if y == 2025])
        conn.execute(insert(t.agg_sales_yearly), [
            {"year": 2025, "transactions": n, "total_quantity": q, "total_revenue": r, "refreshed_at": now}
            for n, q, r in [before.tables["yearly"][2025]]])
        conn.execute(insert(t.agg_sales_by_category_monthly), [
            {"year": y, "month": m, "sales_category": c, "transactions": n, "total_revenue": r,
             "mean_revenue": mean, "bins": "100,500", "refreshed_at": now}
            for (y, m, c), (n, r, mean) in before.tables["by_category"].items() if y == 2025])
    for name, content in story.saved.items():  # the export files and the JSON of step 1
        (story.data / "blob" / name).write_bytes(content)
    api = ProductsApiResource(store_path=str(story.data / "products_api.sqlite"))
    api.post_sales_by_year(json.loads(story.saved[JSON]))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def story(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, State]]:
    root = tmp_path_factory.mktemp(f"follow_{request.param}")
    with module_backend(request.param, root) as url:
        s = Story(root, url)
        _write_catalogue(s.data)
        materialize(s.resources, PRODUCTS, instance=s.instance)
        states: dict[str, State] = {}
        for name, rows in (("b.csv", B), ("a.csv", A1), ("c.csv", C1)):
            s.drop(name, rows)
        s.run_days("2024-12-30", "2025-02-10")
        states["loaded"] = s.state(s.rollups())
        s.saved = {n: (s.data / "blob" / n).read_bytes()
                   for n in [*(f"exports/{e}/2025.csv" for e in EXPORT_TABLES), JSON]}
        s.drop("a.csv", A2)
        s.run_days("2024-12-31", "2025-01-01")  # 2025-02-10 is not re-run
        states["corrected"] = s.state(s.rollups())
        s.drop("c.csv", C2)
        s.run_days("2024-11-20", "2024-11-20")
        s.run_days("2025-02-10", "2025-02-10")
        states["year_emptied"] = s.state(s.rollups())
        _leave_2025_as_the_old_rule_did(s, states["loaded"])
        states["left_stale"] = s.state(s.run_checks())
        # docs/runbook.md "Rebuild aggregates": the daily aggregates of the range, then rollups_job
        assert range_run(s.resources, "2024-12-30", "2025-02-10", selection=DAILY,
                         instance=s.instance).success
        states["rebuilt"] = s.state(s.rollups())
        s.drop("d.csv", D)
        s.run_days("2025-03-05", "2025-03-05")  # 2024-12-30, whose row this moves, is not re-run
        states["evicted"] = s.state(s.rollups())
        yield states


def assert_matches_oracle(state: State) -> None:
    want = state.expected
    for name in ("daily", "by_product", "by_customer", "monthly", "yearly", "by_category"):
        assert state.tables[name] == want[name], name
    years = {d.year for d in want["daily"]}
    for (export, year), rows in state.exports.items():  # every file holds exactly its year's rows
        table = want[EXPORT_TABLES[export]]
        assert rows == {k: v for k, v in table.items() if _year_of(k) == year}, (export, year)
    assert {(e, y) for e, y in state.exports if state.exports[(e, y)]} == {
        (e, y) for e in EXPORT_TABLES for y in years}
    zero = (0, 0, Decimal("0.00"))
    for where in (state.api, state.blob_json):  # a year without sales is absent or zero
        assert {y: v for y, v in where.items() if v != zero} == want["yearly"]
    assert state.checks and all(state.checks.values()), state.checks


def _year_of(key) -> int:
    first = key[0] if isinstance(key, tuple) else key
    return first.year if isinstance(first, date) else first


def test_first_load_matches_the_oracle(story):
    assert_matches_oracle(story["loaded"])
    assert set(story["loaded"].checks) == {c.check_key.name for c in CHECKS}


def test_a_correction_moving_a_day_across_month_and_year_end_is_followed(story):
    state = story["corrected"]
    assert_matches_oracle(state)
    assert (2025, 1) not in state.tables["monthly"] and state.tables["monthly"][(2024, 12)][0] == 4
    assert state.tables["yearly"][2025] == state.expected["yearly"][2025] == (1, 8, Decimal("20.00"))


def test_a_month_losing_all_its_rows_leaves_every_rollup_and_export(story):
    state = story["corrected"]
    assert not [k for k in state.tables["by_category"] if k[:2] == (2025, 1)]
    assert not [k for k in state.exports[("agg_sales_by_month", 2025)] if k[1] == 1]


def test_a_year_touched_through_a_day_while_its_other_day_is_not_rerun(story):
    state = story["corrected"]  # 2025-02-10 was loaded in step 1 only
    assert state.exports[("agg_sales_by_year", 2025)] == {2025: state.expected["yearly"][2025]}
    assert state.api[2025] == state.expected["yearly"][2025]


def test_a_year_losing_all_its_rows_is_emptied_in_exports_and_zero_at_the_api(story):
    state = story["year_emptied"]
    assert_matches_oracle(state)
    assert 2025 not in state.tables["yearly"] and 2025 not in state.expected["yearly"]
    assert all(state.exports[(name, 2025)] == {} for name in EXPORT_TABLES)  # header-only files
    assert state.api[2025] == (0, 0, Decimal("0.00"))


def test_every_check_catches_rollups_and_exports_left_stale(story):
    assert story["left_stale"].checks == {c.check_key.name: False for c in CHECKS}


def test_the_runbooks_rebuild_really_rebuilds(story):
    assert_matches_oracle(story["rebuilt"])


def test_a_load_that_moves_another_days_row_refreshes_that_days_aggregates(story):
    state = story["evicted"]
    assert_matches_oracle(state)
    assert date(2024, 12, 30) not in state.expected["daily"]  # both copies rejected
    assert date(2024, 12, 30) not in state.tables["daily"]


def test_refreshing_a_month_leaves_the_next_months_first_day_to_that_month(tmp_path: Path):
    """Only January changes; February's rows (a sale on its 1st) stay February's, counted once."""
    with module_backend("sqlite", tmp_path) as url:
        s = Story(tmp_path, url)
        _write_catalogue(s.data)
        materialize(s.resources, PRODUCTS, instance=s.instance)
        s.drop("jan.csv", [_sale("T1", "C1", "P1", 1, "2025-01-31T23:00:00")])
        s.drop("feb.csv", [_sale("T2", "C2", "P2", 2, "2025-02-01T00:00:00")])
        s.run_days("2025-01-31", "2025-02-01")
        s.rollups()
        s.drop("jan.csv", [_sale("T1", "C1", "P1", 3, "2025-01-31T23:00:00")])  # corrected
        s.run_days("2025-01-31", "2025-01-31")
        state = s.state(s.rollups())
        assert_matches_oracle(state)
        assert state.tables["by_category"][(2025, 2, "Low")][0] == 1


def test_the_export_log_holds_one_row_per_exported_file(tmp_path: Path):
    """export_log answers "which files were exported, with how many rows": one row per (export,
    year) file in blob storage, its row count that of the file."""
    with module_backend("sqlite", tmp_path) as url:
        s = Story(tmp_path, url)
        _write_catalogue(s.data)
        materialize(s.resources, PRODUCTS, instance=s.instance)
        s.drop("a.csv", [_sale("T1", "C1", "P1", 1, "2024-12-31T10:00:00"),
                         _sale("T2", "C2", "P2", 2, "2025-01-01T10:00:00")])
        s.run_days("2024-12-31", "2025-01-01")
        s.rollups()
        files = {(p.parent.name, int(p.stem)): len(p.read_text().splitlines()) - 1
                 for p in (s.data / "blob" / "exports").glob("*/*.csv")}
        with s.engine.connect() as conn:
            logged = {(r.export_name, int(r.year)): int(r.rows) for r in conn.execute(select(t.export_log))}
        assert files and logged == files
