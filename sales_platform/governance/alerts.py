"""Run-failure sensor: every failed run becomes a structured alert (log + file + optional webhook)."""

import os
from datetime import UTC, datetime

import dagster as dg

from sales_platform.core import settings
from sales_platform.core.alerts import RunFailureAlert, append_alert, post_alert
from sales_platform.resources.platform import PlatformResource

ALERTS_FILE = "alerts/run_failures.jsonl"


def alert_from(context: dg.RunFailureSensorContext) -> RunFailureAlert:
    run = context.dagster_run
    steps = [{"step": e.step_key or "", "error": (e.event_specific_data.error.message.strip()
                                                   if e.event_specific_data and e.event_specific_data.error
                                                   else "")}
             for e in context.get_step_failure_events()]
    return RunFailureAlert(
        run_id=run.run_id, job_name=run.job_name, status=str(run.status.value),
        failed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        partition=run.tags.get("dagster/partition"),
        tags={k: v for k, v in run.tags.items() if k.startswith(("dagster/partition", "dagster/backfill",
                                                                  "sales_platform/"))},
        failed_steps=steps, message=context.failure_event.message or "",
    )


@dg.run_failure_sensor(
    description="Writes a structured alert for every failed run to <DATA_DIR>/alerts/"
    "run_failures.jsonl, logs it, and POSTs it to SALES_PLATFORM_ALERT_WEBHOOK when set.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource):
    secrets = tuple(s for s in (platform.encryption_key, os.environ.get(settings.API_TOKEN)) if s)
    alert = alert_from(context).redacted(secrets)
    append_alert(platform.areas.root / ALERTS_FILE, alert)
    context.log.error(f"run {alert.run_id} of {alert.job_name} failed: "
                      f"{', '.join(s['step'] for s in alert.failed_steps) or alert.message}")
    webhook = os.environ.get(settings.ALERT_WEBHOOK)
    if webhook:
        status = post_alert(webhook, alert)
        context.log.info(f"alert posted to the webhook: HTTP {status}")
