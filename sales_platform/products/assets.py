"""The products dimension."""


from pathlib import Path

import dagster as dg

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.products import read_catalogue, with_tokens
from sales_platform.core.warehouse.records import upsert_products
from sales_platform.core.warehouse.tables import dim_products as dim_products_table
from sales_platform.metadata import column_schema, markdown_table
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.warehouse import WarehouseResource

CATALOGUE_FILE = "catalogue/products.csv"


@dg.asset(
    metadata={"lineage/reads": ["file:catalogue/products.csv"],
              "lineage/writes": ["table:dim_products"]},
    group_name="products",
    kinds={"csv", "sql"},
    owners=["team:data-platform"],
    code_version="dim-products-1",
    description="Products (id, token, name, category, unit price) upserted from the product "
    "catalogue <DATA_DIR>/catalogue/products.csv. Sales join to it on the product token.",
)
def dim_products(platform: PlatformResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    catalogue = read_catalogue(Path(platform.areas.root) / CATALOGUE_FILE)
    products = with_tokens(catalogue, Tokenizer(platform.keyring()))
    counts = upsert_products(warehouse.engine(), products)
    return dg.MaterializeResult(metadata={
        **counts, "products": len(products), "table": dim_products_table.name,
        "database": warehouse.display_url(),
        "preview": markdown_table(products.drop(columns=["product_token"])),
        "dagster/column_schema": column_schema(dim_products_table),
    })
