"""Products flow through the API, aggregates and exports, as real materializations."""

import csv
import io
import json
from datetime import date

import dagster as dg
from sqlalchemy import select

from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_yearly,
    dim_products,
    sales,
)
from sales_platform.products.api import create_app
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, all_assets, count, materialize, resources_for
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


def test_products_round_trip_over_real_http_with_a_token(data_dir, key, tmp_path):
    generated(data_dir, days=1)
    store = tmp_path / "api.sqlite"
    with serving(create_app(store, token="s3cr3t-token")) as base_url:
        resources = {**resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key),
                     "products_api": ProductsApiResource(base_url=base_url, token="s3cr3t-token")}
        result = materialize(resources, PRODUCTS)
        upload = result.asset_materializations_for_node("products_api_upload")[0].metadata
        assert upload["inserted"].value == 30 and upload["api"].value == "http"
        again = materialize(resources, PRODUCTS)
        assert again.asset_materializations_for_node("products_api_upload")[0] \
            .metadata["unchanged"].value == 30
        unauthorised = {**resources, "products_api": ProductsApiResource(base_url=base_url)}
        failed = materialize(unauthorised, PRODUCTS, raise_on_error=False)
        assert not failed.success
    engine = cached_engine(resources["warehouse"].url())
    catalogue = list(csv.DictReader(open(data_dir / "catalogue" / "products.csv")))
    with engine.connect() as conn:
        stored = {r.product_id: (r.name, float(r.unit_price))
                  for r in conn.execute(select(dim_products))}
    assert stored == {r["product_id"]: (r["name"], float(r["unit_price"])) for r in catalogue}
    assert json.loads((data_dir / "blob" / "products" / "products.json").read_text())[0]["product_id"]


def test_aggregates_exports_and_yearly_json_cover_changed_years_only(data_dir, key, tmp_path):
    files = generated(data_dir)  # 2024-12-30 .. 2025-01-02: two years
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    engine = cached_engine(resources["warehouse"].url())
    materialize(resources, PRODUCTS)
    load_days(resources, "2024-12-30", "2025-01-02")
    result = materialize(resources, ROLLUPS)
    exported = result.asset_materializations_for_node("agg_exports")[0].metadata
    assert exported["files_written"].value == 10  # 5 exports x 2 years

    total = sum(n for _, n in files)
    assert count(engine, sales) == total
    assert sum(int(r["transactions"]) for r in read_blob_csv(data_dir, "exports/agg_sales_by_year/2024.csv")
               + read_blob_csv(data_dir, "exports/agg_sales_by_year/2025.csv")) == total
    by_day = read_blob_csv(data_dir, "exports/agg_sales_by_day/2025.csv")
    assert list(by_day[0]) == ["sale_date", "transactions", "total_quantity", "total_revenue"]
    assert [r["sale_date"] for r in by_day] == ["2025-01-01", "2025-01-02"]
    by_product = read_blob_csv(data_dir, "exports/agg_sales_by_product/2024.csv")
    assert all(r["product_name"] and r["category"] for r in by_product)
    with engine.connect() as conn:
        customers = conn.execute(select(agg_sales_by_customer.c.customer_token)).scalars().all()
        product_rows = conn.execute(select(agg_sales_by_product)).all()
        yearly = {r.year: r.transactions for r in conn.execute(select(agg_sales_yearly))}
        daily_revenue = sum(r.total_revenue for r in conn.execute(select(agg_sales_daily)))
    assert customers and all("~" in c for c in customers)
    assert sum(r.transactions for r in product_rows) == total
    assert sum(r.total_revenue for r in product_rows) == daily_revenue
    api = ProductsApiResource(store_path=str(data_dir / "products_api.sqlite"))
    assert {r["year"]: r["transactions"] for r in api.get_sales_by_year()} == yearly

    quiet = materialize(resources, ROLLUPS).asset_materializations_for_node("agg_exports")[0].metadata
    assert quiet["files_written"].value == 0  # nothing changed: nothing rewritten

    load_days(resources, "2025-01-02", "2025-01-02")
    again = materialize(resources, ROLLUPS).asset_materializations_for_node("agg_exports")[0].metadata
    assert again["files_written"].value == 5  # only 2025 again
    assert "2025.csv" in again["files"].value and "2024.csv" not in again["files"].value
