import dagster as dg

from sales_platform.ingestion.assets import raw_sales

defs = dg.Definitions(assets=[raw_sales])
