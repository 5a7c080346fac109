"""Exactly-once, loss-free ingestion under realistic drops.

Every test drops files as an operator would, drives the real assets (and the load sensor), and
compares the whole sales table, the rejects and the ledger with what the independent oracle
(sales_platform_tests/oracle.py) computes from the same bytes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from sales_platform.core import csvread
from sales_platform.core.pipeline import manifest_ns
from sales_platform.core.warehouse.tables import file_ledger, pending_days, sales
from sales_platform.partitions import partition_range_tags
from sales_platform_tests.helpers import all_assets, check_results, materializations_of
from sales_platform_tests.integrity import (
    LOAD_CHAIN,
    Harness,
    assert_matches_oracle,
    day,
    days_of,
    expected_sales,
)
from sales_platform_tests.oracle import Drop, csv_bytes

D1, D2, D3 = "2024-06-15", "2024-06-16", "2024-06-17"


@pytest.fixture
def harness(data_dir, backend, key):
    # tiny files: one landing reject in three would block the version at the default 20%
    return Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.5})


def rows(prefix: str, n: int, when: str = f"{D1}T10:00:00", customer: str = "C1") -> list[list[str]]:
    return [[f"{prefix}{i}", customer, "P1", str(1 + i % 5), when] for i in range(n)]


def land_and_load(h: Harness) -> None:
    h.land()
    h.load_requested()


# 1 -------------------------------------------------------------------------------------------
def test_names_that_a_sanitizer_would_fold_stay_separate_files(harness):
    for name, prefix in (("sales 1.csv", "A"), ("sales_1.csv", "B"), ("销售.csv", "C"), ("退货.csv", "D")):
        harness.drop(name, csv_bytes(rows(prefix, 30 if prefix != "D" else 200)))
    land_and_load(harness)
    expected = assert_matches_oracle(harness)
    assert len(expected.sales) == 290
    # a new version of one name never touches the rows of another
    harness.drop("sales 1.csv", csv_bytes(rows("A", 10)))
    land_and_load(harness)
    expected = assert_matches_oracle(harness)
    assert len(expected.sales) == 270
    assert {s for (_, _, _, _, _, s, _) in harness.sales_rows().values()} == {
        "sales 1.csv", "sales_1.csv", "销售.csv", "退货.csv"}


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [(D1, D2), (D2, D1)])
def test_a_transaction_id_on_two_days_is_rejected_on_both_and_reruns_move_nothing(harness, order):
    harness.drop("monday.csv", csv_bytes([["T1", "C1", "P1", "1", f"{D1}T09:00:00"],
                                          ["T2", "C1", "P1", "1", f"{D1}T09:00:00"]]))
    harness.drop("tuesday.csv", csv_bytes([["t1", "C9", "P1", "3", f"{D2}T09:00:00"],
                                           ["T3", "C1", "P1", "1", f"{D2}T09:00:00"]]))
    harness.land()
    results = [harness.run_day(d) for d in order]
    expected = assert_matches_oracle(harness)
    assert expected.rejects_by_reason() == {"duplicate_across_days": 2}
    second = materializations_of(results[1], "sales")[0].metadata
    # the second day's load finds the conflict: 2 staged, 1 rejected, 1 inserted, 1 evicted
    assert (second["inserted"].value, second["conflicts_rejected"].value,
            second["conflicts_evicted"].value) == (1, 1, 1)
    before = (harness.sales_rows(), harness.reject_rows())
    for d in (*order, order[0]):
        harness.run_day(d)
    assert (harness.sales_rows(), harness.reject_rows()) == before
    result = harness.run_day(D1)
    assert check_results(result)["transaction_id_unique"] is True


def test_a_conflict_that_goes_away_brings_the_other_days_row_back(harness):
    harness.drop("a.csv", csv_bytes([["T1", "C1", "P1", "1", f"{D1}T09:00:00"]]))
    harness.drop("b.csv", csv_bytes([["T1", "C2", "P1", "2", f"{D2}T09:00:00"]]))
    land_and_load(harness)
    assert assert_matches_oracle(harness).sales == {}
    harness.drop("b.csv", csv_bytes([["T9", "C2", "P1", "2", f"{D2}T09:00:00"]]))  # corrected
    land_and_load(harness)  # loads D2; the sensor then asks for D1 again
    expected = assert_matches_oracle(harness)
    assert set(expected.sales) == {"T1", "T9"}


# 3 -------------------------------------------------------------------------------------------
def test_each_timestamp_is_parsed_on_its_own(harness):
    harness.drop("mixed.csv", csv_bytes([
        ["T1", "C1", "P1", "1", f"{D1}T02:00:00-08:00"],
        ["T2", "C1", "P1", "1", f"{D1}T20:00:00"],
        ["T3", "C1", "P1", "1", f"{D1}T23:30:00+00:00"],
        ["T4", "C1", "P1", "1", f"{D1} 23:45"],
        ["T5", "C1", "P1", "1", f"{D2}T01:00:00+05:00"],
        ["T6", "C1", "P1", "1", D1],
        ["T7", "C1", "P1", "1", "2024"],
    ]))
    land_and_load(harness)
    expected = assert_matches_oracle(harness)
    got = {tid: (ts, d) for tid, (_, _, _, ts, d, _, _) in harness.sales_rows().items()}
    assert got["T1"] == (datetime(2024, 6, 15, 10, 0), day(D1))
    assert got["T2"] == (datetime(2024, 6, 15, 20, 0), day(D1))
    assert got["T5"] == (datetime(2024, 6, 15, 20, 0), day(D1))
    assert expected.rejects_by_reason() == {"invalid_timestamp": 2}


def test_naive_timestamps_are_read_in_the_configured_source_zone(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"source_timezone": "America/New_York",
                                                      "max_reject_rate": 0.5})
    h.drop("ny.csv", csv_bytes([["T1", "C1", "P1", "1", f"{D1}T22:00:00"],
                                ["T2", "C1", "P1", "1", f"{D1}T22:00:00Z"],
                                ["T3", "C1", "P1", "1", "2024-03-10T02:30:00"]]))  # DST gap
    land_and_load(h)
    assert_matches_oracle(h, source_timezone="America/New_York")
    got = h.sales_rows()
    assert got["T1"][3:5] == (datetime(2024, 6, 16, 2, 0), day(D2))
    assert got["T2"][3:5] == (datetime(2024, 6, 15, 22, 0), day(D1))


# 4 -------------------------------------------------------------------------------------------
def test_recent_sales_are_not_future_on_a_server_outside_utc(harness, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        recent = (datetime.now(UTC) - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
        future = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        tolerated = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        harness.drop("late.csv", csv_bytes([["T1", "C1", "P1", "1", recent],
                                            ["T2", "C1", "P1", "1", future],
                                            ["T3", "C1", "P1", "1", tolerated]]))
        land_and_load(harness)
        expected = assert_matches_oracle(harness)
        assert set(expected.sales) == {"T1", "T3"}  # 30 min ahead: within the 1 h clock tolerance
        assert expected.rejects_by_reason() == {"future_timestamp": 1}
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# 5 -------------------------------------------------------------------------------------------
def test_a_corrected_version_that_drops_a_day_removes_that_days_rows(harness):
    harness.drop("week.csv", csv_bytes(rows("A", 5, f"{D1}T10:00:00") + rows("B", 7, f"{D2}T10:00:00")))
    land_and_load(harness)
    assert len(assert_matches_oracle(harness).sales) == 12
    harness.drop("week.csv", csv_bytes(rows("A", 5, f"{D1}T11:00:00")))
    ran = harness.load_requested() if harness.land() else []
    assert any(first <= D2 <= last for first, last in ran)  # the old version's day is reloaded
    expected = assert_matches_oracle(harness)
    assert len(expected.sales) == 5
    statuses = sorted(e["status"] for e in harness.ledger().values())
    assert statuses == ["loaded", "superseded"]


# 6 -------------------------------------------------------------------------------------------
def test_a_file_landed_while_its_day_is_materialized_is_loaded_by_the_next_run(harness):
    harness.drop("first.csv", csv_bytes(rows("A", 20)))
    harness.land()
    harness.run_day(D1, ["raw_sales", "cleaned_sales"])
    harness.drop("late.csv", csv_bytes(rows("L", 6)))  # lands between cleaning and loading
    harness.land()
    result = harness.run_day(D1, ["encrypted_sales", "sales"])
    assert check_results(result)["rows_conserved"] is True
    ledger = {name: e["status"] for (name, _), e in harness.ledger().items()}
    assert ledger == {"first.csv": "loaded", "late.csv": "landed"}  # its rows are not in yet
    ran = harness.load_requested()
    assert (D1, D1) in ran
    assert_matches_oracle(harness)
    assert {name: e["status"] for (name, _), e in harness.ledger().items()} == {
        "first.csv": "loaded", "late.csv": "loaded"}


# 7 -------------------------------------------------------------------------------------------
def test_a_growing_file_is_taken_only_once_complete_and_nothing_is_lost(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"settle_s": 0.6})
    path = h.incoming / "stream.csv"
    header = b"transaction_id,customer_id,product_id,quantity,timestamp\n"
    path.write_bytes(header)
    written = [header]

    def writer() -> None:
        for batch in range(10):
            chunk = "".join(f"G{batch}-{i},C1,P1,1,{D1}T10:00:00\n" for i in range(2000)).encode()
            with open(path, "ab") as handle:
                handle.write(chunk)
            written.append(chunk)
            time.sleep(0.1)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        h.land()  # the daily job and backfills land too: the settle rule must hold for them
        time.sleep(0.05)
    thread.join()
    deadline = time.monotonic() + 60
    while path.exists() and time.monotonic() < deadline:
        h.land()
        time.sleep(0.2)
    assert not path.exists()
    h.drops = [Drop("stream.csv", b"".join(written))]  # what the writer wrote, in full
    h.load_requested()
    expected = assert_matches_oracle(h)
    assert len(expected.sales) == 20_000


# 8 -------------------------------------------------------------------------------------------
def test_two_runs_of_one_day_at_once_keep_one_copy_of_each_reject(harness):
    bad = [["X1", "C1", "P1", "-1", f"{D1}T10:00:00"], ["X2", "", "P1", "1", f"{D1}T10:00:00"]]
    harness.drop("day.csv", csv_bytes(rows("A", 30) + bad))
    harness.land()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            instance = dg.DagsterInstance.ephemeral()
            dg.materialize(all_assets(), selection=["cleaned_sales", "encrypted_sales", "sales"],
                           partition_key=D1, resources=harness.resources, instance=instance)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_matches_oracle(harness)


# 9 -------------------------------------------------------------------------------------------
def test_a_duplicate_drop_never_overwrites_the_loaded_entry(harness):
    content = csv_bytes(rows("A", 4))
    harness.drop("a.csv", content)
    land_and_load(harness)
    before = harness.ledger()
    for name in ("a.csv", "copy.csv", "a.csv"):
        harness.drop(name, content)
        harness.land()
    harness.load_requested()
    after = harness.ledger()
    (sha,) = {sha for (_, sha) in after}
    assert after[("a.csv", sha)]["status"] == "loaded"
    assert after[("a.csv", sha)]["rows_landed"] == before[("a.csv", sha)]["rows_landed"] == 4
    assert after[("copy.csv", sha)]["status"] == "skipped_duplicate"
    assert harness.events("a.csv") == ["landed", "loaded", "skipped_duplicate", "skipped_duplicate"]
    assert_matches_oracle(harness)


# 10 ------------------------------------------------------------------------------------------
def test_a_blocked_day_keeps_its_rejects_and_the_ledger_says_why(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    h.drop("bad.csv", csv_bytes(rows("A", 4) + [[f"B{i}", "C1", "P1", "-1", f"{D1}T10:00:00"]
                                                 for i in range(4)]))
    h.land()
    result = h.run_day(D1, raise_on_error=False)
    assert check_results(result)["reject_rate_below_threshold"] is False
    expected = h.expected()
    assert h.reject_rows() == sorted((r.source_file, r.source_row, r.reason, r.sale_date)
                                     for r in expected.rejects)
    assert h.sales_rows() == {}
    (entry,) = h.ledger().values()
    assert entry["status"] == "blocked"
    assert entry["error"].startswith(f"{D1} blocked: 4 of 8 rows rejected (50% > 20%)")
    with h.engine.connect() as conn:
        assert conn.execute(select(pending_days.c.sale_date)).scalars().all() == [day(D1)]


def test_the_cli_summary_tells_a_blocked_day(data_dir, backend, key, monkeypatch, capsys):
    from sales_platform import cli

    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    h.drop("bad.csv", csv_bytes(rows("A", 4) + [[f"B{i}", "C1", "P1", "0", f"{D1}T10:00:00"]
                                                 for i in range(4)]))
    h.land()
    h.run_day(D1, raise_on_error=False)
    monkeypatch.setenv("SALES_PLATFORM_DB_URL", backend.url)
    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(data_dir))
    cli.print_summary(D1, D1)
    out = capsys.readouterr().out
    assert "rows rejected: 4" in out and "quantity_not_positive: 4" in out
    assert f"BLOCKED {D1} blocked: 4 of 8 rows rejected (50% > 20%)" in out


@pytest.mark.parametrize("runs", ["one range run", "a run per day"])
def test_a_file_blocking_two_days_names_both_in_the_ledger_and_the_summary(
        data_dir, backend, key, monkeypatch, capsys, runs):
    from sales_platform import cli

    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    bad = [[f"B{i}", "C1", "P1", "-1", f"{d}T10:00:00"] for d in (D1, D2) for i in range(2)]
    h.drop("spans.csv", csv_bytes(rows("A", 2) + rows("E", 3, f"{D2}T09:00:00") + bad))
    h.land()
    if runs == "one range run":
        dg.materialize(all_assets(), selection=LOAD_CHAIN, resources=h.resources, instance=h.instance,
                       tags=partition_range_tags(D1, D2), raise_on_error=False)
    else:
        h.run_day(D1, raise_on_error=False)
        h.run_day(D2, raise_on_error=False)
        h.run_day(D2, raise_on_error=False)  # blocked again: its line replaced, not repeated
    (entry,) = h.ledger().values()
    assert entry["status"] == "blocked"
    assert entry["error"].splitlines() == [
        f"{D1} blocked: 2 of 4 rows rejected (50% > 20%); fix the file and drop a corrected "
        "version, or raise SALES_PLATFORM_MAX_REJECT_RATE and re-materialize the day",
        f"{D2} blocked: 2 of 5 rows rejected (40% > 20%); fix the file and drop a corrected "
        "version, or raise SALES_PLATFORM_MAX_REJECT_RATE and re-materialize the day"]
    monkeypatch.setenv("SALES_PLATFORM_DB_URL", backend.url)
    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(data_dir))
    cli.print_summary(D1, D2)
    out = capsys.readouterr().out
    assert f"BLOCKED {D1} blocked: 2 of 4" in out and f"BLOCKED {D2} blocked: 2 of 5" in out


# 11 ------------------------------------------------------------------------------------------
def test_quoted_newlines_across_read_blocks_and_oversized_rows(harness, monkeypatch):
    monkeypatch.setattr(csvread, "BLOCK_SIZE", 4096)
    monkeypatch.setattr(csvread, "MAX_ROW_CHARS", 20_000)
    records = rows("A", 150)
    for i in range(0, 150, 7):
        records[i][1] = "C\nwith\nnewlines " + "x" * (i * 5)  # invalid_identifier, one row each
    records[60][2] = "P" * 9000  # a field larger than the block: read as a row
    records[90][2] = "Q" * 30_000  # larger than the row limit: rejected as a row
    harness.drop("quoted.csv", csv_bytes(records))
    land_and_load(harness)
    expected = harness.expected()
    assert harness.sales_rows() == expected_sales(expected)
    got = {(f, r): reason for f, r, reason, _ in harness.reject_rows()}
    assert got[("quoted.csv", 91)] == "row_too_large"
    want = {(r.source_file, r.source_row): r.reason for r in expected.rejects}
    assert {k: v for k, v in got.items() if k != ("quoted.csv", 91)} == {
        k: v for k, v in want.items() if k != ("quoted.csv", 91)}
    ledger = next(iter(harness.ledger().values()))
    assert ledger["rows_read"] == 150


# 12 ------------------------------------------------------------------------------------------
def test_an_unreadable_or_too_wide_file_never_blocks_the_others(harness, monkeypatch):
    from sales_platform.core import intake as intake_module

    real_open = os.open

    def deny(path, flags, *args, **kwargs):  # root reads any file: simulate a permission error
        if str(path).endswith("locked.csv"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(intake_module.os, "open", deny)
    harness.drop("good.csv", csv_bytes(rows("A", 5)))
    harness.drop("locked.csv", csv_bytes(rows("L", 5)))
    wide = [*(f"col{i}" for i in range(10_000))]
    harness.drop("wide.csv", csv_bytes([["W1", "C1", "P1", "1", f"{D1}T10:00:00", *["v"] * 10_000]],
                                       header=["transaction_id", "customer_id", "product_id", "quantity",
                                               "timestamp", *wide]))
    land_and_load(harness)
    statuses = {name: e["status"] for (name, _), e in harness.ledger().items()}
    assert statuses == {"good.csv": "loaded", "locked.csv": "quarantined", "wide.csv": "quarantined"}
    errors = {name: e["error"] for (name, _), e in harness.ledger().items()}
    assert "Permission denied" in errors["locked.csv"]
    assert "10005 columns" in errors["wide.csv"]
    assert set(harness.sales_rows()) == {f"A{i}" for i in range(5)}


# 13 ------------------------------------------------------------------------------------------
def test_links_and_special_files_are_never_followed(harness, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_bytes(csv_bytes(rows("O", 3)))
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:TOPSECRETLINE:/root:/bin/bash\n")
    os.symlink(secret, harness.incoming / "passwd.csv")
    os.symlink(outside, harness.incoming / "elsewhere.csv")
    os.symlink(tmp_path / "missing.csv", harness.incoming / "dangling.csv")
    os.mkfifo(harness.incoming / "pipe.csv")
    (harness.incoming / "folder.csv").mkdir()
    harness.drop("real.csv", csv_bytes(rows("R", 2)))
    land_and_load(harness)
    assert set(harness.sales_rows()) == {"R0", "R1"}
    assert outside.exists() and secret.exists()  # targets untouched
    ledger = {name: e for (name, _), e in harness.ledger().items()}
    for name in ("passwd.csv", "elsewhere.csv", "dangling.csv", "pipe.csv", "folder.csv"):
        assert ledger[name]["status"] == "quarantined", name
    for name in ("passwd.csv", "elsewhere.csv", "dangling.csv"):
        assert "symbolic link, not followed" in ledger[name]["error"], name
    for path in (harness.data_dir / "quarantine").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"TOPSECRETLINE" not in path.read_bytes()
    assert all("TOPSECRETLINE" not in str(e) for e in ledger.values())
    assert os.listdir(harness.incoming) == []


# 14 ------------------------------------------------------------------------------------------
def test_every_reject_names_its_row_and_only_csv_files_are_taken(harness):
    content = (b"transaction_id,customer_id,product_id,quantity,timestamp\n"
               b"T1,C1,P1,1,2024-06-15T10:00:00\n"
               b"T2,C1,P1\n"
               b"\n"
               b"T3,C1,P1,1,2024-06-15T10:00:00,extra\n"
               b"T4,C1,P1,1,2024-06-15T10:00:00\n")
    harness.drop("rows.csv", content)
    harness.drop("notes.txt", csv_bytes(rows("N", 2)))
    harness.drop("UPPER.CSV", csv_bytes(rows("U", 2)))  # the suffix is matched in any case
    harness.drop("noext", csv_bytes(rows("M", 2)))
    land_and_load(harness)
    assert_matches_oracle(harness)
    assert ("rows.csv", 2, "malformed_row", None) in harness.reject_rows()
    assert ("rows.csv", 3, "malformed_row", None) in harness.reject_rows()
    assert harness.sales_rows()["T4"][6] == 4
    assert {"U0", "U1"} <= set(harness.sales_rows())
    ledger = {name: e for (name, _), e in harness.ledger().items()}
    assert ledger["notes.txt"]["status"] == ledger["noext"]["status"] == "quarantined"


def test_every_day_touched_is_requested_once_and_then_cleared(harness):
    harness.drop("span.csv", csv_bytes(rows("A", 3, f"{D1}T10:00:00") + rows("B", 3, f"{D3}T10:00:00")))
    harness.land()
    with harness.engine.connect() as conn:
        assert sorted(d.isoformat() for d in conn.execute(select(pending_days.c.sale_date)).scalars()) \
            == [D1, D3]
    assert sorted(harness.load_requested()) == [(D1, D1), (D3, D3)]
    with harness.engine.connect() as conn:
        assert conn.execute(select(pending_days.c.sale_date)).scalars().all() == []
        assert conn.execute(select(file_ledger.c.status)).scalars().all() == ["loaded"]
    expected = assert_matches_oracle(harness)
    assert days_of(expected) == [D1, D3]


# property ------------------------------------------------------------------------------------
NAMES = ("sales 1.csv", "sales_1.csv", "销售.csv", "退货.csv", "week.csv")
DAYS = (D1, D2, D3, "2024-06-18")


def random_file(rng, previous: list[list[list[str]]]) -> list[list[str]]:
    """Rows mixing fresh ids, ids of earlier files (identical or changed copies, other days),
    case variants, offsets, and a few bad values."""
    out = []
    for _ in range(rng.randint(1, 12)):
        if previous and rng.random() < 0.25:
            row = list(rng.choice(rng.choice(previous)))
            if rng.random() < 0.5:
                row[3] = str(rng.randint(1, 9))  # same id, other content
            if rng.random() < 0.3:
                row[4] = f"{rng.choice(DAYS)}T{rng.randint(0, 23):02d}:15:00"  # maybe another day
        else:
            tid = f"T{rng.randint(1, 60)}"
            row = [tid.lower() if rng.random() < 0.1 else tid, f"C{rng.randint(1, 5)}", "P1",
                   str(rng.randint(1, 9)), f"{rng.choice(DAYS)}T{rng.randint(0, 23):02d}:30:00"]
            if rng.random() < 0.15:
                row[4] = row[4] + rng.choice(["Z", "+02:00", "-05:00"])
            if rng.random() < 0.08:
                row[3] = rng.choice(["-1", "x", "2.5", ""])
        out.append(row)
    return out


@pytest.mark.parametrize("seed", [3, 29])
def test_random_drop_sequences_end_in_the_oracles_tables(data_dir, backend, key, seed):
    import random

    # reject-rate blocking is tested on its own: here every day must load
    harness = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 1.0})
    rng = random.Random(seed)
    written: list[list[list[str]]] = []
    for _ in range(9):
        action = rng.random()
        if action < 0.15 and harness.drops:  # the same bytes again, maybe under another name
            again = rng.choice(harness.drops)
            harness.drop(rng.choice([again.name, *NAMES]), again.content)
        else:
            content = random_file(rng, written)
            written.append(content)
            harness.drop(rng.choice(NAMES), csv_bytes(content))
        harness.land()
        step = rng.random()
        if step < 0.5:
            harness.load_requested()
        elif step < 0.8:  # an operator re-runs a random day (possibly not a pending one)
            harness.run_day(rng.choice(DAYS), raise_on_error=False)
    harness.land()
    harness.load_requested(rounds=6)
    expected = assert_matches_oracle(harness)
    accounted = expected.accounted()
    got: dict[str, int] = {}
    for (_, _, _, _, _, name, _) in harness.sales_rows().values():
        got[name] = got.get(name, 0) + 1
    for name, *_ in harness.reject_rows():
        got[name] = got.get(name, 0) + 1
    assert got == {k: v for k, v in accounted.items() if v}


def test_a_run_that_read_older_landed_rows_never_overwrites_a_newer_load(harness):
    """Run A cleans a day before a late file lands; run B cleans and loads it after. When A's
    steps finish last, the day keeps B's (newer) rows, rejects and layers."""
    harness.drop("first.csv", csv_bytes(rows("A", 10)))
    harness.land()
    old_a = harness.run_day(D1, ["raw_sales", "cleaned_sales"])  # run A: snapshot with first.csv
    assert old_a.success

    stale = harness.data_dir / "stale_layers"
    for layer in ("cleaned", "rejects"):
        shutil.copytree(harness.data_dir / "staging" / layer / D1, stale / layer)
    harness.drop("late.csv", csv_bytes(rows("L", 5) + [["BAD", "C1", "P1", "-1", f"{D1}T10:00:00"]]))
    harness.land()
    harness.run_day(D1)  # run B: sees both files, loads 15 rows
    newer = (harness.sales_rows(), harness.reject_rows())
    for layer in ("cleaned", "rejects"):  # run A's slow steps publish its older layers now
        tmp = harness.data_dir / "staging" / layer / f".{D1}.stale.tmp"
        shutil.copytree(stale / layer, tmp)
        harness.resources["platform"].areas.publish_layer(
            layer, D1, tmp, version=manifest_ns)
    result = harness.run_day(D1, ["encrypted_sales", "sales"])
    assert result.success
    assert (harness.sales_rows(), harness.reject_rows()) == newer
    assert_matches_oracle(harness)


def test_a_file_with_a_future_mtime_still_lands(harness):
    """Copied from a machine whose clock runs ahead: it would never look settled."""
    harness.drop("skewed.csv", csv_bytes(rows("S", 3)))
    ahead = time.time() + 365 * 86400
    os.utime(harness.incoming / "skewed.csv", (ahead, ahead))
    harness.resources["platform"] = harness.resources["platform"].model_copy(update={"settle_s": 5.0})
    land_and_load(harness)
    assert set(assert_matches_oracle(harness).sales) == {"S0", "S1", "S2"}


# found by a hostile pass ---------------------------------------------------------------------
def test_a_blocked_day_keeps_no_row_of_the_version_it_superseded(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    h.drop("f.csv", csv_bytes(rows("T", 5)))
    land_and_load(h)
    bad = rows("T", 5)
    for row in bad[:3]:
        row[3] = "0"
    h.drop("f.csv", csv_bytes(bad))  # the new version blocks the day
    land_and_load(h)
    (current,) = [e for e in h.ledger().values() if e["status"] != "superseded"]
    assert current["status"] == "blocked"
    assert h.sales_rows() == {}  # v1's rows are gone, v2's good rows wait for the day to unblock
    assert sorted(r[2] for r in h.reject_rows()) == ["quantity_not_positive"] * 3


def test_a_sale_moved_to_another_day_survives_its_old_day_being_blocked(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 0.2})
    elsewhere = ["E1", "C1", "P1", "1", f"{D3}T10:00:00Z"]
    old = [["T", "C1", "P1", "1", f"{D1}T10:00:00Z"], *rows("G", 4), elsewhere]
    h.drop("f.csv", csv_bytes(old))
    land_and_load(h)
    new = [["T", "C1", "P1", "1", f"{D3}T10:00:00Z"], *rows("G", 4), elsewhere]
    new[1][3] = new[2][3] = "0"  # D1 now blocks
    h.drop("f.csv", csv_bytes(new))
    land_and_load(h)
    got = h.sales_rows()
    assert got["T"][4] == day(D3) and got["E1"][4] == day(D3)
    assert not any(d == day(D1) for *_, d, _, _ in got.values())


def test_a_version_whose_every_row_is_rejected_at_landing_is_blocked(harness):
    harness.drop("bad.csv", csv_bytes([["A1", "C1", "P1", "1", "garbage"],
                                       ["A2", "C1", "P1", "1", "2024-13-01T00:00:00"]]))
    land_and_load(harness)
    assert [e["status"] for e in harness.ledger().values()] == ["blocked"]  # 100% > 50%
    assert assert_matches_oracle(harness).blocked == {"bad.csv": (2, 2)}


def test_whole_numbers_ids_blank_lines_and_far_years_follow_the_rules(data_dir, backend, key):
    harness = Harness(data_dir, backend.url, key, platform={"max_reject_rate": 1.0})
    content = b"\n\n" + csv_bytes([
        ["Q1", "C1", "P1", "1.0000000000000001", f"{D1}T10:00:00Z"],
        ["Q2", "C1", "P1", "1000.0000000000001", f"{D1}T10:00:00Z"],
        ["Q3", "C1", "P1", "1.5e1", f"{D1}T10:00:00Z"],
        ["ß1", "C1", "P1", "1", f"{D1}T10:00:00Z"],
        ["SS1", "C1", "P1", "1", f"{D2}T10:00:00Z"],
        ["ﬁx", "C1", "P1", "1", f"{D1}T10:00:00Z"],
        ["FIX", "C1", "P1", "1", f"{D2}T10:00:00Z"],
        ["Y1", "C1", "P1", "1", "2300-01-01T00:00:00Z"],
        ["Y2", "C1", "P1", "1", "1600-01-01T00:00:00Z"],
        ["M1", "C1", "P1", "1000", f"{D1}T10:00:00Z"],  # exactly max_quantity: allowed
        ["B1", "C1", "P1", "1", "9999-12-31"],  # bare far dates: not timestamps
        ["B2", "C1", "P1", "1", "1000-01-01"],
    ])
    harness.drop("odd.csv", content)
    land_and_load(harness)
    expected = assert_matches_oracle(harness)
    assert set(expected.sales) == {"Q3", "M1"}
    assert expected.rejects_by_reason() == {"quantity_not_integer": 2, "duplicate_across_days": 4,
                                            "future_timestamp": 1, "before_start_date": 1,
                                            "invalid_timestamp": 2}


def test_a_new_version_takes_over_its_unchanged_rows_and_drops_the_old_rejects(harness):
    v1 = rows("A", 4) + [["BADTS", "C1", "P1", "1", "garbage"]]
    harness.drop("f.csv", csv_bytes(v1))
    land_and_load(harness)
    v2 = list(reversed(rows("A", 4)))  # the same rows in another order: only their lineage changes
    harness.drop("f.csv", csv_bytes(v2))
    land_and_load(harness)
    assert_matches_oracle(harness)  # v1's landing reject is gone with v1
    sha = hashlib.sha256(harness.drops[-1].content).hexdigest()
    with harness.engine.connect() as conn:
        shas = set(conn.execute(select(sales.c.source_sha256)).scalars())
    assert shas == {sha}  # every row, the unchanged ones too, credits the current version
    assert harness.ledger()[("f.csv", sha)]["status"] == "loaded"
