import dagster as dg

from sales_platform.exports.assets import agg_exports, agg_sales_by_year_json

defs = dg.Definitions(assets=[agg_exports, agg_sales_by_year_json])
