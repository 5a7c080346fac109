"""Products flow through the API, aggregates and exports, as real materializations."""

import csv
import io
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
from sqlalchemy import select

from sales_platform.api.products import create_app
from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_yearly,
    dim_products,
)
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, all_assets, materialize, resources_for
from sales_platform_tests.oracle import Expected, catalogue_prices
from sales_platform_tests.test_pipeline import drops_in, matches_oracle
from sales_platform_tests.test_products_api import serving

PER_DAY = [*SALES_CHAIN, "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
ROLLUPS = ["agg_sales_monthly", "agg_sales_yearly", "agg_exports", "agg_sales_by_year_json"]


def load_days(resources, first: str, last: str) -> None:
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    assert dg.materialize(all_assets(), selection=PER_DAY, resources=resources, tags=tags).success


def generated(data_dir, start=date(2024, 12, 30), days=4, rows=300):
    return generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", start, days, rows,
                    GeneratorSettings(seed=11, customers=200, products=30, defect_rate=0.0))


def read_blob_csv(data_dir, name) -> list[dict]:
    return list(csv.DictReader(io.StringIO((data_dir / "blob" / name).read_text())))


def read_catalogue(data_dir: Path) -> dict[str, tuple[str, str, Decimal]]:
    """The catalogue the test loads, read with csv: product id -> (name, category, unit price)."""
    content = (data_dir / "catalogue" / "products.csv").read_bytes()
    prices = catalogue_prices(content)
    rows = csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    named = {r["product_id"].strip().upper(): (r["name"], r["category"]) for r in rows}
    return {pid: (*named[pid], price) for pid, price in prices.items()}


Totals = tuple[int, int, Decimal]  # transactions, total quantity, total revenue


def expected_totals(expected: Expected, catalogue: dict[str, tuple[str, str, Decimal]]) -> dict[str, dict]:
    """Per day, per (day, product), per (day, customer) and per year, in plain Python from the oracle's
    sales rows joined with the catalogue: revenue = quantity x unit price."""
    groups: dict[str, dict] = {"day": defaultdict(list), "product": defaultdict(list),
                               "customer": defaultdict(list), "year": defaultdict(list)}
    for sale in expected.sales.values():
        line = (sale.quantity, sale.quantity * catalogue[sale.product_id][2])
        for name, group in (("day", sale.sale_date), ("product", (sale.sale_date, sale.product_id)),
                            ("customer", (sale.sale_date, sale.customer_id)), ("year", sale.sale_date.year)):
            groups[name][group].append(line)
    return {name: {group: (len(lines), sum(q for q, _ in lines), sum(r for _, r in lines))
                   for group, lines in per.items()} for name, per in groups.items()}


def totals(row) -> Totals:
    """(transactions, total quantity, total revenue) of a table row, an export line or an API record."""
    row = row if isinstance(row, dict) else row._mapping
    return int(row["transactions"]), int(row["total_quantity"]), Decimal(str(row["total_revenue"]))


def test_products_round_trip_over_real_http_with_a_token(data_dir, key, tmp_path):
    generated(data_dir, days=1)
    catalogue = list(csv.DictReader(open(data_dir / "catalogue" / "products.csv", newline="")))
    assert catalogue
    store = tmp_path / "api.sqlite"
    with serving(create_app(store, token="s3cr3t-token")) as base_url:
        resources = {**resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key),
                     "products_api": ProductsApiResource(base_url=base_url, token="s3cr3t-token")}
        result = materialize(resources, PRODUCTS)
        upload = result.asset_materializations_for_node("products_api_upload")[0].metadata
        assert upload["inserted"].value == len(catalogue) and upload["api"].value == "http"
        again = materialize(resources, PRODUCTS)
        assert again.asset_materializations_for_node("products_api_upload")[0] \
            .metadata["unchanged"].value == len(catalogue)
        unauthorised = {**resources, "products_api": ProductsApiResource(base_url=base_url)}
        failed = materialize(unauthorised, PRODUCTS, raise_on_error=False)
        assert not failed.success
    engine = cached_engine(resources["warehouse"].url())
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    with engine.connect() as conn:
        assert "product_id" not in {c.name for c in dim_products.columns}
        stored = {tokenizer.decrypt(r.product_token): (r.name, float(r.unit_price))
                  for r in conn.execute(select(dim_products))}
    assert stored == {r["product_id"].upper(): (r["name"], float(r["unit_price"])) for r in catalogue}
    assert json.loads((data_dir / "blob" / "products" / "products.json").read_text())[0]["product_id"]


def test_aggregates_exports_and_yearly_json_cover_changed_years_only(data_dir, key, tmp_path):
    generated(data_dir)  # 2024-12-30 .. 2025-01-02: two years
    drops, catalogue = drops_in(data_dir / "incoming"), read_catalogue(data_dir)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    resources = resources_for(data_dir, url, key)
    engine = cached_engine(resources["warehouse"].url())
    materialize(resources, PRODUCTS)
    load_days(resources, "2024-12-30", "2025-01-02")
    result = materialize(resources, ROLLUPS)
    exported = result.asset_materializations_for_node("agg_exports")[0].metadata
    assert exported["files_written"].value == 10  # 5 exports x 2 years

    expected = matches_oracle(data_dir, url, key, drops, known_products=set(catalogue))
    want = expected_totals(expected, catalogue)
    assert sorted(want["year"]) == [2024, 2025] and len(want["day"]) == 4
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    with engine.connect() as conn:
        daily = {r.sale_date: totals(r) for r in conn.execute(select(agg_sales_daily))}
        yearly = {r.year: totals(r) for r in conn.execute(select(agg_sales_yearly))}
        by_product = {(r.sale_date, tokenizer.decrypt(r.product_token)):
                      (r.product_name, r.category, totals(r))
                      for r in conn.execute(select(agg_sales_by_product))}
        by_customer = {(r.sale_date, tokenizer.decrypt(r.customer_token)): totals(r)
                       for r in conn.execute(select(agg_sales_by_customer))}
    assert daily == want["day"]
    assert yearly == want["year"]
    assert by_product == {(d, p): (*catalogue[p][:2], t) for (d, p), t in want["product"].items()}
    assert by_customer == want["customer"]
    api = ProductsApiResource(store_path=str(data_dir / "products_api.sqlite"))
    assert {r["year"]: totals(r) for r in api.get_sales_by_year()} == want["year"]

    for year in (2024, 2025):
        (row,) = read_blob_csv(data_dir, f"exports/agg_sales_by_year/{year}.csv")
        assert (int(row["year"]), totals(row)) == (year, want["year"][year])
    by_day = read_blob_csv(data_dir, "exports/agg_sales_by_day/2025.csv")
    assert list(by_day[0]) == ["sale_date", "transactions", "total_quantity", "total_revenue"]
    assert [(date.fromisoformat(r["sale_date"]), totals(r)) for r in by_day] == sorted(
        (d, t) for d, t in want["day"].items() if d.year == 2025)
    exported_products = read_blob_csv(data_dir, "exports/agg_sales_by_product/2024.csv")
    assert exported_products  # non-empty, and exactly the 2024 rows, names and categories included
    assert sorted((date.fromisoformat(r["sale_date"]), tokenizer.decrypt(r["product_token"]),
                   r["product_name"], r["category"], totals(r)) for r in exported_products) == sorted(
        (d, p, *catalogue[p][:2], t) for (d, p), t in want["product"].items() if d.year == 2024)

    quiet = materialize(resources, ROLLUPS).asset_materializations_for_node("agg_exports")[0].metadata
    assert quiet["files_written"].value == 0  # nothing changed: nothing rewritten

    load_days(resources, "2025-01-02", "2025-01-02")
    again = materialize(resources, ROLLUPS).asset_materializations_for_node("agg_exports")[0].metadata
    assert again["files_written"].value == 5  # only 2025 again
    assert "2025.csv" in again["files"].value and "2024.csv" not in again["files"].value
