import dagster as dg

from sales_platform.aggregates.assets import (
    agg_sales_by_category_monthly,
    agg_sales_by_customer,
    agg_sales_by_product,
    agg_sales_daily,
    agg_sales_monthly,
    agg_sales_yearly,
)
from sales_platform.aggregates.checks import monthly_matches_daily
from sales_platform.aggregates.report import sales_report

defs = dg.Definitions(assets=[agg_sales_daily, agg_sales_by_product, agg_sales_by_customer,
                              agg_sales_monthly, agg_sales_yearly,
                              agg_sales_by_category_monthly, sales_report],
                      asset_checks=[monthly_matches_daily])
