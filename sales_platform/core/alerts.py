"""Structured alerts (a failed run, a blocked day): a JSON line in a file, optionally a webhook POST."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from sales_platform.core import settings
from sales_platform.core.journal import append_once, recorded_ids
from sales_platform.core.redact import redact_text
from sales_platform.core.urls import require_secure


@dataclass
class RunFailureAlert:
    run_id: str
    job_name: str
    status: str
    failed_at: str
    partition: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    failed_steps: list[dict[str, str]] = field(default_factory=list)
    message: str = ""
    alert_id: str = ""  # one alert per id: the run's id, or day/check/numbers for a blocked day

    def __post_init__(self) -> None:
        self.alert_id = self.alert_id or self.run_id

    def redacted(self, secrets: tuple[str, ...] = ()) -> RunFailureAlert:
        """No password, key or token leaves through an alert."""
        return RunFailureAlert(
            **{**asdict(self),
               "message": redact_text(self.message, secrets),
               "failed_steps": [{k: redact_text(v, secrets) for k, v in step.items()}
                                for step in self.failed_steps]})


def alerted_ids(path: Path) -> set[str]:
    return recorded_ids(path, "alert_id")


def append_alert(path: Path, alert: RunFailureAlert) -> bool:
    """Append one JSON line per alert id (False when it was already alerted, e.g. by the CLI and
    then by the sensor)."""
    return append_once(path, asdict(alert), "alert_id")


def post_alert(url: str, alert: RunFailureAlert, timeout_s: float = 5.0) -> int:
    """POST to the webhook, if the URL policy takes it (https, or http to this machine); no
    redirects: one could lead the alert to plain http elsewhere."""
    import requests

    url = require_secure(url, settings.ALERT_WEBHOOK).url
    reply = requests.post(url, json=asdict(alert), timeout=timeout_s, allow_redirects=False)
    return reply.status_code
