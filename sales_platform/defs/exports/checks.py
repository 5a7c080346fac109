"""Checks on the exports: every yearly CSV and the yearly JSON (blob and API) add up to
agg_sales_daily's year, recomputed with one GROUP BY. Run with their assets in rollups_job, or
alone with the UI's **Execute** (they read only what was written)."""

import json

import dagster as dg

from sales_platform.core.exports import export_mismatches, yearly_json_mismatches
from sales_platform.core.warehouse import aggregates as agg
from sales_platform.defs.aggregates.checks import verdict
from sales_platform.defs.exports.assets import JSON_BLOB
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import WarehouseResource


@dg.asset_check(
    asset="agg_exports",
    description="Every exports/<name>/<year>.csv adds up to agg_sales_daily's transactions, "
    "quantity and revenue of its year; a year without daily rows has no file or a header-only one.",
)
def exports_match_daily(warehouse: WarehouseResource, blob: BlobStorageResource) -> dg.AssetCheckResult:
    engine = warehouse.engine()
    return verdict(engine, agg.EXPORTS, export_mismatches(engine, blob.list_names, blob.get_bytes))


@dg.asset_check(
    asset="agg_sales_by_year_json",
    description="The yearly JSON in blob storage and what the products API holds equal "
    "agg_sales_daily summed by year; a year without daily rows is absent or zero.",
)
def yearly_json_matches_daily(warehouse: WarehouseResource, blob: BlobStorageResource,
                              products_api: ProductsApiResource) -> dg.AssetCheckResult:
    engine = warehouse.engine()
    stored = json.loads(blob.get_bytes(JSON_BLOB)) if JSON_BLOB in blob.list_names(JSON_BLOB) else []
    records = {"blob": stored, "api": products_api.get_sales_by_year()}
    return verdict(engine, agg.YEARLY, yearly_json_mismatches(engine, records))
