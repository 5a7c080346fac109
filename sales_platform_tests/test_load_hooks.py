"""Hooks after a load commits: the load-commit sensor posts and journals each committed day once.

A 2-day range is materialized in-process on a real instance; the sensor is evaluated on that same
instance and posts to a real HTTP receiver on 127.0.0.1. Expected counts come from the input rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from sales_platform.core.crypto import generate_key
from sales_platform.core.load_commits import commit_from_metadata
from sales_platform.defs.governance.load_hooks import (
    COMMITS_FILE,
    load_commit_alert_sensor,
    load_commit_sensor,
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

DAYS = ["2024-03-01", "2024-03-02"]
CATALOGUE = ["P1", "P2"]
# (transaction, customer, product, quantity, timestamp): day 2 has an unknown product and a
# non-positive quantity, both rejected by the documented rules.
ROWS = [
    ["TXN-A1", "CUST-9001", "P1", "2", "2024-03-01T09:00:00"],
    ["TXN-A2", "CUST-9002", "P2", "1", "2024-03-01T10:00:00"],
    ["TXN-A3", "CUST-9001", "P1", "5", "2024-03-01T11:00:00"],
    ["TXN-B1", "CUST-9003", "P2", "3", "2024-03-02T09:00:00"],
    ["TXN-B2", "CUST-9004", "P9", "1", "2024-03-02T10:00:00"],
    ["TXN-B3", "CUST-9005", "P1", "0", "2024-03-02T11:00:00"],
    ["TXN-B4", "CUST-9002", "P1", "4", "2024-03-02T12:00:00"],
]


def expected_counts() -> dict[str, dict[str, int]]:
    """Per day from the input alone: rows landed, valid rows (known product, quantity > 0)."""
    out = {}
    for day in DAYS:
        rows = [r for r in ROWS if r[4].startswith(day)]
        valid = [r for r in rows if r[2] in CATALOGUE and int(r[3]) > 0]
        out[day] = {"rows_landed": len(rows), "rows_in_sales": len(valid), "inserted": len(valid),
                    "updated": 0, "deleted": 0, "rejected": len(rows) - len(valid)}
    return out


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonReceiver]:
    """The webhook; set ``status`` to 500 to play a broken one."""
    with json_receiver() as server:
        monkeypatch.setenv("SALES_PLATFORM_ALERT_WEBHOOK", f"{server.url}/hook")
        yield server


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    """An instance holding one committed 2-day range run of the sales chain (shared: the tests
    only read it; each gives the sensor its own data dir, so journals do not mix)."""
    folder = tmp_path_factory.mktemp("loaded")
    data_dir = folder / "data"
    resources = resources_for(data_dir, f"sqlite:///{folder / 'w.db'}", generate_key(),
                              max_reject_rate=0.9)
    write_catalogue(data_dir, CATALOGUE)
    write_csv(data_dir / "incoming" / "drop.csv", ROWS)
    with dg.instance_for_test() as instance:
        materialize(resources, PRODUCTS, instance=instance)
        result = dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                                instance=instance,
                                tags={"dagster/asset_partition_range_start": DAYS[0],
                                      "dagster/asset_partition_range_end": DAYS[-1]})
        yield instance, result.run_id


@pytest.fixture
def platform(data_dir: Path, key: str) -> PlatformResource:
    return PlatformResource(data_dir=str(data_dir), encryption_key=key)


def _tick(sensor, instance, platform, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"platform": platform})
    result = sensor(context)
    return context.cursor, result


def _journal(data_dir: Path) -> list[dict]:
    path = data_dir / COMMITS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _counts(summary: dict) -> dict[str, int]:
    return {k: summary[k] for k in ("rows_landed", "rows_in_sales", "inserted", "updated",
                                    "deleted", "rejected")}


def test_each_committed_day_is_posted_and_journalled_once(loaded, data_dir, platform, receiver):
    instance, run_id = loaded
    cursor, _ = _tick(load_commit_alert_sensor, instance, platform)
    expected = expected_counts()
    assert [p["day"] for p in receiver.received] == DAYS
    for posted in receiver.received:
        assert _counts(posted) == expected[posted["day"]], posted
        assert posted["run_id"] == run_id and posted["commit_id"] == f"{run_id}:{posted['day']}"
    assert _journal(data_dir) == receiver.received
    # no transaction or customer id leaves through the hook, in the file or the POST
    text = (data_dir / COMMITS_FILE).read_text() + json.dumps(receiver.received)
    assert not [v for row in ROWS for v in row[:2] if v in text]

    # the next tick, from the saved cursor, finds nothing new
    _tick(load_commit_alert_sensor, instance, platform, cursor)
    # a rewound cursor re-reads both days, but the journal says they were delivered
    _tick(load_commit_alert_sensor, instance, platform, None)
    assert len(receiver.received) == 2 and len(_journal(data_dir)) == 2


def test_a_webhook_that_is_down_gets_the_same_days_on_a_later_tick(loaded, data_dir, platform, receiver):
    instance, _ = loaded
    receiver.status = 500
    cursor, _ = _tick(load_commit_alert_sensor, instance, platform)
    assert receiver.received == [] and _journal(data_dir) == []
    receiver.status = 204
    _tick(load_commit_alert_sensor, instance, platform, cursor)
    assert [p["day"] for p in receiver.received] == DAYS
    assert [j["day"] for j in _journal(data_dir)] == DAYS


def test_a_custom_hook_registered_through_the_factory_sees_each_day(loaded, platform):
    instance, _ = loaded
    seen = []
    sensor = load_commit_sensor("my_hook_sensor", lambda commit, _dir: seen.append(commit))
    cursor, _ = _tick(sensor, instance, platform)
    assert [(c.day, c.rows_in_sales) for c in seen] == [
        (d, c["rows_in_sales"]) for d, c in expected_counts().items()]
    _tick(sensor, instance, platform, cursor)
    assert len(seen) == 2


def test_a_missing_count_names_the_day_and_the_key():
    with pytest.raises(ValueError, match=r"2024-03-01 .*'inserted'"):
        commit_from_metadata("2024-03-01", "r1", "now", {"dagster/row_count": 1, "landed": 1,
                                                          "staged": 1, "updated": 0, "unchanged": 0,
                                                          "deleted": 0, "rejected": 0})
