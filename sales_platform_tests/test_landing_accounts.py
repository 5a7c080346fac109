"""What a file version loses at landing counts, and nothing landed is read before it is accounted.

- Landing rejects (no valid sale day, malformed records) have no day, so a day's reject rate never
  sees them: a version whose share of landing rejects is over SALES_PLATFORM_MAX_REJECT_RATE (the
  same limit and the same strict comparison as a day's) is blocked at landing. Its landing rejects
  stay in sales_rejects, its other rows are not loaded, the ledger, the landing check, the CLI
  summary and the alert say so; a raised limit and a re-run of its days, or a corrected version,
  releases it.
- A landing whose ledger commit fails leaves nothing the next cleaning of the day would take: the
  fragments it moved are taken back, and those of a landing that died before it could (simulated:
  the take-back disabled) are ignored by the cleaning and removed.

Whole ``sales`` and ``sales_rejects`` tables are compared with the oracle on SQLite and PostgreSQL;
expected fragment names come from the documented naming (``<ns>-<sha256(name)[:20]>-<sha[:16]>-``),
computed here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import dagster as dg

from sales_platform.cli import _range_counts
from sales_platform.core import intake as intake_module
from sales_platform.core.landing import Lander
from sales_platform.partitions import partition_range_tags
from sales_platform_tests.helpers import all_assets
from sales_platform_tests.integrity import LOAD_CHAIN, Harness, assert_matches_oracle
from sales_platform_tests.oracle import csv_bytes, sha256_hex

D1, D2 = "2024-05-01", "2024-05-02"
CLEANING_ONWARDS = [a for a in LOAD_CHAIN if a != "raw_sales"]  # reads only what has landed


def rows(prefix: str, day: str, good: int, bad: int = 0) -> bytes:
    """``good`` rows on ``day`` and ``bad`` rows whose timestamp gives no day (landing rejects)."""
    ok = [[f"{prefix}{i}", "C1", "P1", "1", f"{day}T10:00:00"] for i in range(good)]
    no_day = [[f"{prefix}X{i}", "C1", "P1", "1", "not a time"] for i in range(bad)]
    return csv_bytes(ok + no_day)


def us_dates(count: int) -> bytes:
    """A 200-row export in US date format: every timestamp is invalid_timestamp."""
    return csv_bytes([[f"US{i}", "C1", "P1", "1", f"05/01/2024 10:{i % 60:02d}"]
                      for i in range(count)])


def range_run(h: Harness, first: str, last: str, selection: list[str] = LOAD_CHAIN):
    return dg.materialize(all_assets(), selection=selection, resources=h.resources,
                          instance=h.instance, tags=partition_range_tags(first, last))


def statuses(h: Harness) -> dict[str, tuple[str, str | None]]:
    return {name: (row["status"], row["error"]) for (name, _), row in h.ledger().items()
            if row["status"] in ("landed", "loaded", "blocked")}


def verdicts(result: dg.ExecuteInProcessResult, asset: str) -> dict[str | None, bool]:
    return {e.partition: e.passed for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey(asset)
            and e.check_name == "landing_reject_rate_below_threshold"}


def alerts(data_dir: Path) -> list[dict]:
    path = data_dir / "alerts" / "run_failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_version_over_the_reject_rate_at_landing_is_blocked_until_released(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    h.drop("at.csv", rows("A", D1, good=4, bad=1))  # 1 of 5 = 20%: at the limit, not over
    h.drop("under.csv", rows("U", D1, good=5, bad=1))  # 1 of 6
    h.drop("over.csv", rows("O", D2, good=3, bad=1))  # 1 of 4 = 25%
    h.drop("us.csv", us_dates(200))  # 200 of 200, no day at all
    landing = h.land()
    assert verdicts(landing, "landed_files") == {None: False}
    result = range_run(h, D1, D2)
    expected = assert_matches_oracle(h)  # whole tables: held rows in neither, landing rejects kept
    assert expected.blocked == {"over.csv": (1, 4), "us.csv": (200, 200)}
    assert expected.rows_by_day() == {date.fromisoformat(D1): 9}

    over = "1 of 4 rows rejected at landing (25% > 20%)"
    us = "200 of 200 rows rejected at landing (100% > 20%)"
    ledger = statuses(h)
    assert {n: s for n, (s, _) in ledger.items()} == {
        "at.csv": "loaded", "under.csv": "loaded", "over.csv": "blocked", "us.csv": "blocked"}
    assert over in ledger["over.csv"][1] and us in ledger["us.csv"][1]
    assert "blocked" in h.events("us.csv") and "loaded" not in h.events("us.csv")
    # the UI: a failed verdict on raw_sales for each day (us.csv has no day: it stands on every day)
    assert verdicts(result, "raw_sales") == {D1: False, D2: False}
    # the run's alert, once per version, as for a blocked day
    messages = [a["message"] for a in alerts(data_dir) if a["status"] == "BLOCKED"]
    assert sorted(m.split(" blocked:")[0] for m in messages) == ["file over.csv", "file us.csv"]
    # the CLI summary's BLOCKED lines, the day-less version included
    blocked = _range_counts(h.engine, date.fromisoformat(D1), date.fromisoformat(D2))["blocked"]
    assert [line.split(" blocked:")[0] for line in blocked] == ["file over.csv", "file us.csv"]

    # the operator raises the limit to 25% and re-runs the day: 25% is not over 25%
    raised = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.25})
    raised.drops.extend(h.drops)
    range_run(raised, D2, D2)
    expected = assert_matches_oracle(raised)
    assert expected.blocked == {"us.csv": (200, 200)} and len(expected.sales) == 12
    assert statuses(raised)["over.csv"] == ("loaded", None)

    # a corrected version supersedes the day-less blocked one
    raised.drop("us.csv", rows("US", D1, good=5))
    range_run(raised, D1, D1)
    expected = assert_matches_oracle(raised)
    assert expected.blocked == {} and len(expected.sales) == 17
    assert statuses(raised)["us.csv"] == ("loaded", None)


def landed_fragments(data_dir: Path) -> dict[str, list[str]]:
    root = data_dir / "staging" / "landed"
    return {p.name: sorted(f.name for f in p.iterdir()) for p in sorted(root.iterdir())}


def fragment_prefix(name: str, content: bytes) -> str:
    return f"-{hashlib.sha256(name.encode()).hexdigest()[:20]}-{sha256_hex(content)[:16]}-"


def accounted_only(h: Harness) -> None:
    """Every landed fragment belongs to a live version of the ledger; no work folder is left."""
    live = {fragment_prefix(n, next(d.content for d in reversed(h.drops) if d.name == n))
            for n in statuses(h)}
    for day, names in landed_fragments(h.data_dir).items():
        assert not day.startswith("."), f"a landing's work folder is left: {day}"
        assert all(any(p in f for p in live) for f in names), (day, names)


def test_a_failed_landing_commit_publishes_nothing_the_day_would_take(data_dir, backend, key,
                                                                       monkeypatch):
    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    v1, v2 = rows("A", D1, good=3), rows("N", D1, good=4)
    h.drop("a.csv", v1)
    h.drop("b.csv", rows("B", D1, good=2))
    h.land()
    landed = list(h.drops)

    def commit_fails(*args, **kwargs):
        raise RuntimeError("the ledger commit failed")

    monkeypatch.setattr(intake_module, "record_landed", commit_fails)
    monkeypatch.setattr(intake_module, "record_landed_many", commit_fails)  # a batch's commit
    h.drop("a.csv", v2)  # a new version of a.csv, with other transaction ids
    failed = dg.materialize(all_assets(), selection=["landed_files"], resources=h.resources,
                            instance=h.instance, raise_on_error=False)
    assert not failed.success
    # taken back at once: a.csv's first version is still there, the new one nowhere
    on_disk = [f for names in landed_fragments(data_dir).values() for f in names]
    assert any(fragment_prefix("a.csv", v1) in f for f in on_disk)
    assert not any(fragment_prefix("a.csv", v2) in f for f in on_disk)

    # a landing that dies between the move and the commit cannot take them back
    monkeypatch.setattr(Lander, "unpublish", staticmethod(lambda moved: None), raising=False)
    dg.materialize(all_assets(), selection=["landed_files"], resources=h.resources,
                   instance=h.instance, raise_on_error=False)
    on_disk = [f for names in landed_fragments(data_dir).values() for f in names]
    assert any(fragment_prefix("a.csv", v2) in f for f in on_disk)  # published, unaccounted

    range_run(h, D1, D1, CLEANING_ONWARDS)  # the next run of the day
    only_landed = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    only_landed.drops.extend(landed)
    expected = assert_matches_oracle(only_landed)  # the versions the ledger holds, nothing else
    assert sorted(expected.sales) == ["A0", "A1", "A2", "B0", "B1"]
    accounted_only(only_landed)

    # the commit works again: the new version lands and supersedes the first
    monkeypatch.undo()
    range_run(h, D1, D1)
    expected = assert_matches_oracle(h)
    assert sorted(expected.sales) == ["B0", "B1", "N0", "N1", "N2", "N3"]
    accounted_only(h)
