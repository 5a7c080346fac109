"""The one entry point: every domain's definitions plus the resources, assembled."""

import dagster as dg

from sales_platform.aggregates import defs as aggregates
from sales_platform.ingestion import defs as ingestion
from sales_platform.products import defs as products
from sales_platform.sales import defs as sales
from sales_platform.jobs import ALL_JOBS
from sales_platform.resources.factory import resources

defs = dg.Definitions.merge(
    ingestion.defs,
    sales.defs,
    products.defs,
    aggregates.defs,
    dg.Definitions(jobs=ALL_JOBS, resources=resources()),
)
