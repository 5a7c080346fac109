"""The run-failure sensor turns a real failed run into a structured, redacted alert."""

import json
from collections.abc import Iterator

import dagster as dg
import pytest

from sales_platform.defs.governance.alerts import ALERTS_FILE, run_failure_alert_sensor
from sales_platform.partitions import partition_range_tags
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.receiver import JsonReceiver, json_receiver

DAY, NEXT = "2024-03-01", "2024-03-02"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonReceiver]:
    """A webhook receiver for this test only (reruns start empty)."""
    with json_receiver() as server:
        monkeypatch.setenv("SALES_PLATFORM_ALERT_WEBHOOK", f"{server.url}/hook")
        yield server


def _sensor_alert(instance, result, resources) -> None:
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in instance.all_logs(result.run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor", dagster_event=failure.dagster_event,
        dagster_instance=instance, dagster_run=run, resources={"platform": resources["platform"]},
    ).for_run_failure()
    run_failure_alert_sensor(context)


def test_blocked_day_is_one_alert_naming_day_check_and_numbers(data_dir, key, tmp_path, webhook):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.5)
    write_catalogue(data_dir, ["P1"])
    # two of the day's three rows break a rule: 2/3 = 67 % > 50 %; the next day is clean
    write_csv(data_dir / "incoming" / "bad.csv", [
        ["T1", "C1", "P1", "-5", f"{DAY}T10:00:00"], ["T2", "C1", "P1", "0", f"{DAY}T10:00:00"],
        ["T3", "C1", "P1", "1", f"{DAY}T10:00:00"], ["T4", "C1", "P1", "1", f"{NEXT}T10:00:00"]])
    with dg.instance_for_test() as instance:
        materialize(resources, PRODUCTS, instance=instance)
        result = dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                                instance=instance, tags=partition_range_tags(DAY, NEXT))
        assert result.success  # a blocked day stops itself, not the run: nothing to retry
    (line,) = (data_dir / ALERTS_FILE).read_text().splitlines()
    alert = json.loads(line)
    assert (alert["partition"], alert["status"]) == (DAY, "BLOCKED")
    (step,) = alert["failed_steps"]
    assert step["step"] == "cleaned_sales: reject_rate_below_threshold"
    assert step["error"].startswith(f"{DAY} blocked: 2 of 3 rows rejected (67% > 50%)"), step
    assert [a["partition"] for a in webhook.received] == [DAY]
    assert key not in line


def test_failed_run_becomes_a_redacted_alert_in_file_and_webhook(data_dir, key, tmp_path, webhook,
                                                                  monkeypatch):
    from sales_platform.core.warehouse import loading

    def broken(*args, **kwargs):  # a failure that names a secret: the alert must not carry it
        raise RuntimeError(f"load broke with key {key}")

    monkeypatch.setattr(loading.SalesLoader, "load_day", broken)
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "day.csv", [["T1", "C1", "P1", "5", f"{DAY}T10:00:00"]])
    with dg.instance_for_test() as instance:
        materialize(resources, PRODUCTS, instance=instance)
        result = materialize(resources, SALES_CHAIN, DAY, instance=instance, raise_on_error=False)
        assert not result.success
        _sensor_alert(instance, result, resources)
    (line,) = (data_dir / ALERTS_FILE).read_text().splitlines()
    alert = json.loads(line)
    assert alert["run_id"] == result.run_id and alert["partition"] == DAY
    (step,) = alert["failed_steps"]
    assert step["step"] == "sales_pipeline", alert
    assert f"{DAY}: load broke with key" in step["error"], alert
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
