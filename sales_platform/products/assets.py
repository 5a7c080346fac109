"""The products flow: catalogue -> products_json (blob) -> products API -> dim_products."""

import json
import time
from pathlib import Path

import dagster as dg

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.products import (
    products_document,
    products_from_items,
    read_catalogue,
    with_tokens,
)
from sales_platform.core.warehouse.records import upsert_products
from sales_platform.core.warehouse.tables import dim_products as dim_products_table
from sales_platform.metadata import blob_kind, column_schema, markdown_table, warehouse_kinds
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import WarehouseResource

CATALOGUE_FILE = "catalogue/products.csv"
PRODUCTS_BLOB = "products/products.json"
COMMON = dict(group_name="products", owners=["team:data-platform"])


@dg.asset(
    **COMMON,
    metadata={"lineage/reads": ["file:catalogue/products.csv"],
              "lineage/writes": [f"blob:{PRODUCTS_BLOB}"]},
    kinds={"csv", "json", blob_kind()},
    code_version="products-json-1",
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


@dg.asset(
    **COMMON,
    deps=[products_json],
    metadata={"lineage/reads": [f"blob:{PRODUCTS_BLOB}"], "lineage/writes": ["file:products_api"]},
    kinds={"json"},
    code_version="products-upload-1",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="The products JSON uploaded to the products API (PUT /products, idempotent).",
)
def products_api_upload(blob: BlobStorageResource,
                        products_api: ProductsApiResource) -> dg.MaterializeResult:
    products = json.loads(blob.get_bytes(PRODUCTS_BLOB))
    reply = products_api.put_products(products)
    return dg.MaterializeResult(metadata={**reply, "api": products_api.mode})


@dg.asset(
    **COMMON,
    deps=[products_api_upload],
    metadata={"lineage/reads": ["file:products_api"], "lineage/writes": ["table:dim_products"]},
    kinds=warehouse_kinds("json"),
    code_version="dim-products-2",
    pool="warehouse_writes",
    description="Products read back from the API (GET /products, paginated) and upserted into "
    "dim_products keyed by the product token (no plaintext id); sales and aggregates join on "
    "the token. Unusable items are left out with a reason; products gone from the API leave.",
)
def dim_products(context: dg.AssetExecutionContext, platform: PlatformResource,
                 warehouse: WarehouseResource,
                 products_api: ProductsApiResource) -> dg.MaterializeResult:
    started = time.monotonic()
    items = list(products_api.iter_products())
    if not items:
        raise dg.Failure("the products API returned no products: run products_api_upload first")
    catalogue, rejected = products_from_items(items)
    for reason in rejected[:20]:
        context.log.warning(f"product left out of dim_products: {reason}")
    products = with_tokens(catalogue, Tokenizer(platform.keyring()))
    # Products gone from the catalogue leave the dimension, unless some items were unreadable
    # (then nothing is removed: a bad read must not empty the dimension).
    counts = upsert_products(warehouse.engine(), products, remove_missing=not rejected)
    return dg.MaterializeResult(metadata={
        **counts, "products": len(products), "rejected": len(rejected),
        "rejected_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in rejected[:50]) or "_none_"),
        "table": dim_products_table.name,
        "database": warehouse.display_url(), "duration_s": round(time.monotonic() - started, 3),
        "preview": markdown_table(products),
        "dagster/column_schema": column_schema(dim_products_table),
    })
