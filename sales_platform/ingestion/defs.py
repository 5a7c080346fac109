import dagster as dg

from sales_platform.ingestion.assets import landed_files, raw_sales
from sales_platform.ingestion.sensors import (
    aggregates_schedule,
    blob_dropzone_sensor,
    incoming_files_sensor,
    landed_days_sensor,
)

defs = dg.Definitions(
    assets=[landed_files, raw_sales],
    sensors=[incoming_files_sensor, landed_days_sensor, blob_dropzone_sensor],
    schedules=[aggregates_schedule],
)
