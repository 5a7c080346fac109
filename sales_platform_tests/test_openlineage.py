"""OpenLineage run events from real runs, validated against the published OpenLineage schemas.

Runs are materialized in-process on a real instance; the run-status sensors are evaluated on that
instance. Every emitted event is validated against the vendored spec (fixtures/openlineage/, see
its README for the source), every facet against the facet schema its ``_schemaURL`` names, and
the datasets are compared with the lineage metadata read straight off the asset specs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from sales_platform.core.crypto import generate_key
from sales_platform.definitions import defs
from sales_platform.defs.governance.openlineage import EVENTS_FILE
from sales_platform.defs.governance.openlineage_sensors import (
    openlineage_failure_sensor,
    openlineage_success_sensor,
)
from sales_platform.resources.platform import PlatformResource
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

SCHEMAS = Path(__file__).parent / "fixtures" / "openlineage"
DAYS = ["2024-03-01", "2024-03-02"]
ROWS = [["T1", "C1", "P1", "2", "2024-03-01T09:00:00"], ["T2", "C2", "P1", "1", "2024-03-02T10:00:00"]]
# what a namespace is for each '<scheme>:' of lineage/reads and lineage/writes (the README's table)
NAMESPACE = {"asset": "sales_platform.asset", "table": "sales_platform.warehouse",
             "file": "sales_platform.files", "blob": "sales_platform.blob"}


def _registry() -> Registry:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in SCHEMAS.glob("*.json")]
    return Registry().with_resources((r.id(), r) for r in resources)


REGISTRY = _registry()


def _validate(schema_url: str, instance: dict) -> None:
    base = schema_url.split("#", 1)[0]
    assert base in REGISTRY, f"{schema_url} is not vendored in {SCHEMAS}: update the fixtures"
    Draft202012Validator({"$ref": schema_url}, registry=REGISTRY,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(instance)


def validate_event(event: dict) -> None:
    """The event against the spec's root schema and its own schemaURL; each facet against its
    facet schema (the core spec only checks that facets are BaseFacets)."""
    root = json.loads((SCHEMAS / "OpenLineage.json").read_text())["$id"]
    _validate(root, event)
    _validate(event["schemaURL"], event)
    datetime.fromisoformat(event["eventTime"])  # format 'date-time' needs a checker we lack
    facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for facet in facets:
        _validate(facet["_schemaURL"], facet)


def expected_io(asset: str) -> tuple[set, set]:
    """(inputs, outputs) as (namespace, name) from the asset spec: upstream assets and
    lineage/reads in, the asset itself and lineage/writes out."""
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == asset)

    def declared(name: str) -> set:
        value = spec.metadata.get(name) or []
        value = getattr(value, "value", value)
        return {(NAMESPACE[r.split(":", 1)[0]], r.split(":", 1)[1]) for r in value}

    inputs = {(NAMESPACE["asset"], d.asset_key.to_user_string()) for d in spec.deps}
    return inputs | declared("lineage/reads"), {(NAMESPACE["asset"], asset)} | declared("lineage/writes")


def _names(datasets: list[dict]) -> set:
    return {(d["namespace"], d["name"]) for d in datasets}


def _sensor_tick(sensor, instance: dg.DagsterInstance, run_id: str, data_dir: Path) -> None:
    status = "PIPELINE_FAILURE" if sensor is openlineage_failure_sensor else "PIPELINE_SUCCESS"
    finished = next(e for e in instance.all_logs(run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == status)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=finished.dagster_event, dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id), repository_def=defs.get_repository_def(),
        resources={"platform": PlatformResource(data_dir=str(data_dir), encryption_key="x" * 44)})
    sensor(context.for_run_failure() if sensor is openlineage_failure_sensor else context)


def _emitted(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / EVENTS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """One instance with a failed catalogue run, then a good catalogue run and a 2-day range run."""
    folder = tmp_path_factory.mktemp("ol")
    data_dir = folder / "data"
    resources = resources_for(data_dir, f"sqlite:///{folder / 'w.db'}", generate_key())
    with dg.instance_for_test() as instance:
        failed = materialize(resources, PRODUCTS, instance=instance, raise_on_error=False)
        assert not failed.success  # no catalogue file yet: products_json cannot read it
        write_catalogue(data_dir, ["P1"])
        write_csv(data_dir / "incoming" / "drop.csv", ROWS)
        products = materialize(resources, PRODUCTS, instance=instance)
        chain = dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                               instance=instance,
                               tags={"dagster/asset_partition_range_start": DAYS[0],
                                     "dagster/asset_partition_range_end": DAYS[-1]})
        yield instance, {"failed": failed.run_id, "products": products.run_id, "chain": chain.run_id}


def test_each_materialization_gets_a_valid_start_and_complete_with_the_graphs_datasets(runs, tmp_path):
    instance, run_ids = runs
    for name in ("products", "chain"):
        _sensor_tick(openlineage_success_sensor, instance, run_ids[name], tmp_path)
    events = _emitted(tmp_path)
    for event in events:
        validate_event(event)
    by_run: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_run[event["run"]["runId"]].append(event)
    # one OpenLineage run per (asset, partition): START then COMPLETE, nominal time = the day
    seen = set()
    for pair in by_run.values():
        assert [e["eventType"] for e in pair] == ["START", "COMPLETE"]
        start, end = pair
        assert start["eventTime"] <= end["eventTime"]
        nominal = start["run"].get("facets", {}).get("nominalTime")
        day = nominal["nominalStartTime"][:10] if nominal else None
        seen.add((end["job"]["name"], day))
        assert end["job"]["namespace"] == "sales_platform"
        inputs, outputs = expected_io(end["job"]["name"])
        assert (_names(end["inputs"]), _names(end["outputs"])) == (inputs, outputs), end["job"]
    assert seen == {(a, d) for a in SALES_CHAIN for d in DAYS} | {(a, None) for a in PRODUCTS}


def test_a_failed_step_gives_fail_with_its_error(runs, tmp_path):
    instance, run_ids = runs
    _sensor_tick(openlineage_failure_sensor, instance, run_ids["failed"], tmp_path)
    events = _emitted(tmp_path)
    for event in events:
        validate_event(event)
    # the catalogue step failed, the two assets after it never started: one START + FAIL only
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("products_json", "START"), ("products_json", "FAIL")]
    message = events[1]["run"]["facets"]["errorMessage"]["message"]
    assert "products.csv" in message, message
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]


@pytest.fixture
def lineage_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonReceiver]:
    with json_receiver(status=201) as server:
        monkeypatch.setenv("SALES_PLATFORM_OPENLINEAGE_URL", server.url)
        yield server


def test_with_a_url_events_go_to_the_lineage_api_not_the_file(runs, tmp_path, lineage_api):
    instance, run_ids = runs
    _sensor_tick(openlineage_success_sensor, instance, run_ids["products"], tmp_path)
    assert not (tmp_path / EVENTS_FILE).exists()
    assert {path for path, _ in lineage_api.posts} == {"/api/v1/lineage"}
    for _, event in lineage_api.posts:
        validate_event(event)
    assert sorted((e["job"]["name"], e["eventType"]) for _, e in lineage_api.posts) == sorted(
        (a, t) for a in PRODUCTS for t in ("START", "COMPLETE"))
