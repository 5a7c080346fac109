"""Helpers to run real Dagster materializations of the platform's assets in tests."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
from sqlalchemy import func, select

from sales_platform.definitions import defs
from sales_platform.resources.blob import LocalBlobStorage
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import SqlUrlWarehouse

SALES_CHAIN = ["raw_sales", "cleaned_sales", "sales_rejects", "encrypted_sales", "sales"]
PRODUCTS = ["products_json", "products_api_upload", "dim_products"]
HEADER = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]


def all_assets() -> list:
    return list(defs.assets)


def resources_for(data_dir: Path, db_url: str, key: str, **platform) -> dict:
    return {
        "platform": PlatformResource(data_dir=str(data_dir), encryption_key=key,
                                     **{"settle_s": 0.0, "demo": True, **platform}),
        "warehouse": SqlUrlWarehouse(database_url=db_url),
        "blob": LocalBlobStorage(root=str(data_dir / "blob")),
        "products_api": ProductsApiResource(store_path=str(data_dir / "products_api.sqlite")),
    }


def materialize(resources: dict, selection: list[str], partition_key: str | None = None,
                instance: dg.DagsterInstance | None = None,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(all_assets(), selection=selection, partition_key=partition_key,
                          resources=resources, instance=instance, raise_on_error=raise_on_error)


def write_catalogue(data_dir: Path, product_ids: list[str], price: float = 2.5) -> None:
    path = data_dir / "catalogue" / "products.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "name", "category", "unit_price", "updated_at"])
        for pid in product_ids:
            writer.writerow([pid, f"Product {pid}", "Toys", price, "2024-01-01T00:00:00"])


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def materializations_of(result: dg.ExecuteInProcessResult, asset: str) -> list[dg.AssetMaterialization]:
    """The run's materializations of one asset (several assets share the sales_pipeline step)."""
    return [m for m in result.asset_materializations_for_node("sales_pipeline")
            if m.asset_key == dg.AssetKey(asset)]


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
