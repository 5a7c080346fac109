"""Each blocking check is made to fail on purpose: a check that cannot fail proves nothing."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import insert, update

from sales_platform.core.warehouse import loading
from sales_platform.core.warehouse.checks import duplicate_transaction_ids
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects
from sales_platform_tests.helpers import check_results
from sales_platform_tests.integrity import Harness
from sales_platform_tests.oracle import csv_bytes

DAY = "2024-06-15"
ROWS = [[f"T{i}", "C1", "P1", "1", f"{DAY}T10:00:00"] for i in range(10)]


@pytest.fixture
def loaded(data_dir, backend, key):
    h = Harness(data_dir, backend.url, key)
    h.drop("day.csv", csv_bytes(ROWS))
    h.land()
    result = h.run_day(DAY)
    assert check_results(result)["transaction_id_unique"] is True
    assert check_results(result)["rows_conserved"] is True
    return h


def test_transaction_id_unique_fails_when_a_loaded_id_also_has_a_conflicting_copy(loaded):
    assert duplicate_transaction_ids(loaded.engine, [DAY]) == []
    other = "0" * 64
    with loaded.engine.begin() as conn:  # a conflicting copy on another day, rejected: T3 must not load
        conn.execute(insert(file_ledger).values(file_name="other.csv", sha256=other, size_bytes=1,
                                                status="superseded", received_at=datetime(2024, 6, 16)))
        conn.execute(insert(sales_rejects).values(
            stage="conflict", sale_date=date(2024, 6, 16), source_file="other.csv", source_sha256=other,
            source_row=1, reason="duplicate_across_days", transaction_id="T3",
            rejected_at=datetime(2024, 6, 16)))
    # a superseded version's copy is no copy (its day keeps the reject until it is re-run)
    assert duplicate_transaction_ids(loaded.engine, [DAY]) == []
    with loaded.engine.begin() as conn:  # the same copy in a live version
        conn.execute(update(file_ledger).where(file_ledger.c.sha256 == other).values(status="loaded"))
    assert duplicate_transaction_ids(loaded.engine, [DAY]) == [(DAY, "T3")]


def test_transaction_id_unique_fails_on_a_case_variant(loaded):
    with loaded.engine.begin() as conn:  # written around the platform: not normalized
        conn.execute(update(sales).where(sales.c.transaction_id == "T4").values(transaction_id="t4"))
    assert duplicate_transaction_ids(loaded.engine, [DAY]) == [(DAY, "t4")]


def test_rows_conserved_fails_when_the_load_loses_a_row(loaded, monkeypatch):
    real = loading.SalesLoader._batches

    def lossy(batches):  # a loader bug: each batch's last row never reaches the table
        return real(b.slice(0, len(b) - 1) if hasattr(b, "slice") else b.iloc[:-1] for b in batches)

    monkeypatch.setattr(loading.SalesLoader, "_batches", staticmethod(lossy))
    loaded.drop("more.csv", csv_bytes([[f"M{i}", "C2", "P1", "2", f"{DAY}T11:00:00"] for i in range(5)]))
    loaded.land()
    result = loaded.run_day(DAY, raise_on_error=False)
    assert check_results(result)["rows_conserved"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "rows_conserved")
    violations = evaluation.metadata["violations"].value
    assert (evaluation.partition, evaluation.passed) == (DAY, False)
    # the lost row is the last of a load batch: whichever version it came from is named, with the
    # numbers of that version (day.csv landed 10 rows on the day, more.csv 5)
    landed = {f"{name} ({sha[:12]})": n for (name, sha), n in (
        (key, 10 if key[0] == "day.csv" else 5) for key in loaded.ledger())}
    assert violations and all(v == {"landed": landed[k], "accounted": landed[k] - 1}
                              for k, v in violations.items()), violations


def test_a_row_that_no_file_version_holds_is_removed_by_the_next_load(loaded):
    with loaded.engine.begin() as conn:  # a row that no landed version accounts for
        conn.execute(insert(sales).values(
            transaction_id="STRAY", customer_id="x", product_id="y", quantity=1, sale_date=date(2024, 6, 15),
            sale_ts=datetime(2024, 6, 15, 12), source_file="ghost.csv", source_sha256="0" * 64,
            loaded_at=datetime(2024, 6, 15)))
    result = loaded.run_day(DAY, ["sales"], raise_on_error=False)
    # the load removes rows no version has; the check then holds again
    assert check_results(result)["rows_conserved"] is True
    assert "STRAY" not in loaded.sales_rows()
