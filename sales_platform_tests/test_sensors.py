"""Drop and load sensors against a real (ephemeral) instance and real files."""

import os
import time

import dagster as dg
import pytest
from sqlalchemy import select

from sales_platform.core.landing import name_id
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import file_ledger, sales
from sales_platform.defs.ingestion.sensors import incoming_files_sensor, landed_days_sensor
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    count,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)

ROW = ["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]


@pytest.fixture
def env(data_dir, key, tmp_path):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'wh.db'}", key, settle_s=2.0)
    write_catalogue(data_dir, ["P1"])
    with dg.instance_for_test() as instance:
        yield data_dir, resources, instance


def settled(path):
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def tick(sensor, instance, resources, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor, result
    if isinstance(result, list):
        return result, cursor, None
    return list(result.run_requests or []), result.cursor, result.skip_reason


def land(request, resources, instance):
    return dg.materialize(all_assets(), selection=["landed_files"], run_config=request.run_config,
                          resources=resources, instance=instance)


def test_first_drop_requests_one_landing_run_keyed_on_content(env):
    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "a.csv", [ROW]))
    requests, cursor, _ = tick(incoming_files_sensor, instance, resources)
    assert len(requests) == 1
    run_key = requests[0].run_key
    assert run_key.startswith("land:") and name_id("a.csv") in run_key
    again, _, _ = tick(incoming_files_sensor, instance, resources, cursor)
    assert [r.run_key for r in again] == [run_key]  # same key: Dagster launches it once
    reset, _, _ = tick(incoming_files_sensor, instance, resources, cursor=None)
    assert [r.run_key for r in reset] == [run_key]  # cursor loss changes nothing
    land(requests[0], resources, instance)
    assert tick(incoming_files_sensor, instance, resources, cursor)[0] == []


def test_file_still_being_written_is_not_picked(env):
    data_dir, resources, instance = env
    write_csv(data_dir / "incoming" / "a.csv.tmp", [ROW])
    write_csv(data_dir / "incoming" / "fresh.csv", [ROW])  # mtime = now: not settled yet
    requests, _, skip = tick(incoming_files_sensor, instance, resources)
    assert requests == [] and "still being written" in skip.skip_message
    settled(data_dir / "incoming" / "fresh.csv")
    assert len(tick(incoming_files_sensor, instance, resources)[0]) == 1


def test_multi_day_file_is_loaded_for_each_of_its_days(env):
    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "m.csv", [
        ["T1", "C1", "P1", "1", "2024-03-01T10:00:00"], ["T2", "C1", "P1", "1", "2024-03-02T10:00:00"],
        ["T3", "C1", "P1", "1", "2024-03-05T10:00:00"]]))
    (request,), _, _ = tick(incoming_files_sensor, instance, resources)
    land(request, resources, instance)
    loads, _, _ = tick(landed_days_sensor, instance, resources)
    ranges = sorted((r.tags["dagster/asset_partition_range_start"],
                     r.tags["dagster/asset_partition_range_end"]) for r in loads)
    assert ranges == [("2024-03-01", "2024-03-02"), ("2024-03-05", "2024-03-05")]
    materialize(resources, PRODUCTS, instance=instance)
    for r in loads:
        result = dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                                instance=instance, tags=r.tags)
        assert result.success
    assert count(cached_engine(resources["warehouse"].url()), sales) == 3
    assert tick(landed_days_sensor, instance, resources)[0] == []  # all loaded: nothing more


def test_same_content_under_new_name_is_skipped_and_not_reloaded(env):
    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "a.csv", [ROW]))
    (first,), _, _ = tick(incoming_files_sensor, instance, resources)
    land(first, resources, instance)
    for r in tick(landed_days_sensor, instance, resources)[0]:
        materialize(resources, PRODUCTS, instance=instance)
        dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources, instance=instance,
                       tags=r.tags)
    settled(write_csv(data_dir / "incoming" / "copy_of_a.csv", [ROW]))
    (second,), _, _ = tick(incoming_files_sensor, instance, resources)
    assert second.run_key != first.run_key
    land(second, resources, instance)
    assert tick(landed_days_sensor, instance, resources)[0] == []
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all())
    assert statuses == {"a.csv": "loaded", "copy_of_a.csv": "skipped_duplicate"}
    assert not (data_dir / "incoming" / "copy_of_a.csv").exists()


def test_corrupt_file_is_quarantined_and_never_loaded(env):
    data_dir, resources, instance = env
    bad = data_dir / "incoming" / "bad.csv"
    bad.write_bytes(b"\x00\x01\x02 not a csv")
    settled(bad)
    (request,), _, _ = tick(incoming_files_sensor, instance, resources)
    result = land(request, resources, instance)
    assert result.success
    assert "quarantined" in result.asset_materializations_for_node("landed_files")[0] \
        .metadata["files"].value
    assert tick(landed_days_sensor, instance, resources)[0] == []
    reason = next((data_dir / "quarantine").glob("*.reason.txt")).read_text()
    assert "bad.csv" in reason and "binary" in reason


def test_a_file_whose_landing_run_died_gets_a_new_attempt_and_lands_once(env):
    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "a.csv", [ROW]))
    (first,), cursor, _ = tick(incoming_files_sensor, instance, resources)
    # the landing run was killed (daemon restart): a run with this key exists and has failed
    dead = instance.create_run_for_job(
        dg.Definitions(jobs=[dg.JobDefinition(graph_def=dg.GraphDefinition("g", node_defs=[]))]
                       ).resolve_job_def("g"), tags={"dagster/run_key": first.run_key})
    instance.report_run_failed(dead)
    (retry,), cursor, _ = tick(incoming_files_sensor, instance, resources, cursor)
    assert retry.run_key == f"{first.run_key}:attempt-1"
    land(retry, resources, instance)
    assert tick(incoming_files_sensor, instance, resources, cursor)[0] == []  # landed: gone
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        assert conn.execute(select(file_ledger.c.status)).scalars().all() == ["landed"]


def test_a_running_landing_blocks_a_new_attempt(env):
    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "a.csv", [ROW]))
    (first,), cursor, _ = tick(incoming_files_sensor, instance, resources)
    instance.create_run_for_job(
        dg.Definitions(jobs=[dg.JobDefinition(graph_def=dg.GraphDefinition("g", node_defs=[]))]
                       ).resolve_job_def("g"), tags={"dagster/run_key": first.run_key},
        status=dg.DagsterRunStatus.STARTED)
    (again,), _, _ = tick(incoming_files_sensor, instance, resources, cursor)
    assert again.run_key == first.run_key  # Dagster dedupes it: no second landing


def test_a_running_landing_whose_process_died_is_failed_and_retried(env):
    import fcntl

    from sales_platform.defs.ingestion.assets import landing_lease

    data_dir, resources, instance = env
    settled(write_csv(data_dir / "incoming" / "a.csv", [ROW]))
    (first,), cursor, _ = tick(incoming_files_sensor, instance, resources)
    run = instance.create_run_for_job(
        dg.Definitions(jobs=[dg.JobDefinition(graph_def=dg.GraphDefinition("g", node_defs=[]))]
                       ).resolve_job_def("g"), tags={"dagster/run_key": first.run_key},
        status=dg.DagsterRunStatus.STARTED)
    areas = resources["platform"].areas
    lease = areas.lease_path(landing_lease(run.run_id))
    lease.parent.mkdir(parents=True, exist_ok=True)
    with open(lease, "a+") as held:  # the run's process is alive and landing
        fcntl.flock(held, fcntl.LOCK_EX)
        (alive,), _, _ = tick(incoming_files_sensor, instance, resources, cursor)
        assert alive.run_key == first.run_key
    # the process died: the OS released its lock, the lease file stayed behind
    (retry,), _, _ = tick(incoming_files_sensor, instance, resources, cursor)
    assert retry.run_key == f"{first.run_key}:attempt-1"
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_link_in_the_drop_zone_is_never_opened_and_is_moved_aside(env, tmp_path):
    data_dir, resources, instance = env
    target = tmp_path / "elsewhere.csv"
    write_csv(target, [ROW])
    os.symlink(target, data_dir / "incoming" / "link.csv")
    settled(write_csv(data_dir / "incoming" / "real.csv", [ROW]))
    requests, _, _ = tick(incoming_files_sensor, instance, resources)
    by_kind = {r.run_key.split(":")[0]: r for r in requests}
    assert set(by_kind) == {"unsafe", "land"}
    land(by_kind["unsafe"], resources, instance)
    assert not os.path.lexists(data_dir / "incoming" / "link.csv") and target.exists()
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        rows = dict(conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all())
    assert rows == {"link.csv": "quarantined"}  # real.csv is its own run
    (load_request,) = [r for r in tick(incoming_files_sensor, instance, resources)[0]]
    assert load_request.run_key == by_kind["land"].run_key


def test_a_drop_of_hundreds_of_files_lands_in_bounded_batches_as_the_oracle_says(
        data_dir, key, backend, monkeypatch):
    """200 one-row files (a duplicate id and rejects among them) are landed by three runs of at
    most 80 files, each requested once, and sales and sales_rejects hold what the oracle says."""
    from sales_platform.defs.ingestion import sensors
    from sales_platform_tests.integrity import Harness, aged, assert_matches_oracle
    from sales_platform_tests.oracle import csv_bytes

    monkeypatch.setattr(sensors, "BATCH_FILES", 80)
    harness = Harness(data_dir, backend.url, key)
    for i in range(200):
        quantity = "0" if i % 50 == 7 else "2"  # quantity_not_positive
        tid = "T5" if i == 199 else f"T{i}"  # the last repeats T5 on another day: across days
        harness.drop(f"shop_{i:03d}.csv", csv_bytes(
            [[tid, f"C{i % 7}", "P1", quantity, f"2024-03-0{1 + i % 3}T10:{i % 60:02d}:00"]]))
    for path in harness.incoming.iterdir():
        aged(path)
    requests, cursor, _ = tick(incoming_files_sensor, harness.instance, harness.resources)
    assert sorted(len(r.run_config["ops"]["landed_files"]["config"]["files"]) for r in requests) \
        == [40, 80, 80]
    again, cursor, _ = tick(incoming_files_sensor, harness.instance, harness.resources, cursor)
    assert sorted(r.run_key for r in again) == sorted(r.run_key for r in requests)
    for request in requests:
        assert land(request, harness.resources, harness.instance).success
    assert tick(incoming_files_sensor, harness.instance, harness.resources, cursor)[0] == []
    assert {row["status"] for row in harness.ledger().values()} == {"landed"}
    assert len(harness.ledger()) == 200
    harness.load_requested()
    assert_matches_oracle(harness)
