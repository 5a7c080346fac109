"""The products flow: catalogue -> products_json (blob) -> products API -> dim_products."""

import json
import time
from pathlib import Path

import dagster as dg
from sqlalchemy import func, select

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.products import (
    products_document,
    products_from_items,
    read_catalogue,
    with_tokens,
)
from sales_platform.core.warehouse.artifacts import latest_artifact, record_artifact
from sales_platform.core.warehouse.products_dim import upsert_products
from sales_platform.core.warehouse.tables import dim_products as dim_products_table
from sales_platform.metadata import blob_kind, column_schema, markdown_table, warehouse_kinds
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import WarehouseResource
from sales_platform.versioning import stage_version, versioned_asset

CATALOGUE_FILE = "catalogue/products.csv"
PRODUCTS_BLOB = "products/products.json"
COMMON = dict(group_name="products", owners=["team:data-platform"])


@versioned_asset(
    **COMMON,
    metadata={"lineage/reads": ["file:catalogue/products.csv"],
              "lineage/writes": [f"blob:{PRODUCTS_BLOB}"]},
    kinds={"csv", "json", blob_kind()},
    description="The products dimension (id, name, category, unit price, updated_at) extracted "
    "from the product catalogue, validated, as a JSON document in blob storage.",
)
def products_json(platform: PlatformResource, blob: BlobStorageResource) -> dg.MaterializeResult:
    catalogue = read_catalogue(Path(platform.areas.root) / CATALOGUE_FILE)
    document = products_document(catalogue)
    location = blob.put_bytes(PRODUCTS_BLOB, json.dumps(document, indent=1).encode())
    return dg.MaterializeResult(metadata={
        "products": len(document), "blob": PRODUCTS_BLOB, "location": location,
        # no product ids: Dagster's event log is readable by everyone with UI access
        "preview": markdown_table(catalogue.drop(columns=["product_id"])),
    })


@versioned_asset(
    **COMMON,
    deps=[products_json],
    metadata={"lineage/reads": [f"blob:{PRODUCTS_BLOB}"], "lineage/writes": ["file:products_api"]},
    kinds={"json"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="The products JSON uploaded to the products API (PUT /products, idempotent).",
)
def products_api_upload(blob: BlobStorageResource,
                        products_api: ProductsApiResource) -> dg.MaterializeResult:
    products = json.loads(blob.get_bytes(PRODUCTS_BLOB))
    reply = products_api.put_products(products)
    return dg.MaterializeResult(metadata={**reply, "api": products_api.mode})


def _dimension_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(dim_products_table)).scalar_one()


def _etag_digest(etag: str | None) -> str | None:
    """The API's catalogue tag without quotes (or a weak marker): what the ledger keeps."""
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"')[:64] or None


@versioned_asset(
    **COMMON,
    deps=[products_api_upload],
    metadata={"lineage/reads": ["file:products_api"], "lineage/writes": ["table:dim_products"]},
    kinds=warehouse_kinds("json"),
    pool="warehouse_writes",
    description="Products read back from the API (GET /products, paginated) and upserted into "
    "dim_products keyed by the product token (no plaintext id); sales and aggregates join on "
    "the token. Unusable items are left out with a reason; products gone from the API leave. "
    "The read is conditional (If-None-Match with the catalogue ETag of the last load, kept in "
    "the data-object ledger): an unchanged catalogue is a 304, nothing is rewritten, and the "
    "data version (the catalogue's hash) stays the same, so downstream assets are not stale.",
)
def dim_products(context: dg.AssetExecutionContext, platform: PlatformResource,
                 warehouse: WarehouseResource,
                 products_api: ProductsApiResource) -> dg.MaterializeResult:
    started = time.monotonic()
    engine, stage = warehouse.engine(), context.asset_key.to_user_string()
    last = latest_artifact(engine, stage, kind="fetch")
    known = last["sha256"] if last and _dimension_rows(engine) else None
    fetched = products_api.fetch_products(etag=f'"{known}"' if known else None)
    tag = _etag_digest(fetched.etag)
    if not fetched.changed:
        rows = _dimension_rows(engine)
        # the same counters as a load (all rows unchanged): the UI's plots stay continuous
        return dg.MaterializeResult(data_version=dg.DataVersion(known), metadata={
            "catalogue": "unchanged (HTTP 304): dim_products not rewritten", "http_status": 304,
            "inserted": 0, "updated": 0, "unchanged": rows, "removed": 0,
            "catalogue_etag": known, "products": rows,
            "duration_s": round(time.monotonic() - started, 3)})
    items = fetched.items or []
    if not items:
        raise dg.Failure("the products API returned no products: run products_api_upload first")
    catalogue, rejected = products_from_items(items)
    for reason in rejected[:20]:
        context.log.warning(f"product left out of dim_products: {reason}")
    products = with_tokens(catalogue, Tokenizer(platform.keyring()))
    # Products gone from the catalogue leave the dimension, unless some items were unreadable
    # (then nothing is removed: a bad read must not empty the dimension).
    counts = upsert_products(engine, products, remove_missing=not rejected)
    if tag:
        record_artifact(engine, stage, "fetch", f"{products_api.mode}:GET /products", tag,
                        len(items), stage_version(context), run_id=context.run.run_id)
    return dg.MaterializeResult(data_version=dg.DataVersion(tag) if tag else None, metadata={
        **counts, "products": len(products), "rejected": len(rejected), "http_status": 200,
        "catalogue_etag": tag or "(none sent by the API)",
        "rejected_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in rejected[:50]) or "_none_"),
        "table": dim_products_table.name,
        "database": warehouse.display_url(), "duration_s": round(time.monotonic() - started, 3),
        "preview": markdown_table(products),
        "dagster/column_schema": column_schema(dim_products_table),
    })
