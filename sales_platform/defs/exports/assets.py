"""Exports for Azure Data Factory / Power BI (CSV in blob storage) and the products API."""

import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy import select

from sales_platform.core.exports import EXPORTS, PREFIX, export_aggregates
from sales_platform.core.warehouse.artifacts import Artifact, record_artifacts, sha256_file
from sales_platform.core.warehouse.tables import agg_sales_yearly
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
    metadata={"lineage/reads": [f"table:{t.name}" for t in EXPORTS.values()],
              "lineage/writes": [f"blob:{PREFIX}/{name}" for name in EXPORTS]},
    kinds={"csv", blob_kind()},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
    description="Aggregate tables as CSV (header, stable column order) under "
    "exports/<name>/<year>.csv in blob storage; only years that changed since their last export "
    "are written; each upload is atomic (written beside, then committed).",
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


@dg.asset(
    **COMMON,
    deps=["agg_sales_yearly"],
    metadata={"lineage/reads": ["table:agg_sales_yearly"],
              "lineage/writes": ["blob:exports/agg_sales_by_year.json", "file:products_api"]},
    kinds={"json"},
    code_version="agg-year-json-1",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="The yearly aggregate as JSON: stored in blob storage and posted to the API's "
    "POST /aggregates/sales-by-year (idempotent: replaces each year).",
)
def agg_sales_by_year_json(warehouse: WarehouseResource, blob: BlobStorageResource,
                           products_api: ProductsApiResource) -> dg.MaterializeResult:
    t = agg_sales_yearly.c
    with warehouse.engine().connect() as conn:
        rows = [{"year": int(r.year), "transactions": int(r.transactions),
                 "total_quantity": int(r.total_quantity), "total_revenue": float(r.total_revenue)}
                for r in conn.execute(select(t.year, t.transactions, t.total_quantity,
                                             t.total_revenue).order_by(t.year))]
    location = blob.put_bytes(f"{PREFIX}/agg_sales_by_year.json", json.dumps(rows, indent=1).encode())
    reply = products_api.post_sales_by_year(rows) if rows else {"received": 0}
    return dg.MaterializeResult(metadata={"years": len(rows), "location": location, **reply,
                                          "preview": markdown_table(pd.DataFrame(rows))})
