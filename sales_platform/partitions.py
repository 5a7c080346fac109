"""Partitions and backfill policy shared by the sales domain."""

from __future__ import annotations

import dagster as dg

from sales_platform.core import settings

# end_offset=1: today's partition exists, so today's drops can load today.
daily_partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date(), end_offset=1)

# A backfill of any length is one run (each day still loads in its own transaction), not one
# process per day; it also lets `dagster asset materialize --partition-range` run a range.
daily_backfill_policy = dg.BackfillPolicy.single_run()


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags that make one run materialize the partitions ``first``..``last`` of a
    single-run backfill asset.

    Adapter: Dagster 1.13 has no public way to run a partition range in process
    (``JobDefinition.execute_in_process`` takes one ``partition_key``, and ``RunRequest``'s
    ``partition_key_range`` becomes these tags only in the daemon). The two tags are the interface
    the UI launchpad and ``dagster asset materialize --partition-range`` use; replace this with
    ``execute_in_process(partition_key_range=...)`` when Dagster makes that public.
    """
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
