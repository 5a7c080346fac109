"""The run-failure sensor turns a real failed run into a structured, redacted alert."""

import json
from collections.abc import Iterator

import dagster as dg
import pytest

from sales_platform.defs.governance.alerts import ALERTS_FILE, run_failure_alert_sensor
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.receiver import JsonReceiver, json_receiver

DAY = "2024-03-01"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonReceiver]:
    """A webhook receiver for this test only (reruns start empty)."""
    with json_receiver() as server:
        monkeypatch.setenv("SALES_PLATFORM_ALERT_WEBHOOK", f"{server.url}/hook")
        yield server


def test_failed_run_becomes_a_redacted_alert_in_file_and_webhook(data_dir, key, tmp_path, webhook):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.01)
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "bad.csv", [["T1", "C1", "P1", "-5", f"{DAY}T10:00:00"]])
    with dg.instance_for_test() as instance:
        materialize(resources, PRODUCTS, instance=instance)
        result = materialize(resources, SALES_CHAIN, DAY, instance=instance, raise_on_error=False)
        assert not result.success
        # what the test provokes: the day's one row is rejected, 100% > 1%, so the blocking check fails
        (check,) = [e for e in result.get_asset_check_evaluations()
                    if e.check_name == "reject_rate_below_threshold"]
        assert (check.partition, check.passed) == (DAY, False)
        assert check.metadata["days_over_threshold"].value == {DAY: 1.0}
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in instance.all_logs(result.run_id)
                       if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor", dagster_event=failure.dagster_event,
            dagster_instance=instance, dagster_run=run, resources={"platform": resources["platform"]},
        ).for_run_failure()
        run_failure_alert_sensor(context)
    (line,) = (data_dir / ALERTS_FILE).read_text().splitlines()
    alert = json.loads(line)
    assert alert["run_id"] == result.run_id and alert["partition"] == DAY
    # exactly one failed step, the one holding the blocking check, failed by that check
    (step,) = alert["failed_steps"]
    assert step["step"] == "sales_pipeline", alert
    assert "DagsterAssetCheckFailedError" in step["error"], alert
    assert step["error"].splitlines()[-1] == "cleaned_sales: reject_rate_below_threshold", alert
    assert key not in line
    assert [a["run_id"] for a in webhook.received] == [result.run_id]


def test_alert_redaction_removes_passwords_keys_and_tokens():
    from sales_platform.core.alerts import RunFailureAlert

    alert = RunFailureAlert(run_id="r", job_name="j", status="FAILURE", failed_at="now",
                            failed_steps=[{"step": "sales", "error": "could not connect to "
                                           "postgresql://loader:Pa55w0rd!@db:5432/sales"}],
                            message="key=SECRETKEYVALUE123 PWD=hunter2;")
    redacted = alert.redacted(secrets=("SECRETKEYVALUE123",))
    text = json.dumps(redacted.__dict__)
    assert "Pa55w0rd!" not in text and "SECRETKEYVALUE123" not in text and "hunter2" not in text
    assert "postgresql://loader:***@db:5432/sales" in text
