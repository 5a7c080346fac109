"""When the rollups run: nightly, after the day's loads."""

import dagster as dg

from sales_platform.defs import jobs

aggregates_schedule = dg.ScheduleDefinition(
    name="aggregates_schedule",  # the README's name, not the default rollups_job_schedule
    job=jobs.rollups_job,
    cron_schedule="15 2 * * *",
    description="Daily after the loads: monthly/yearly aggregates and exports for the periods "
    "that changed since, and the lineage export.",
)
