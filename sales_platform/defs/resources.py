"""Resources and the executor, bound once for the whole code location (chosen by configuration)."""

import dagster as dg

from sales_platform.resources.factory import executor, resources


@dg.definitions
def platform_resources() -> dg.Definitions:
    return dg.Definitions(resources=resources(), executor=executor())
