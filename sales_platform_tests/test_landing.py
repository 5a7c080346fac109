"""Landing and intake on real files: bad files are quarantined with a clear reason, nothing lost."""

import os
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sales_platform.core.intake import Intake
from sales_platform.core.landing import FileRejected, read_header
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.ledger import landed_rows
from sales_platform.core.warehouse.tables import file_ledger, sales_rejects
from sales_platform_tests.helpers import write_csv

NOW = datetime(2024, 6, 1)


@pytest.fixture
def intake(data_dir, keyring, tmp_path):
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    return Intake(areas, engine, keyring, SchemaContract(), QualityRules(start_date=date(2024, 1, 1)),
                  code_version="test", now=NOW, settle_s=0)


def landed_rows_for_day(intake: Intake, day: str) -> int:
    with intake.engine.connect() as conn:
        return sum(landed_rows(conn, day).values())


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "file is empty"),
        (b"   \n\n", "file is empty"),
        (b"transaction_id,customer_id,product_id,quantity,timestamp\n", "header only, no data rows"),
        (b"transaction_id;customer_id;product_id;quantity;timestamp\nT1;C1;P1;1;2024-03-01T10:00:00\n",
         "wrong delimiter"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
        (b"\xff\xfe\xfa garbage \xc3\x28\n", "not UTF-8"),
        (b"transaction_id,customer_id,quantity,timestamp\nT1,C1,1,2024-03-01T10:00:00\n",
         "missing required column(s) product_id"),
    ],
)
def test_bad_files_are_quarantined_with_a_reason(intake, data_dir, content, problem):
    bad = data_dir / "incoming" / "bad.csv"
    bad.write_bytes(content)
    good = write_csv(data_dir / "incoming" / "good.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]])
    outcomes = {o.file_name: o for o in intake.run()}
    assert outcomes["bad.csv"].status == "quarantined"
    assert "bad.csv" in outcomes["bad.csv"].error and problem in outcomes["bad.csv"].error
    assert outcomes["good.csv"].status == "landed" and outcomes["good.csv"].rows_landed == 1
    kept = list((data_dir / "quarantine").glob("bad*.csv"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert problem in kept[0].with_name(kept[0].name + ".reason.txt").read_text()
    assert not bad.exists() and not good.exists()
    with intake.engine.connect() as conn:
        statuses = dict(conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all())
    assert statuses == {"bad.csv": "quarantined", "good.csv": "landed"}


def test_multi_day_file_rows_split_by_day_and_undated_rows_rejected(intake, data_dir):
    write_csv(data_dir / "incoming" / "multi.csv", [
        ["T1", "C1", "P1", "1", "2024-03-01T10:00:00"],
        ["T2", "C1", "P1", "1", "2024-03-02T10:00:00"],
        ["T3", "C1", "P1", "1", "2024-03-02T23:59:59"],
        ["T4", "C1", "P1", "1", "not a date"],
        ["T5", "C1", "P1", "1", "2031-01-01T00:00:00"],
        ["T6", "C1", "P1", "1,2024-03-02T10:00:00,extra"],
    ])
    (outcome,) = intake.run()
    assert outcome.rows_by_day == {"2024-03-01": 1, "2024-03-02": 2}
    assert outcome.rows_read == 6 and outcome.rows_rejected == 3
    assert landed_rows_for_day(intake, "2024-03-02") == 2
    with intake.engine.connect() as conn:
        reasons = sorted(conn.execute(select(sales_rejects.c.reason)).scalars())
    assert reasons == ["future_timestamp", "invalid_timestamp", "malformed_row"]


def test_same_content_under_new_name_is_skipped_and_archived(intake, data_dir):
    rows = [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]]
    write_csv(data_dir / "incoming" / "a.csv", rows)
    intake.run()
    write_csv(data_dir / "incoming" / "b.csv", rows)
    (outcome,) = intake.run()
    assert outcome.status == "skipped_duplicate" and "a.csv" in outcome.error
    assert landed_rows_for_day(intake, "2024-03-01") == 1
    assert len(list((data_dir / "archive").glob("*.csv.sealed"))) == 1  # same content, one copy


def test_new_version_of_a_file_replaces_the_old_one(intake, data_dir):
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"],
                                                ["T2", "C1", "P1", "1", "2024-03-02T10:00:00"]])
    intake.run()
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "5", "2024-03-01T10:00:00"]])
    intake.run()
    assert landed_rows_for_day(intake, "2024-03-01") == 1
    assert landed_rows_for_day(intake, "2024-03-02") == 0
    assert intake.areas.fragments("landed", "2024-03-02") == []
    with intake.engine.connect() as conn:
        statuses = sorted(conn.execute(select(file_ledger.c.status)).scalars())
    assert statuses == ["landed", "superseded"]


def test_an_unchanged_replay_is_a_new_drop_for_the_sensor(intake, data_dir):
    """Replaying a file unchanged must not strand it: the sensor keys a drop on content, name and
    mtime, and the landing run of the first drop already completed under the old key."""
    from sales_platform.core.dropzone import scan
    from sales_platform.core.intake import replay_quarantined

    incoming = data_dir / "incoming"
    (incoming / "semi.csv").write_bytes(b"transaction_id;customer_id\nT1;C1\n")
    os.utime(incoming / "semi.csv", ns=(1_700_000_000_000_000_000,) * 2)  # dropped a while ago
    (before,), _, _ = scan(incoming, {}, settle_s=0)
    assert [o.status for o in intake.run()] == ["quarantined"]
    (kept,) = [p for p in (data_dir / "quarantine").iterdir() if not p.name.endswith(".reason.txt")]
    replay_quarantined(intake.areas, Path(kept.name))
    (after,), _, _ = scan(incoming, {}, settle_s=0)
    assert after.sha256 == before.sha256 and after.run_key != before.run_key
    assert [o.status for o in intake.run()] == ["quarantined"]  # still broken: said again, not lost


def test_files_being_written_are_not_picked(intake, data_dir):
    write_csv(data_dir / "incoming" / "late.csv.tmp", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]])
    assert intake.run() == []
    assert (data_dir / "incoming" / "late.csv.tmp").exists()


def test_read_header_handles_bom_and_quotes(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes('\ufeff"transaction_id","customer id",qty\n'.encode())
    assert read_header(path, path.name) == ["transaction_id", "customer id", "qty"]
    path.write_bytes(b"")
    with pytest.raises(FileRejected, match="x.csv: file is empty"):
        read_header(path, path.name)


@pytest.mark.parametrize("name", ["sales 2024-03-01.csv", "ventes_été.CSV", "weird;name (1).csv"])
def test_a_fixed_quarantined_file_replays_under_its_original_name(intake, data_dir, name):
    from sales_platform.core.intake import ReplayError, replay_quarantined

    incoming = data_dir / "incoming"
    (incoming / name).write_bytes(b"transaction_id;customer_id;product_id;quantity;timestamp\n"
                                  b"T1;C1;P1;1;2024-03-01T10:00:00\n")
    assert [o.status for o in intake.run()] == ["quarantined"]
    kept = [p for p in (data_dir / "quarantine").iterdir() if not p.name.endswith(".reason.txt")]
    assert len(kept) == 1 and "__" in kept[0].name and " " not in kept[0].name
    kept[0].write_text("transaction_id,customer_id,product_id,quantity,timestamp\n"
                       "T1,C1,P1,1,2024-03-01T10:00:00\n")  # the operator's fix
    (incoming / name).write_text("a newer drop under the same name")
    with pytest.raises(ReplayError, match="already exists"):
        replay_quarantined(intake.areas, Path(kept[0].name))
    (incoming / name).unlink()
    assert replay_quarantined(intake.areas, Path(kept[0].name)) == incoming / name
    assert list((data_dir / "quarantine").iterdir()) == []  # the reason file went with it
    outcomes = intake.run()
    assert [(o.file_name, o.status, o.rows_landed) for o in outcomes] == [(name, "landed", 1)]
    with pytest.raises(ReplayError, match="not a regular quarantined file"):
        replay_quarantined(intake.areas, Path("nothing-here.csv"))


def test_drops_land_in_batches_with_each_file_judged_at_its_place(data_dir, key, backend,
                                                                  monkeypatch):
    """Batches of 3 (one ledger commit each): a new version of a.csv lands before b.csv, whose
    content was a.csv's, so b.csv is no duplicate; c.csv repeats content landed earlier in its
    batch (a duplicate); d.csv is unreadable; the rest are one-row files over several batches.
    sales and sales_rejects hold what the oracle says, on SQLite and PostgreSQL."""
    from sales_platform.core import settings
    from sales_platform_tests.integrity import Harness, assert_matches_oracle
    from sales_platform_tests.oracle import csv_bytes

    monkeypatch.setenv(settings.LANDING_BATCH_FILES, "3")
    harness = Harness(data_dir, backend.url, key, platform={"settle_s": 0})
    first = csv_bytes([["T1", "C1", "P1", "1", "2024-03-01T10:00:00"],
                       ["T2", "C1", "P1", "2", "2024-03-02T10:00:00"]])
    newer = csv_bytes([["T3", "C2", "P1", "1", "2024-03-01T11:00:00"],
                       ["T4", "C9", "P1", "5", "2024-03-01T10:00:00"]])
    harness.drop("a.csv", first)
    harness.land()
    harness.drop("a.csv", newer)
    harness.drop("b.csv", first)
    harness.drop("c.csv", newer)
    harness.drop("d.csv", b"\x00\x01 not a csv")
    for i in range(7):
        harness.drop(f"e{i}.csv", csv_bytes([[f"E{i}", "C1", "P1", str(i), "2024-03-02T09:00:00"]]))
    assert harness.land().success
    statuses = {name: row["status"] for (name, _), row in harness.ledger().items()
                if row["status"] != "superseded"}
    assert statuses == {"a.csv": "landed", "b.csv": "landed", "c.csv": "skipped_duplicate",
                        "d.csv": "quarantined", **{f"e{i}.csv": "landed" for i in range(7)}}
    harness.load_requested()
    assert_matches_oracle(harness)


def test_a_batch_routes_files_of_every_shape_together_as_each_alone(data_dir, key, backend,
                                                                     monkeypatch):
    """One landing batch of files that take different paths: landing rejects beside good rows,
    rows on three days (the last of a year included), a malformed record (the exact reader),
    another column order, and a file whose every row is rejected at landing. Their rows are
    routed as one frame: sales, sales_rejects and each version's ledger counts are what the
    oracle computes file by file."""
    from sales_platform.core import settings
    from sales_platform_tests.integrity import Harness, assert_matches_oracle
    from sales_platform_tests.oracle import csv_bytes

    monkeypatch.setenv(settings.LANDING_BATCH_FILES, "50")
    harness = Harness(data_dir, backend.url, key, platform={"settle_s": 0})
    files = {
        "days.csv": csv_bytes([["D1", "C1", "P1", "1", "2024-12-31T23:59:59"],
                               ["D2", "C2", "P1", "2", "2025-01-01T00:00:00"],
                               ["D3", "C3", "P1", "3", "2024-03-01T10:00:00"]]),
        "mixed.csv": csv_bytes([["M1", "C1", "P1", "1", "2024-03-01T10:00:00"],
                                ["M2", "C1", "P1", "1", "03/01/2024 10:00"],
                                ["M3", "C1", "P1", "1", ""],
                                ["M4", "C1", "P1", "4", "2024-03-01T11:00:00"]]),
        "malformed.csv": b"transaction_id,customer_id,product_id,quantity,timestamp\n"
                         b"X1,C1,P1,1,2024-03-01T09:00:00\nX2,C1,P1,1,2024-03-01T09:00:00,extra\n"
                         b"X3,C1,P1,2,2024-03-01T09:30:00\n",
        "reordered.csv": csv_bytes([["2024-03-01T12:00:00", "5", "P1", "C7", "R1"]],
                                   header=["timestamp", "quantity", "product_id", "customer_id",
                                           "transaction_id"]),
        "undated.csv": csv_bytes([["U1", "C1", "P1", "1", "yesterday"]]),
    }
    for i in range(3):  # one-row files around them, as a drop of many small files has
        files[f"small{i}.csv"] = csv_bytes([[f"S{i}", "C1", "P1", "1", "2024-03-01T08:00:00"]])
    for name, content in files.items():
        harness.drop(name, content)
    assert harness.land().success
    ledger = {name: row for (name, _), row in harness.ledger().items()}
    counts = {name: (row["rows_read"], row["rows_landed"], row["rows_rejected"])
              for name, row in ledger.items()}
    assert counts == {"days.csv": (3, 3, 0), "mixed.csv": (4, 2, 2), "malformed.csv": (3, 2, 1),
                      "reordered.csv": (1, 1, 0), "undated.csv": (1, 0, 1),
                      **{f"small{i}.csv": (1, 1, 0) for i in range(3)}}
    harness.load_requested()
    assert_matches_oracle(harness)
