"""Sales categories, the category/month aggregate, the sales report and the artifact ledger (issue 17
items 3-5), as real materializations on SQLite and PostgreSQL.

Expected numbers come from the rows and prices this file writes, in plain Python: revenue = quantity
x price, categories by the documented right-closed bins, grouped by month.
"""

import base64
import csv
import hashlib
import importlib
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import delete, select

from sales_platform.core import report
from sales_platform.core.categories import parse_bins, sales_category
from sales_platform.core.codeversion import code_version, source_closure
from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.settings import SettingError
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import (
    agg_sales_by_category_monthly,
    data_models,
    data_objects,
    dim_products,
)
from sales_platform.definitions import defs
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    materialize,
    resources_for,
    write_csv,
)

PRICES = {"P1": Decimal("10.00"), "P2": Decimal("60.00"), "P3": Decimal("200.00")}
# (transaction, customer, product, quantity, timestamp); revenue = quantity x PRICES[product]
ROWS = [
    ("T01", "C1", "P1", 3, "2024-01-30T09:00:00"),    # 30.00
    ("T02", "C2", "P1", 10, "2024-01-30T10:00:00"),   # 100.00: the Low bound itself is Low
    ("T03", "C3", "P2", 2, "2024-01-30T11:00:00"),    # 120.00
    ("T04", "C1", "P3", 3, "2024-01-31T09:00:00"),    # 600.00
    ("T05", "C2", "P2", 5, "2024-01-31T12:00:00"),    # 300.00
    ("T06", "C4", "P3", 1, "2024-01-31T13:00:00"),    # 200.00
    ("T07", "C5", "P1", 1, "2024-02-01T08:00:00"),    # 10.00
    ("T08", "C6", "P2", 9, "2024-02-01T09:00:00"),    # 540.00
    ("T09", "C1", "P3", 2, "2024-02-01T10:00:00"),    # 400.00
    ("T10", "C7", "P1", 4, "2024-02-01T11:00:00"),    # 40.00
]
MISSING_CUSTOMER = ["T11", "", "P1", "2", "2024-02-01T12:00:00"]  # rejected, never filled
FIRST, LAST = "2024-01-30", "2024-02-01"
ROLLUP = ["agg_sales_monthly", "agg_sales_by_category_monthly", "sales_report"]


def category(amount: Decimal | None, low: Decimal, high: Decimal) -> str:
    """The documented rule, re-written here: right-closed bins, Unpriced without a price."""
    if amount is None:
        return "Unpriced"
    return "Low" if amount <= low else "Medium" if amount <= high else "High"


def expected(low: Decimal, high: Decimal, prices: dict[str, Decimal]) -> dict[tuple, tuple]:
    """(year, month, category) -> (transactions, total revenue, mean revenue), with the zero fill
    for empty Low/Medium/High months and NULL revenue for Unpriced."""
    lines: dict[tuple, list] = defaultdict(list)
    for _, _, product, quantity, ts in ROWS:
        day = date.fromisoformat(ts[:10])
        amount = quantity * prices[product] if product in prices else None
        lines[(day.year, day.month, category(amount, low, high))].append(amount)
    out = {}
    for year, month in {(k[0], k[1]) for k in lines}:
        for name in ("Low", "Medium", "High"):
            amounts = lines.get((year, month, name), [])
            total = sum(amounts, Decimal("0.00"))
            out[(year, month, name)] = (len(amounts), total,
                                        (total / len(amounts)).quantize(Decimal("0.01")) if amounts else None)
        if lines.get((year, month, "Unpriced")):
            out[(year, month, "Unpriced")] = (len(lines[(year, month, "Unpriced")]), None, None)
    return out


def stored(engine) -> dict[tuple, tuple]:
    t = agg_sales_by_category_monthly.c
    with engine.connect() as conn:
        return {(r.year, r.month, r.sales_category):
                (r.transactions, None if r.total_revenue is None else Decimal(str(r.total_revenue)),
                 None if r.mean_revenue is None else Decimal(str(r.mean_revenue)))
                for r in conn.execute(select(t.year, t.month, t.sales_category, t.transactions,
                                             t.total_revenue, t.mean_revenue))}


def write_inputs(data_dir: Path) -> None:
    path = data_dir / "catalogue" / "products.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "name", "category", "unit_price", "updated_at"])
        for pid, price in PRICES.items():
            writer.writerow([pid, f"Product {pid}", "Toys", str(price), "2024-01-01T00:00:00"])
    rows = [[t, c, p, str(q), ts] for t, c, p, q, ts in ROWS] + [MISSING_CUSTOMER]
    write_csv(data_dir / "incoming" / "sales.csv", rows)


def load(resources) -> None:
    tags = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
    materialize(resources, PRODUCTS)
    assert dg.materialize(all_assets(), selection=[*SALES_CHAIN, "agg_sales_daily"],
                          resources=resources, tags=tags).success


# --- pure rules ------------------------------------------------------------------------------------

def test_bins_are_right_closed_and_bad_settings_name_the_variable():
    bins = parse_bins("100,500")
    assert [sales_category(Decimal(v), bins) for v in ("0", "100", "100.01", "500", "500.01")] == \
        ["Low", "Low", "Medium", "Medium", "High"]
    assert sales_category(None, bins) == "Unpriced"
    for bad in ("100", "500,100", "a,b", "0,10", "1,2,3", "inf,nan"):
        with pytest.raises(SettingError, match="SALES_PLATFORM_CATEGORY_BINS"):
            parse_bins(bad)


# --- item 3: categories by month ---------------------------------------------------------------------

def test_category_month_aggregate_matches_plain_python_and_follows_the_bins(backend, data_dir, key,
                                                                            monkeypatch):
    monkeypatch.delenv("SALES_PLATFORM_CATEGORY_BINS", raising=False)
    write_inputs(data_dir)
    resources = resources_for(data_dir, backend.url, key, max_reject_rate=0.5)
    engine = cached_engine(resources["warehouse"].url())
    load(resources)
    result = materialize(resources, ["agg_sales_by_category_monthly"])
    meta = result.asset_materializations_for_node("agg_sales_by_category_monthly")[0].metadata
    assert meta["months_recomputed"].value == ["2024-01", "2024-02"]
    assert stored(engine) == expected(Decimal(100), Decimal(500), PRICES)
    again = materialize(resources, ["agg_sales_by_category_monthly"])
    assert again.asset_materializations_for_node("agg_sales_by_category_monthly")[0] \
        .metadata["months_recomputed"].value == []  # nothing changed, nothing recomputed

    # other bins: every month is recomputed with them; Medium empty in January -> zero-filled row
    monkeypatch.setenv("SALES_PLATFORM_CATEGORY_BINS", "300,550")
    materialize(resources, ["agg_sales_by_category_monthly"])
    want = expected(Decimal(300), Decimal(550), PRICES)
    assert stored(engine) == want
    assert want[(2024, 1, "Medium")] == (0, Decimal("0.00"), None)

    # a product leaves the dimension: its sales become Unpriced (no revenue), never revenue 0
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    with engine.begin() as conn:
        conn.execute(delete(dim_products).where(
            dim_products.c.product_token == tokenizer.encrypt_series(pd.Series(["P3"]), "product_id")[0]))
    tags = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
    # the daily aggregate per day, then the rollup in its own run (as rollups_job does)
    assert dg.materialize(all_assets(), selection=["agg_sales_daily"], resources=resources,
                          tags=tags).success
    assert materialize(resources, ["agg_sales_by_category_monthly"]).success
    without_p3 = {k: v for k, v in PRICES.items() if k != "P3"}
    assert stored(engine) == expected(Decimal(300), Decimal(550), without_p3)
    assert stored(engine)[(2024, 1, "Unpriced")] == (2, None, None)


# --- item 4: the report ------------------------------------------------------------------------------

def test_sales_report_writes_pngs_to_blob_and_shows_them_with_period_totals(data_dir, key, tmp_path):
    write_inputs(data_dir)
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.5)
    load(resources)
    result = materialize(resources, ROLLUP)
    meta = result.asset_materializations_for_node("sales_report")[0].metadata
    revenue = sum(q * PRICES[p] for _, _, p, q, _ in ROWS)
    assert meta["total_revenue"].value == pytest.approx(float(revenue))
    assert meta["transactions"].value == len(ROWS)
    assert meta["rejected_rows"].value == 1  # the row without a customer id
    assert meta["reject_rate"].value == pytest.approx(round(1 / (len(ROWS) + 1), 4))
    high = sum(q * PRICES[p] for _, _, p, q, _ in ROWS if q * PRICES[p] > 500)
    assert meta["high_category_revenue_share"].value == pytest.approx(round(float(high / revenue), 4))
    # the period starts at the first sale day, not REPORT_DAYS before the last one
    assert meta["period"].value == f"{FIRST} .. {LAST}"
    assert meta["mean_revenue_per_transaction"].value == round(float(revenue / len(ROWS)), 2)

    folder = data_dir / "blob" / "reports" / "sales" / LAST
    pngs = {p.stem: p.read_bytes() for p in folder.glob("*.png")}
    assert set(pngs) == {"daily_revenue", "revenue_by_category", "reject_reasons"}
    markdown = meta["charts"].value
    for name, png in pngs.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000, name
        assert f"data:image/png;base64,{base64.b64encode(png).decode()})" in markdown, name
        assert meta[f"blob/{name}"].value == str(folder / f"{name}.png")

    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        rows = conn.execute(select(data_objects).where(data_objects.c.stage == "sales_report")).all()
    version = defs.resolve_asset_graph().get(dg.AssetKey("sales_report")).code_version
    assert {(r.location, r.sha256, r.bytes, r.code_version, r.kind) for r in rows} == {
        (str(folder / f"{n}.png"), hashlib.sha256(b).hexdigest(), len(b), version, "report")
        for n, b in pngs.items()}

    # exports: each CSV in the ledger with the hash of the bytes in blob storage
    materialize(resources, ["agg_exports"])
    with engine.connect() as conn:
        exports = {r.location: (r.sha256, r.rows) for r in conn.execute(
            select(data_objects).where(data_objects.c.stage == "agg_exports"))}
    files = sorted((data_dir / "blob" / "exports").rglob("*.csv"))
    assert files and set(exports) == {str(p) for p in files}
    for path in files:
        lines = path.read_bytes().count(b"\n") - 1  # header; one line per row (no quoted newlines)
        assert exports[str(path)] == (hashlib.sha256(path.read_bytes()).hexdigest(), lines), path


# --- item 5: versions from code, ledger ------------------------------------------------------------------

def test_code_version_follows_the_code_and_is_the_same_in_every_process():
    from sales_platform.core.warehouse.aggregates import refresh_daily
    from sales_platform.defs.aggregates.assets import DAILY_AGGREGATES
    from sales_platform.versioning import stage_code_version

    daily = next(a for a in DAILY_AGGREGATES if a.table.name == "agg_sales_daily")
    assert daily.refresh is refresh_daily  # the core function the stage calls is its version
    assert "sales_platform.core.warehouse.aggregates.refresh_daily" in source_closure(daily.refresh)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("agg_sales_daily")).code_version == stage_code_version(
        daily.refresh, (daily.extra, daily.table))
    script = ("import warnings; warnings.simplefilter('ignore'); from sales_platform.definitions import "
              "defs; g = defs.resolve_asset_graph(); print(sorted((k.to_user_string(), "
              "g.get(k).code_version) for k in g.get_all_asset_keys()))")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(runs) == 1  # hash seeds differ per process; the versions do not


def test_a_changed_stage_source_changes_its_version(tmp_path, monkeypatch):
    package = tmp_path / "sales_platform_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    versions = []
    for body in ("return helper(x) + 1", "return helper(x) + 2"):
        module = package / f"m{len(versions)}.py"
        module.write_text("from sales_platform.core.categories import mean as helper\n\n"
                          f"def stage(x):\n    {body}\n")
        probe = importlib.import_module(f"sales_platform_probe.m{len(versions)}")
        versions.append((code_version(probe.stage), sorted(source_closure(probe.stage))))
    assert versions[0][0] != versions[1][0]
    assert "sales_platform.core.categories.mean" in versions[0][1]


def test_ledger_appends_objects_and_notes_each_stage_version_once(tmp_path):
    from sales_platform.core.warehouse.artifacts import Artifact, record_artifacts
    from sales_platform.core.warehouse.migrations import migrate

    engine = cached_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine)
    record_artifacts(engine, [Artifact("s", "export", "blob:a", "ab" * 32, 3, "src-1"),
                              Artifact("s", "export", "blob:b", "cd" * 32, 4, "src-1")])
    record_artifacts(engine, [Artifact("s", "export", "blob:a", "ef" * 32, 5, "src-2")])
    with pytest.raises(ValueError, match="kind 'picture'"):
        record_artifacts(engine, [Artifact("s", "picture", "x", None, None, "src-2")])
    with engine.connect() as conn:
        objects = [(r.location, r.rows, r.code_version) for r in
                   conn.execute(select(data_objects).order_by(data_objects.c.object_id))]
        models = sorted((r.stage, r.code_version) for r in conn.execute(select(data_models)))
    assert objects == [("blob:a", 3, "src-1"), ("blob:b", 4, "src-1"), ("blob:a", 5, "src-2")]
    assert models == [("s", "src-1"), ("s", "src-2")]


def test_every_reject_reason_has_its_own_colour_on_the_report():
    """Every reason the documentation lists (docs/pipeline.md, "Reasons.") gets its own colour."""
    from pathlib import Path

    from sales_platform.core.report import reason_colour

    text = (Path(__file__).resolve().parent.parent / "docs" / "pipeline.md").read_text()
    paragraph = text.split("**Reasons.**", 1)[1].split("\n\n", 1)[0]
    reasons = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", paragraph))
    assert len(reasons) >= 17  # the paragraph was found
    assert len({reason_colour(r) for r in reasons}) == len(reasons)


def test_sales_report_on_an_empty_warehouse_succeeds_with_nothing_drawn(data_dir, key, tmp_path):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    result = materialize(resources, ["sales_report"])
    meta = result.asset_materializations_for_node("sales_report")[0].metadata
    assert (meta["transactions"].value, meta["period"].value) == (0, "no sales loaded yet")
    assert not (data_dir / "blob" / "reports").exists()


# ---- bar tables: the report's figures on the asset page itself --------------------------------------

def _january(days: int, reasons: dict[str, int]) -> report.ReportData:
    data = report.ReportData(date(2024, 1, 1), date(2024, 1, 31))
    for i in range(days):
        data.daily[date(2024, 1, 1 + i)] = (10 + i, Decimal(1000 + 10 * i))
    data.rejects = {date(2024, 1, 31): dict(reasons)}
    data.by_category = {(2024, 1): {"High": Decimal("750.50"), "Low": Decimal("250.25")}}
    return data


def test_bar_tables_stay_under_the_uis_inline_limit_and_keep_the_last_days():
    """The UI shows a markdown value inline only under 1000 characters: a month of days keeps the
    newest days that fit (the month's last day among them) and says how many it shows."""
    table = report.revenue_by_day_table(_january(31, {}))
    assert len(table) < 1000
    shown = re.findall(r"^\| (\d\d)\u00a0Jan \|", table, flags=re.M)
    assert shown[-1] == "31" and shown == sorted(shown) and len(shown) > 10
    assert table.startswith(f"_last {len(shown)} of 31 days_")
    assert "| day (2024) | revenue |" in table
    assert "| 31\u00a0Jan | 1,300.00 |" in table  # day 31: 1000 + 10 * 30


def test_bar_tables_show_every_row_when_they_fit_with_bars_in_proportion():
    data = _january(3, {"unknown_product": 4, "duplicate_identical": 20, "invalid_timestamp": 1})
    days = report.revenue_by_day_table(data)
    assert "_last" not in days and days.count("\u00a0Jan |") == 3
    reasons = report.rejects_by_reason_table(data).splitlines()[2:]
    assert [line.split("|")[1].strip() for line in reasons] == [
        "`duplicate_identical`", "`unknown_product`", "`invalid_timestamp`"]  # largest first
    bars = [line.split("|")[3].strip() for line in reasons]
    assert [len(b) for b in bars] == [report.BAR_WIDTH, round(report.BAR_WIDTH * 4 / 20), 1]
    categories = report.revenue_by_category_table(data)
    assert "| High | 750.50 |" in categories and "| Low | 250.25 |" in categories
    assert report.rejects_by_reason_table(_january(1, {})) == "_none_"
