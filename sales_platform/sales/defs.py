import dagster as dg

from sales_platform.sales.assets import cleaned_sales, encrypted_sales, sales, sales_rejects

defs = dg.Definitions(assets=[cleaned_sales, sales_rejects, encrypted_sales, sales])
