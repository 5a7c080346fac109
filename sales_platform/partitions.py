"""Partitions and backfill policy shared by the sales domain."""

from __future__ import annotations

import dagster as dg

from sales_platform.core import settings

# end_offset=1: today's partition exists, so today's drops can load today.
daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date(), end_offset=1)

# A long backfill runs in bounded chunks of days, not one process per day.
daily_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=31)
