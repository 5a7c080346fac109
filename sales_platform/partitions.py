"""Partitions and backfill policy shared by the sales domain."""

from __future__ import annotations

import dagster as dg

from sales_platform.core import settings

# end_offset=1: today's partition exists, so today's drops can load today.
daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date(), end_offset=1)

# A backfill of any length is one run (each day still loads in its own transaction), not one
# process per day; it also lets `dagster asset materialize --partition-range` run a range.
daily_backfill_policy = dg.BackfillPolicy.single_run()
