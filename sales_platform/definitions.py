"""The one entry point: every domain's definitions under ``defs/``, found by Dagster's loader."""

import warnings
from pathlib import Path

import dagster as dg

from sales_platform.console import console
from sales_platform.core.private_files import secure_start

# Every process that loads the definitions (webserver, daemon, run and step workers) writes private
# files only: umask 077, the data dir's folders 0700, a symbolically linked data folder refused.
secure_start()

# The platform uses a few features Dagster marks beta/preview (single-run backfill policy, partitioned
# check specs) on purpose: say so once here instead of ~20 warnings on every command. Deprecations
# are not filtered (pytest turns ours into errors).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

# A module-level Definitions (not a @dg.definitions function): the CLI and the tests resolve jobs
# from it directly, and `dagster dev -m`, `dg check defs` and the workspace load it the same way.
defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).resolve().parent),
    dg.Definitions(loggers={"console": console}),  # one line per message (sales_platform/console.py)
)
