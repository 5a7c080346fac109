import dagster as dg

from sales_platform.governance.alerts import run_failure_alert_sensor
from sales_platform.governance.assets import lineage_export
from sales_platform.governance.load_hooks import load_commit_alert_sensor
from sales_platform.governance.openlineage_sensors import (
    openlineage_failure_sensor,
    openlineage_success_sensor,
)

defs = dg.Definitions(assets=[lineage_export],
                      sensors=[run_failure_alert_sensor, load_commit_alert_sensor,
                               openlineage_success_sensor, openlineage_failure_sensor])
