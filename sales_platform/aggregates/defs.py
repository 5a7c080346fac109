import dagster as dg

from sales_platform.aggregates.assets import agg_sales_daily, agg_sales_yearly

defs = dg.Definitions(assets=[agg_sales_daily, agg_sales_yearly])
