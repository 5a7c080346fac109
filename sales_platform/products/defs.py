import dagster as dg

from sales_platform.products.assets import dim_products, products_api_upload, products_json

defs = dg.Definitions(assets=[products_json, products_api_upload, dim_products])
