"""The one entry point: every domain's definitions plus the resources, assembled."""

import dagster as dg

from sales_platform.aggregates import defs as aggregates
from sales_platform.exports import defs as exports
from sales_platform.governance import defs as governance
from sales_platform.ingestion import defs as ingestion
from sales_platform.jobs import ALL_JOBS
from sales_platform.products import defs as products
from sales_platform.resources.factory import executor, resources
from sales_platform.sales import defs as sales

defs = dg.Definitions.merge(
    ingestion.defs,
    sales.defs,
    products.defs,
    aggregates.defs,
    exports.defs,
    governance.defs,
    dg.Definitions(jobs=ALL_JOBS, resources=resources(), executor=executor()),
)
