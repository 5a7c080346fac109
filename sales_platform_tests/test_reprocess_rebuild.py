"""Landing again from the sealed archive (issue items 8 and 9), against the independent oracle on
SQLite and PostgreSQL: ``reprocess`` re-applies today's landing settings to the versions of a
range, ``rebuild`` brings a lost warehouse back from the archive's manifests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from sales_platform.core.archive_replay import arrivals, plan_reprocess, rebuild, reprocess
from sales_platform.core.intake import Intake
from sales_platform.core.warehouse.engine import cached_engine, dispose_all
from sales_platform_tests.helpers import resources_for
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import csv_bytes

D1, D2, D3 = "2024-06-15", "2024-06-16", "2024-06-17"
NEW_YORK = "America/New_York"
LEDGER_FIELDS = ("status", "size_bytes", "rows_read", "rows_landed", "rows_rejected",
                 "days_touched", "days_affected", "error", "archive_path", "received_at")


@pytest.fixture
def harness(data_dir, backend, key):
    return Harness(data_dir, backend.url, key)


def intake(h: Harness, now: datetime | None = None, **settings) -> Intake:
    """The platform's intake under ``settings`` (what the CLI builds from the environment)."""
    h.resources = resources_for(h.data_dir, h.db_url, h.key, **settings)
    platform = h.resources["platform"]
    platform.prepare()
    built = platform.intake(h.engine, "test")
    if now is not None:
        built.now = built.lander.now = now
    return built


def land_one(h: Harness, name: str, content: bytes, **settings) -> None:
    """One drop landed on its own (arrival order is drop order) under ``settings``, then loaded."""
    h.drop(name, content)
    intake(h, **settings).run()
    h.load_requested()


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def ledger_state(h: Harness) -> dict:
    return {k: tuple(str(v[f]) for f in LEDGER_FIELDS) for k, v in h.ledger().items()}


# 8 -----------------------------------------------------------------------------------------------
def test_reprocess_applies_a_new_time_zone_keeps_landing_order_and_is_idempotent(harness):
    a = csv_bytes([["A1", "C1", "P1", "1", f"{D1}T02:00:00"],      # NY: 06:00 UTC, same day
                   ["A2", "C1", "P1", "2", f"{D1}T22:30:00"],      # NY: 02:30 UTC on D2
                   ["T9", "C7", "P1", "3", f"{D2}T10:00:00+00:00"]])  # explicit: never moves
    b = csv_bytes([["B1", "C2", "P1", "1", f"{D2}T09:00:00Z"],
                   ["T9", "C7", "P1", "3", f"{D2}T10:00:00+00:00"]])  # identical copy, later
    land_one(harness, "a.csv", a)                       # under UTC
    land_one(harness, "b.csv", b, source_timezone=NEW_YORK)
    assert harness.sales_rows()["A2"][4] == date.fromisoformat(D1)  # still read as UTC

    now = intake(harness, source_timezone=NEW_YORK)
    plan = plan_reprocess(now, date.fromisoformat(D2), date.fromisoformat(D2))
    assert [(c.file_name, c.why) for c in plan] == [
        ("a.csv", "settings changed (SALES_PLATFORM_SOURCE_TIMEZONE UTC -> America/New_York)")]
    assert reprocess(now, plan) == {D1, D2}
    harness.load_requested()
    expected = assert_matches_oracle(harness, source_timezone=NEW_YORK)
    assert expected.sales["T9"].source_file == "a.csv"  # the earliest-landed copy, as before
    assert harness.sales_rows()["A2"][4] == date.fromisoformat(D2)
    assert harness.events("a.csv") == ["landed", "loaded", "reprocessed", "landed", "loaded"]
    assert {k[0]: v["status"] for k, v in harness.ledger().items()} == {"a.csv": "loaded",
                                                                        "b.csv": "loaded"}
    # nothing changed since: nothing to do
    assert plan_reprocess(intake(harness, source_timezone=NEW_YORK), date.fromisoformat(D1),
                          date.fromisoformat(D3)) == []


def test_reprocess_lands_rows_rejected_before_the_start_date_or_in_the_future(harness):
    wall = datetime.now(UTC).replace(microsecond=0)
    soon = (wall - timedelta(minutes=30)).replace(tzinfo=None)  # future for a clock 3 h behind
    content = csv_bytes([["E1", "C1", "P1", "1", f"{D1}T10:00:00"],  # before a start date of D2
                         ["F1", "C1", "P1", "2", soon.isoformat()],
                         ["G1", "C1", "P1", "1", f"{D3}T10:00:00"]])
    harness.drop("early.csv", content)
    intake(harness, now=datetime.now() - timedelta(hours=3), start_date=D2).run()
    harness.load_requested()
    assert sorted(r[2] for r in harness.reject_rows()) == ["before_start_date", "future_timestamp"]

    today = intake(harness)  # the start date back at 2024-01-01, the clock right
    (planned,) = plan_reprocess(today, date.fromisoformat(D1), soon.date())
    assert planned.why.startswith("settings changed (SALES_PLATFORM_START_DATE 2024-06-16 -> "
                                  f"2024-01-01); rows rejected at landing now fall on {D1}, ")
    assert reprocess(today, [planned]) >= {D1, D3, soon.date().isoformat()}
    harness.load_requested()
    assert_matches_oracle(harness)
    assert set(harness.sales_rows()) == {"E1", "F1", "G1"}
    assert plan_reprocess(intake(harness), date.fromisoformat(D1), soon.date()) == []


# 9 -----------------------------------------------------------------------------------------------
def lose_the_warehouse(h: Harness, backend) -> None:
    dispose_all()
    if backend.name == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{h.db_url.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)
    else:
        engine = cached_engine(h.db_url, migrate=False)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        dispose_all()
    h.engine = cached_engine(h.db_url)  # an empty warehouse, schema migrated


def test_rebuild_after_a_lost_warehouse_equals_the_oracle_and_the_state_before(harness, backend):
    jan = csv_bytes([["J1", "C1", "P1", "1", f"{D1}T10:00:00"], ["J2", "C2", "P1", "2", f"{D2}T10:00:00"],
                     ["J3", "C3", "P1", "x", f"{D2}T11:00:00"]])
    jan_fixed = csv_bytes([["J1", "C1", "P1", "1", f"{D1}T10:00:00"],
                           ["J3", "C3", "P1", "3", f"{D1}T11:00:00"]])
    feb = csv_bytes([["F1", "C1", "P1", "4", f"{D3}T08:00:00"], ["J1", "C1", "P1", "1", f"{D1}T10:00:00"]])
    for name, content in (("jan.csv", jan), ("jan.csv", jan_fixed), ("feb.csv", feb),
                          ("bad.csv", b"transaction_id;customer_id\nT1;C1\n"), ("copy.csv", feb)):
        land_one(harness, name, content)
    expected = assert_matches_oracle(harness)
    before = (harness.sales_rows(), harness.reject_rows(), ledger_state(harness))
    assert sorted((k[0], v[0]) for k, v in before[2].items()) == [
        ("bad.csv", "quarantined"), ("copy.csv", "skipped_duplicate"), ("feb.csv", "loaded"),
        ("jan.csv", "loaded"), ("jan.csv", "superseded")]

    lose_the_warehouse(harness, backend)
    replay = intake(harness)
    records, unnamed = arrivals(replay)
    assert [r.file_name for r in records] == ["jan.csv", "jan.csv", "feb.csv", "bad.csv", "copy.csv"]
    assert unnamed == []
    report = rebuild(replay, records)
    assert (report.landed, report.duplicates, report.quarantined) == (
        ["jan.csv", "jan.csv", "feb.csv"], ["copy.csv"], ["bad.csv"])
    harness.load_requested()
    assert_matches_oracle(harness)
    # a superseded version's last error (jan.csv v1 blocked its day before v2 came) is history
    # of loads between arrivals, which the archive does not replay
    error = LEDGER_FIELDS.index("error")
    assert before[2][("jan.csv", sha(jan))][error].startswith(f"{D2} blocked: 1 of 2 rows rejected")
    after = ledger_state(harness)
    after[("jan.csv", sha(jan))] = before[2][("jan.csv", sha(jan))][:error] + (
        before[2][("jan.csv", sha(jan))][error],) + after[("jan.csv", sha(jan))][error + 1:]
    assert (harness.sales_rows(), harness.reject_rows(), after) == before
    assert set(expected.current_files.items()) == {k for k, v in before[2].items() if v[0] == "loaded"}


# the commands -------------------------------------------------------------------------------------
def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SALES_PLATFORM_", "DAGSTER_"))}
    return subprocess.run([sys.executable, "-m", "sales_platform.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def test_rebuild_refuses_a_warehouse_that_is_not_empty_and_both_commands_have_help(data_dir, key):
    env = {"SALES_PLATFORM_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "home"),
           "SALES_PLATFORM_ENCRYPTION_KEY": key}
    for command in ("reprocess", "rebuild"):
        shown = cli([command, "--help"], env)
        assert shown.returncode == 0 and "--dry-run" in shown.stdout, shown.stderr
    bad = cli(["reprocess", "--first", "2024-01-05", "--last", "2024-01-02"], env)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "sales-platform reprocess: error: --first 2024-01-05 is after --last 2024-01-02"
    h = Harness(data_dir, f"sqlite:///{data_dir / 'warehouse.db'}", key)
    h.drop("semi.csv", b"transaction_id;customer_id\nT1;C1\n")
    intake(h).run()  # quarantined: one arrival, one ledger row
    refused = cli(["rebuild"], env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("sales-platform rebuild: error: the warehouse is not empty "
                                     "(1 file version(s), 0 sales rows, 0 rejects)"), refused.stderr
    shown = cli(["rebuild", "--dry-run"], env)
    assert shown.returncode == 0, shown.stderr
    assert "1 arrival(s) in the archive's manifests (0 to land, 0 duplicate(s), 1 quarantined)" \
        in shown.stdout
