import dagster as dg

from sales_platform.products.assets import dim_products

defs = dg.Definitions(assets=[dim_products])
