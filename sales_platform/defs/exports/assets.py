"""Exports for Azure Data Factory / Power BI (CSV in blob storage) and the products API."""

import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from sales_platform.core.exports import EXPORTS, PREFIX, export_aggregates, yearly_json_rows
from sales_platform.core.warehouse.artifacts import Artifact, record_artifacts, sha256_file
from sales_platform.core.warehouse.tables import agg_changes
from sales_platform.metadata import blob_kind, markdown_table
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_version, versioned_asset

COMMON = dict(group_name="exports", owners=["team:analytics"])


@versioned_asset(
    **COMMON,
    deps=["agg_sales_daily", "agg_sales_monthly", "agg_sales_yearly", "agg_sales_by_product",
          "agg_sales_by_customer"],
    metadata={"lineage/reads": [*(f"table:{t.name}" for t in EXPORTS.values()),
                                f"table:{agg_changes.name}"],
              "lineage/writes": [f"blob:{PREFIX}/{name}" for name in EXPORTS]},
    kinds={"csv", blob_kind()},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
    description="Aggregate tables as CSV (header, stable column order) under "
    "exports/<name>/<year>.csv in blob storage: the years of the days logged in agg_changes since "
    "(a year left without rows becomes a header-only file); each upload is atomic (written beside, "
    "then committed).",
)
def agg_exports(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                blob: BlobStorageResource) -> dg.MaterializeResult:
    hashed: dict[str, tuple[str, int]] = {}

    def put_file(name: str, path: Path) -> str:  # hash the local file before it goes up
        hashed[name] = (sha256_file(path), path.stat().st_size)
        return blob.put_file(name, path)

    exported = export_aggregates(warehouse.engine(), put_file, datetime.now())
    record_artifacts(warehouse.engine(), [
        Artifact("agg_exports", "export", e.location, *hashed[e.blob_name][:1], e.rows,
                 stage_version(context), hashed[e.blob_name][1], run_id=context.run.run_id)
        for e in exported])
    listing = pd.DataFrame([{"blob": e.blob_name, "rows": e.rows} for e in exported])
    return dg.MaterializeResult(metadata={
        "files_written": len(exported), "rows_written": sum(e.rows for e in exported),
        "files": markdown_table(listing, rows=50),
    })


JSON_BLOB = f"{PREFIX}/agg_sales_by_year.json"


@dg.asset(
    **COMMON,
    deps=["agg_sales_yearly"],
    metadata={"lineage/reads": ["table:agg_sales_yearly"],
              "lineage/writes": [f"blob:{JSON_BLOB}", "file:products_api"]},
    kinds={"json"},
    code_version="agg-year-json-2",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="The yearly aggregate as JSON: stored in blob storage and posted to the API's "
    "POST /aggregates/sales-by-year (idempotent: replaces each year). A year the API holds that has "
    "no sales any more is sent as zero (the API has no delete).",
)
def agg_sales_by_year_json(warehouse: WarehouseResource, blob: BlobStorageResource,
                           products_api: ProductsApiResource) -> dg.MaterializeResult:
    held = [int(r["year"]) for r in products_api.get_sales_by_year()]
    rows = yearly_json_rows(warehouse.engine(), held)
    location = blob.put_bytes(JSON_BLOB, json.dumps(rows, indent=1).encode())
    reply = products_api.post_sales_by_year(rows) if rows else {"received": 0}
    return dg.MaterializeResult(metadata={"years": len(rows), "location": location, **reply,
                                          "preview": markdown_table(pd.DataFrame(rows))})
