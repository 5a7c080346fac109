"""Alerts: every failed run (run-failure sensor) and every blocked day (written by the step that
blocks it) becomes one structured alert (log + file + optional webhook)."""

import logging
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

import dagster as dg

from sales_platform.core import settings
from sales_platform.core.alerts import RunFailureAlert, append_alert, post_alert
from sales_platform.core.redact import redact_text
from sales_platform.resources.platform import PlatformResource

ALERTS_FILE = "alerts/run_failures.jsonl"
log = logging.getLogger(__name__)


def _root_message(error) -> str:
    """The innermost cause: Dagster wraps the user's exception in a step-execution error."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else ""


def _step_failures(events) -> list[dict[str, str]]:
    return [{"step": e.step_key or "",
             "error": _root_message(e.event_specific_data.error if e.event_specific_data else None)}
            for e in events]


def _partitions(run: dg.DagsterRun) -> str | None:
    """The run's day, or its range ``first..last``."""
    first = run.tags.get("dagster/asset_partition_range_start")
    last = run.tags.get("dagster/asset_partition_range_end")
    if first and last:
        return first if first == last else f"{first}..{last}"
    return run.tags.get("dagster/partition")


def _alert(run: dg.DagsterRun, steps: list[dict[str, str]], message: str) -> RunFailureAlert:
    return RunFailureAlert(
        run_id=run.run_id, job_name=run.job_name, status=str(run.status.value),
        failed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        partition=_partitions(run),
        tags={k: v for k, v in run.tags.items() if k.startswith(("dagster/partition", "dagster/backfill",
                                                                  "sales_platform/"))},
        failed_steps=steps, message=message,
    )


def alert_from(context: dg.RunFailureSensorContext) -> RunFailureAlert:
    return _alert(context.dagster_run, _step_failures(context.get_step_failure_events()),
                  context.failure_event.message or "")


def alert_for_run(instance: dg.DagsterInstance, run_id: str) -> RunFailureAlert:
    """The same alert for a run executed in this process (CLI): no sensor sees those runs."""
    run = instance.get_run_by_id(run_id)
    failures = [record.dagster_event for record in instance.all_logs(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE) if record.dagster_event]
    run_failed = [record for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    message = run_failed[-1].dagster_event.message if run_failed and run_failed[-1].dagster_event else ""
    return _alert(run, _step_failures(failures), message or "")


def _secrets() -> tuple[str, ...]:
    names = (settings.ENCRYPTION_KEY, settings.API_TOKEN, settings.RETIRED_KEYS)
    return tuple(secret for secret in map(settings.value, names) if secret)


def write_alert(alert: RunFailureAlert, data_dir: Path | None = None,
                secrets: tuple[str | None, ...] = ()) -> Path:
    """Append the redacted alert (once per id) and POST it to the webhook when one is set;
    ``secrets``: values to redact beyond the environment's (a resource's configured key)."""
    alert = alert.redacted(_secrets() + tuple(s for s in secrets if s))
    path = (data_dir or settings.data_dir()) / ALERTS_FILE
    if append_alert(path, alert):
        webhook = settings.value(settings.ALERT_WEBHOOK)
        if webhook:
            try:
                post_alert(webhook, alert)
            except Exception as exc:  # noqa: BLE001 - the alert is in the file; a webhook down stops nothing
                log.warning("alert %s not sent to %s: %s", alert.alert_id, redact_text(webhook),
                            redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    return path


def report_blocked_day(context: dg.AssetExecutionContext, platform: PlatformResource, day: str,
                       check_key: dg.AssetCheckKey, detail: str) -> Path:
    """One alert for a day a blocking check stopped (the run itself goes on with its other days).
    A later run that blocks the day again on the same numbers (a sensor's next range) adds none."""
    return _report_blocked(context, platform, day, day, check_key, detail)


def report_blocked_file(context: dg.AssetExecutionContext, platform: PlatformResource, name: str,
                        check_key: dg.AssetCheckKey, detail: str) -> Path:
    """The same alert for a file version blocked at landing (its days may be none)."""
    return _report_blocked(context, platform, f"file/{name}", None, check_key, detail)


def _report_blocked(context: dg.AssetExecutionContext, platform: PlatformResource, subject: str,
                    partition: str | None, check_key: dg.AssetCheckKey, detail: str) -> Path:
    run, check = context.run, f"{check_key.asset_key.to_user_string()}: {check_key.name}"
    return write_alert(RunFailureAlert(
        run_id=run.run_id, job_name=run.job_name, status="BLOCKED",
        failed_at=datetime.now(UTC).isoformat(timespec="seconds"), partition=partition,
        tags={k: v for k, v in run.tags.items() if k.startswith(("dagster/backfill", "sales_platform/"))},
        failed_steps=[{"step": check, "error": detail}], message=detail,
        alert_id=f"blocked/{subject}/{check_key.name}/{sha256(detail.encode()).hexdigest()[:16]}"),
        Path(platform.data_dir).expanduser().resolve(), (platform.encryption_key,))


@dg.run_failure_sensor(
    description="Writes a structured alert for every failed run to <DATA_DIR>/alerts/"
    "run_failures.jsonl, logs it, and POSTs it to SALES_PLATFORM_ALERT_WEBHOOK when set.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource):
    alert = alert_from(context)
    write_alert(alert, Path(platform.data_dir).expanduser().resolve(), (platform.encryption_key,))
    context.log.error(f"run {alert.run_id} of {alert.job_name} failed: "
                      f"{', '.join(s['step'] for s in alert.failed_steps) or alert.message}")
