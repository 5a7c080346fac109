"""Rules that a blind mutation run (tools/blind_mutations.py, report in
tools/blind_mutation_report.md) found untested: one test per rule, named after it, each expectation
written from the inputs and the documentation, never from the platform's own counts."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, select

from sales_platform.core import preflight, settings
from sales_platform.core.crypto import CryptoError, parse_master_key
from sales_platform.core.intake import Intake
from sales_platform.core.products import products_from_items
from sales_platform.core.quality import QualityRules
from sales_platform.core.report import read_report_data, report_window
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.uploads import UploadRefused, receive
from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.ledger import mark_blocked, refresh_versions, versions_awaiting_load
from sales_platform.core.warehouse.loading import SalesLoader
from sales_platform.core.warehouse.tables import (
    agg_sales_by_category_monthly,
    agg_sales_daily,
    file_day_counts,
    file_ledger,
    sales,
    sales_rejects,
)
from sales_platform_tests.integrity import Harness
from sales_platform_tests.oracle import csv_bytes

NOW = datetime(2024, 6, 1)
HEADER = "transaction_id,customer_id,product_id,quantity,timestamp"


@pytest.fixture
def intake(data_dir: Path, keyring, tmp_path: Path) -> Intake:
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    return Intake(areas, engine, keyring, SchemaContract(), QualityRules(start_date=date(2024, 1, 1)),
                  code_version="test", now=NOW, settle_s=0)


# docs/operations.md: "*.tmp, *.partial, *.part, *.crdownload) are in progress and left alone"
@pytest.mark.parametrize("suffix", [".tmp", ".partial", ".part", ".crdownload"])
def test_drop_zone_leaves_files_in_progress_alone(intake: Intake, data_dir: Path, suffix: str) -> None:
    incoming = data_dir / "incoming"
    partial = incoming / f"sales.csv{suffix}"
    partial.write_text(f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\n")
    assert intake.run() == []
    assert partial.exists()
    assert [p for p in (data_dir / "quarantine").iterdir()] == []


# docs/operations.md: only regular files named `*.csv` (any case) are taken.
@pytest.mark.parametrize("name", ["SALES.CSV", "sales.Csv"])
def test_drop_zone_csv_suffix_is_case_insensitive(intake: Intake, data_dir: Path, name: str) -> None:
    (data_dir / "incoming" / name).write_text(f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\n")
    (outcome,) = intake.run()
    assert (outcome.file_name, outcome.status, outcome.rows_landed) == (name, "landed", 1)

def _landing_rejects(intake: Intake) -> list[tuple[int, str]]:
    with intake.engine.connect() as conn:
        return sorted(conn.execute(select(sales_rejects.c.source_row, sales_rejects.c.reason)).all())


# docs/pipeline.md: source_row is the 1-based number of the data record after the header, blank
# lines not counted. A record of empty fields (",,,,") is a record, not a blank line, on both the
# fast path and the exact path (a blank line before the header sends the file to the exact path).
@pytest.mark.parametrize("lead", ["", "\n"], ids=["fast_path", "exact_path"])
def test_a_record_of_empty_fields_is_a_numbered_row_not_a_blank_line(
        intake: Intake, data_dir: Path, lead: str) -> None:
    (data_dir / "incoming" / "empty_fields.csv").write_text(
        f"{lead}{HEADER}\n"
        "T1,C1,P1,1,2024-03-01T10:00:00\n"
        ",,,,\n"
        "\n"
        "T3,C1,P1,1,not a date\n")
    (outcome,) = intake.run()
    assert outcome.status == "landed"
    # record 2 (",,,,") has no timestamp; the blank line is skipped; record 3 has a bad one
    assert _landing_rejects(intake) == [(2, "missing_timestamp"), (3, "invalid_timestamp")]


# A file written again after it was read is a new version: it stays in the drop zone and lands
# next time. Rewritten in place (same inode) with the same size, only its mtime tells.
def test_a_file_rewritten_in_place_with_the_same_size_while_landing_stays_as_a_new_version(
        intake: Intake, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_dir / "incoming" / "sales.csv"
    first = f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\n".encode()
    second = first.replace(b"T1,C1,P1,1", b"T1,C1,P1,2")
    assert len(first) == len(second)
    path.write_bytes(first)
    land = intake.lander.land

    def land_then_rewrite(*args, **kwargs):
        result = land(*args, **kwargs)
        with open(path, "r+b") as handle:  # same inode, same size, new content
            handle.write(second)
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        return result

    monkeypatch.setattr(intake.lander, "land", land_then_rewrite)
    (outcome,) = intake.run()
    assert outcome.status == "landed" and outcome.sha256 == hashlib.sha256(first).hexdigest()
    assert path.read_bytes() == second  # not removed: its new content has not landed
    monkeypatch.setattr(intake.lander, "land", land)
    (again,) = intake.run()
    assert again.status == "landed" and again.sha256 == hashlib.sha256(second).hexdigest()
    assert not path.exists()


def _upload_content() -> bytes:
    return f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\nT2,C1,P1,1,2024-03-01T11:00:00\n".encode()


# SALES_PLATFORM_UPLOAD_MAX_BYTES is the most an upload may have: exactly that many is taken.
def test_upload_max_bytes_takes_an_upload_of_exactly_the_limit(tmp_path: Path) -> None:
    content = _upload_content()
    received = receive(io.BytesIO(content), tmp_path, "x.csv", SchemaContract(),
                       max_bytes=len(content), declared_size=len(content))
    assert received.size_bytes == len(content)
    assert (tmp_path / "x.csv").read_bytes() == content


# One byte over the limit is refused, also when it arrives in the first block read (no declared
# length: a chunked body), and nothing is left in the drop zone.
def test_upload_max_bytes_refuses_one_byte_over_the_limit_without_a_declared_length(
        tmp_path: Path) -> None:
    content = _upload_content()
    with pytest.raises(UploadRefused) as refused:
        receive(io.BytesIO(content), tmp_path, "x.csv", SchemaContract(), max_bytes=len(content) - 1)
    assert refused.value.status == 413
    assert list(tmp_path.iterdir()) == []


# docs/configuration.md: SALES_PLATFORM_ENCRYPTION_KEY is a base64 master key of at least 16 bytes.
@pytest.mark.parametrize(("length", "accepted"), [(15, False), (16, True), (32, True)])
def test_encryption_key_of_at_least_16_bytes_is_accepted(length: int, accepted: bool) -> None:
    raw = bytes(range(1, length + 1))
    text = base64.b64encode(raw).decode("ascii")
    if accepted:
        assert parse_master_key(text) == raw
    else:
        with pytest.raises(CryptoError, match="at least 16 bytes"):
            parse_master_key(text)


# docs/configuration.md: SALES_PLATFORM_MAX_REJECT_RATE is a share between 0 and 1 (0.2 by
# default), so the preflight of check/run takes a fraction and refuses only what is outside.
@pytest.mark.parametrize(("raw", "accepted"), [("0", True), ("0.5", True), ("1", True), ("1.5", False)])
def test_max_reject_rate_preflight_takes_a_fraction_between_0_and_1(
        raw: str, accepted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, *_ in preflight.NUMBER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(settings.MAX_REJECT_RATE, raw)
    problems = [p.variable for p in preflight.check_numbers()]
    assert problems == ([] if accepted else [settings.MAX_REJECT_RATE])


# SALES_PLATFORM_START_DATE after today leaves no partition; today itself is the first partition.
@pytest.mark.parametrize(("start", "accepted"), [("2024-06-01", True), ("2024-06-02", False)])
def test_start_date_preflight_refuses_only_a_day_after_today(
        start: str, accepted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.START_DATE, start)
    problems = [p.variable for p in preflight.check_start_date(today=date(2024, 6, 1))]
    assert problems == ([] if accepted else [settings.START_DATE])


# Product ids are trimmed and upper-cased in the warehouse, so API items whose ids differ only in
# case or surrounding spaces are one product: the first is kept, the later ones left out by position.
def test_api_items_whose_ids_differ_only_in_case_are_one_product() -> None:
    def item(pid: str, name: str) -> dict:
        return {"product_id": pid, "name": name, "category": "Tools", "unit_price": 2.5,
                "updated_at": "2024-03-01T00:00:00Z"}

    frame, reasons = products_from_items([item("p1", "first"), item(" P1 ", "second"),
                                          item("P2", "other")])
    assert list(frame["product_id"]) == ["P1", "P2"]
    assert list(frame["name"]) == ["first", "other"]
    assert len(reasons) == 1 and reasons[0].startswith("item 1: ")


# A file whose every row is rejected at landing (no valid day) is a landed file with rejects,
# not a "header only" file: only a file without data rows is quarantined for that.
def test_a_file_whose_rows_all_fail_landing_lands_with_its_rejects(intake: Intake, data_dir: Path) -> None:
    (data_dir / "incoming" / "all_bad.csv").write_text(
        f"{HEADER}\nT1,C1,P1,1,not a date\nT2,C1,P1,1,\n")
    (outcome,) = intake.run()
    assert outcome.status == "landed"
    assert list((data_dir / "quarantine").iterdir()) == []
    assert _landing_rejects(intake) == [(1, "invalid_timestamp"), (2, "missing_timestamp")]


def _day_frame(day: date, ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": ids, "customer_id": ["C1"] * len(ids), "product_id": ["P1"] * len(ids),
        "quantity": [1] * len(ids),
        "sale_ts": pd.to_datetime([f"{day} 10:00:0{i}" for i in range(len(ids))]),
        "source_file": ["day.csv"] * len(ids), "source_sha256": ["a" * 64] * len(ids),
        "source_row": list(range(1, len(ids) + 1)),
    })


# A reload replaces the day: a row no longer in the day's input leaves sales, even a single one.
@pytest.mark.parametrize("kept", [["T1", "T2"], ["T1"], []], ids=["one_gone", "two_gone", "all_gone"])
def test_a_reload_deletes_every_row_that_vanished_from_the_day(tmp_path: Path, kept: list[str]) -> None:
    day = date(2024, 3, 5)
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    with engine.begin() as conn:  # the day's file is a live version
        conn.execute(insert(file_ledger).values(file_name="day.csv", sha256="a" * 64, size_bytes=1,
                                                status="loaded", received_at=datetime(2024, 3, 6)))
    loader = SalesLoader(engine)
    loader.load_day(day, lambda: iter([_day_frame(day, ["T1", "T2", "T3"])]), datetime(2024, 3, 6))
    loader.load_day(day, lambda: iter([_day_frame(day, kept)]), datetime(2024, 3, 7))
    with engine.connect() as conn:
        assert sorted(conn.execute(select(sales.c.transaction_id)).scalars()) == kept
    engine.dispose()


# A drop that does not land (the same file again) is appended to the ledger's events; a live
# entry (landed, blocked, loaded) keeps its state: here the version still waits for its load.
def test_a_duplicate_drop_never_overwrites_a_landed_ledger_entry(intake: Intake, data_dir: Path) -> None:
    content = f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\n"
    (data_dir / "incoming" / "a.csv").write_text(content)
    assert [o.status for o in intake.run()] == ["landed"]
    (data_dir / "incoming" / "a.csv").write_text(content)
    assert [o.status for o in intake.run()] == ["skipped_duplicate"]
    with intake.engine.connect() as conn:
        entries = conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all()
    assert [tuple(e) for e in entries] == [("a.csv", "landed")]


# The reject-rate check blocks the versions with rows on the blocked day. A version that only
# superseded rows there (its predecessor had rows on that day, it has none) is not blocked by it.
def test_a_blocked_day_blocks_only_versions_with_rows_on_that_day(intake: Intake, data_dir: Path) -> None:
    first = f"{HEADER}\nT1,C1,P1,1,2024-03-01T10:00:00\nT2,C1,P1,1,2024-03-02T10:00:00\n"
    (data_dir / "incoming" / "a.csv").write_text(first)
    (data_dir / "incoming" / "b.csv").write_text(f"{HEADER}\nT3,C1,P1,1,2024-03-01T11:00:00\n")
    intake.run()
    (data_dir / "incoming" / "a.csv").write_text(f"{HEADER}\nT2,C1,P1,1,2024-03-02T10:00:00\n")
    intake.run()  # a.csv's new version has rows on 2024-03-02 only
    blocked = mark_blocked(intake.engine, "2024-03-01", "2024-03-01 reject rate over the limit", NOW)
    assert blocked == ["b.csv"]
    with intake.engine.connect() as conn:
        live = conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)
                            .where(file_ledger.c.status != "superseded")).all()
    assert sorted(tuple(r) for r in live) == [("a.csv", "landed"), ("b.csv", "blocked")]


def _sale(conn, sha: str, day: str, tid: str) -> None:
    at = datetime.fromisoformat(f"{day}T10:00:00")
    conn.execute(insert(sales).values(
        transaction_id=tid, customer_id="tok", product_id="tok", quantity=1, sale_date=at.date(),
        sale_ts=at, loaded_at=at, source_row=1, source_file="v.csv", source_sha256=sha))


# A version is loaded when its own days are fully counted AND, on the days only the version it
# superseded had, none of the old version's rows is left in sales.
def test_a_new_version_is_loaded_only_once_the_old_versions_rows_left_its_other_days(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    old, new, now = "a" * 64, "b" * 64, datetime(2024, 6, 1)
    with engine.begin() as conn:
        # v.csv's first version had a row on 03-01 and 03-02; the new one only on 03-02
        conn.execute(insert(file_ledger).values(
            file_name="v.csv", sha256=old, size_bytes=1, status="superseded",
            days_touched='["2024-03-01", "2024-03-02"]', days_affected='["2024-03-01", "2024-03-02"]',
            received_at=now))
        conn.execute(insert(file_ledger).values(
            file_name="v.csv", sha256=new, size_bytes=1, status="landed", rows_read=1, rows_landed=1,
            rows_rejected=0, days_touched='["2024-03-02"]',
            days_affected='["2024-03-01", "2024-03-02"]', received_at=now))
        conn.execute(insert(file_day_counts).values(file_name="v.csv", sha256=new,
                                                    sale_date=date(2024, 3, 2), rows_landed=1))
        _sale(conn, new, "2024-03-02", "T2")  # 03-02 reloaded: the new version's row
        _sale(conn, old, "2024-03-01", "T1")  # 03-01 not reloaded yet: the old version's row

    def status() -> str:
        with engine.begin() as conn:
            refresh_versions(conn, "2024-03-02", now)
            return conn.execute(select(file_ledger.c.status)
                                .where(file_ledger.c.sha256 == new)).scalar_one()

    assert status() == "landed"
    with engine.begin() as conn:  # 03-01 reloaded: the old version's row is gone
        conn.execute(sales.delete().where(sales.c.transaction_id == "T1"))
    assert status() == "loaded"
    engine.dispose()


# versions_awaiting_load: the live versions not loaded yet (landed or blocked), which the load
# sensor names in its run tags; loaded and superseded versions are not waiting.
def test_versions_awaiting_load_are_the_landed_and_blocked_ones(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    statuses = {"landed.csv": "landed", "blocked.csv": "blocked", "loaded.csv": "loaded",
                "old.csv": "superseded"}
    with engine.begin() as conn:
        for name, status in statuses.items():
            conn.execute(insert(file_ledger).values(
                file_name=name, sha256="a" * 64, size_bytes=1, status=status,
                days_touched='["2024-03-01"]', days_affected='["2024-03-01"]',
                received_at=datetime(2024, 6, 1)))
    assert [v["file_name"] for v in versions_awaiting_load(engine)] == ["landed.csv", "blocked.csv"]
    engine.dispose()


@pytest.fixture
def report_engine(tmp_path: Path):
    """agg_sales_daily on 2024-01-10 and 2024-03-01..2024-03-20; categories for January and March."""
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    at = datetime(2024, 6, 1)
    days = [date(2024, 1, 10), *(date(2024, 3, d) for d in range(1, 21))]
    with engine.begin() as conn:
        conn.execute(insert(agg_sales_daily), [
            {"sale_date": d, "transactions": 1, "total_quantity": 1, "total_revenue": 10,
             "refreshed_at": at} for d in days])
        conn.execute(insert(agg_sales_by_category_monthly), [
            {"year": 2024, "month": m, "sales_category": "Low", "transactions": 1,
             "total_revenue": total, "mean_revenue": total, "bins": "100,500", "refreshed_at": at}
            for m, total in ((1, 11), (3, 33))])
    yield engine
    engine.dispose()


# SALES_PLATFORM_REPORT_DAYS: the report covers that many days, ending at the newest sale day.
@pytest.mark.parametrize(("days", "first"), [(1, date(2024, 3, 20)), (7, date(2024, 3, 14)),
                                             (20, date(2024, 3, 1))])
def test_report_window_is_report_days_long_ending_at_the_newest_day(report_engine, days: int,
                                                                    first: date) -> None:
    assert report_window(report_engine, days) == (first, date(2024, 3, 20))


# Revenue by category covers the window's months only, not every month of the window's years.
def test_report_revenue_by_category_holds_only_the_windows_months(report_engine) -> None:
    data = read_report_data(report_engine, date(2024, 3, 14), date(2024, 3, 20))
    assert data.by_category == {(2024, 3): {"Low": Decimal("33")}}


# A reload with a corrected quantity updates the row: quantity is part of a sale's content.
def test_a_reload_with_a_corrected_quantity_updates_the_sale(tmp_path: Path) -> None:
    day = date(2024, 3, 5)
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    with engine.begin() as conn:
        conn.execute(insert(file_ledger).values(file_name="day.csv", sha256="a" * 64, size_bytes=1,
                                                status="loaded", received_at=datetime(2024, 3, 6)))
    loader = SalesLoader(engine)
    first = _day_frame(day, ["T1", "T2"])
    loader.load_day(day, lambda: iter([first]), datetime(2024, 3, 6))
    corrected = first.assign(quantity=[1, 7])
    loader.load_day(day, lambda: iter([corrected]), datetime(2024, 3, 7))
    with engine.connect() as conn:
        assert sorted(conn.execute(select(sales.c.transaction_id, sales.c.quantity)).all()) == [
            ("T1", 1), ("T2", 7)]
    engine.dispose()


# docs: every copy of an id that is on two days is rejected as duplicate_across_days, the copies
# rejected within their own day (identical or conflicting) included.
def test_identical_copies_of_an_id_also_on_another_day_become_duplicate_across_days(
        data_dir: Path, key: str, tmp_path: Path) -> None:
    harness = Harness(data_dir, f"sqlite:///{tmp_path / 'wh.db'}", key,
                      platform={"max_reject_rate": 0.9})
    twice = ["T1", "C1", "P1", "1", "2024-06-15T09:00:00"]
    harness.drop("monday.csv", csv_bytes([twice, twice, ["T2", "C1", "P1", "1", "2024-06-15T10:00:00"]]))
    harness.drop("tuesday.csv", csv_bytes([["T1", "C9", "P1", "3", "2024-06-16T09:00:00"]]))
    harness.land()
    harness.run_day("2024-06-15")  # T1 loaded on monday, its identical copy collapsed
    harness.run_day("2024-06-16")  # T1 on tuesday: every copy of T1 is now a cross-day reject
    assert harness.reject_rows() == [
        ("monday.csv", 1, "duplicate_across_days", date(2024, 6, 15)),
        ("monday.csv", 2, "duplicate_across_days", date(2024, 6, 15)),
        ("tuesday.csv", 1, "duplicate_across_days", date(2024, 6, 16))]
    assert sorted(harness.sales_rows()) == ["T2"]


# docs: only live file versions count. A corrected file that no longer holds an id ends its
# cross-day conflict, even while the other day still holds the superseded version's reject.
def test_a_superseded_versions_reject_no_longer_makes_a_cross_day_conflict(
        data_dir: Path, key: str, tmp_path: Path) -> None:
    harness = Harness(data_dir, f"sqlite:///{tmp_path / 'wh.db'}", key,
                      platform={"max_reject_rate": 0.9})
    harness.drop("monday.csv", csv_bytes([["T1", "C1", "P1", "1", "2024-06-15T09:00:00"],
                                          ["T2", "C1", "P1", "1", "2024-06-15T10:00:00"]]))
    harness.drop("tuesday.csv", csv_bytes([["T1", "C9", "P1", "3", "2024-06-16T09:00:00"]]))
    harness.land()
    harness.run_day("2024-06-15")
    harness.run_day("2024-06-16")  # T1 on both days: both copies rejected
    assert sorted(harness.sales_rows()) == ["T2"]
    # monday.csv corrected: T1 was never a Monday sale. Only Tuesday runs again; Monday keeps the
    # superseded version's reject of T1 until it is re-run.
    harness.drop("monday.csv", csv_bytes([["T2", "C1", "P1", "1", "2024-06-15T10:00:00"]]))
    harness.land()
    harness.run_day("2024-06-16")
    assert sorted(harness.sales_rows()) == ["T1", "T2"]  # Tuesday's T1, its only live copy
