"""The one entry point: every domain's definitions plus the resources, assembled."""

import warnings

import dagster as dg

# The platform uses a few features Dagster marks beta/preview (single-run backfill policy, partitioned
# check specs) on purpose: say so once here instead of ~20 warnings on every command. Deprecations
# are not filtered (pytest turns ours into errors).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from sales_platform.aggregates import defs as aggregates  # noqa: E402 - after the filter
from sales_platform.exports import defs as exports  # noqa: E402
from sales_platform.governance import defs as governance  # noqa: E402
from sales_platform.ingestion import defs as ingestion  # noqa: E402
from sales_platform.jobs import ALL_JOBS  # noqa: E402
from sales_platform.products import defs as products  # noqa: E402
from sales_platform.resources.factory import executor, resources  # noqa: E402
from sales_platform.sales import defs as sales  # noqa: E402

defs = dg.Definitions.merge(
    ingestion.defs,
    sales.defs,
    products.defs,
    aggregates.defs,
    exports.defs,
    governance.defs,
    dg.Definitions(jobs=ALL_JOBS, resources=resources(), executor=executor()),
)
