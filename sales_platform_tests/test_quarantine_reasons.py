"""Quarantine reasons never quote data cells: counts, positions and known column names only.

A file without a header row, or with another delimiter, has a data row (customer and product ids)
where the header should be; its reason goes to file_ledger.error, the .reason.txt, the Dagster
event log and compute logs, which have wider audiences than the data.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from sales_platform.core.schema import SchemaContract
from sales_platform.core.warehouse.tables import file_events, file_ledger
from sales_platform_tests.test_landing import intake  # noqa: F401  (fixture)

CUSTOMER = f"ZqxCust{uuid.uuid4().hex[:8]}"
PRODUCT = f"ZqxProd{uuid.uuid4().hex[:8]}"
ROW = f"T-1,{CUSTOMER},{PRODUCT},2,2024-03-01T10:00:00"


@pytest.mark.parametrize(("content", "expected"), [
    # no header row: the first data row is read as the header
    (f"{ROW}\nT-2,C2,P2,1,2024-03-01T11:00:00\n",
     ["header has 5 column(s)", "missing required column(s) transaction_id, customer_id, "
      "product_id, quantity, timestamp", "recognised: none",
      "5 unrecognised name(s) at column(s) 1, 2, 3, 4, 5"]),
    # semicolons, with and without a header
    (f"{ROW.replace(',', ';')}\n", ["wrong delimiter: the first line has no commas but 4 semicolon(s)"]),
    ("transaction_id\tcustomer_id\tproduct_id\tquantity\ttimestamp\n" + ROW.replace(",", "\t") + "\n",
     ["wrong delimiter: the first line has no commas but 4 tab(s)"]),
    # a real header missing a column, plus one unknown column: known names shown, the other counted
    (f"transaction_id,customer_id,{PRODUCT},quantity,timestamp\n{ROW}\n",
     ["missing required column(s) product_id",
      "recognised: transaction_id, customer_id, quantity, timestamp",
      "1 unrecognised name(s) at column(s) 3"]),
], ids=["headerless", "semicolons", "tabs", "unknown-header-cell"])
def test_reason_reports_counts_not_cells(intake, data_dir, content, expected):  # noqa: F811
    (data_dir / "incoming" / "bad.csv").write_text(content)
    outcome = next(o for o in intake.run() if o.file_name == "bad.csv")
    assert outcome.status == "quarantined"
    reason_file = next((data_dir / "quarantine").glob("*.reason.txt")).read_text()
    with intake.engine.connect() as conn:
        stored = [*conn.execute(select(file_ledger.c.error)).scalars(),
                  *conn.execute(select(file_events.c.detail)).scalars()]
    for text in (outcome.error, reason_file, *filter(None, stored)):
        assert CUSTOMER not in text and PRODUCT not in text, text
    for part in expected:
        assert part in outcome.error and part in reason_file


def test_freeze_policy_counts_columns_outside_the_contract(intake, data_dir):  # noqa: F811
    intake.lander.contract = SchemaContract(policy="freeze")
    header = f"transaction_id,customer_id,product_id,quantity,timestamp,{CUSTOMER}"
    (data_dir / "incoming" / "bad.csv").write_text(f"{header}\n{ROW},x\n")
    outcome = next(o for o in intake.run() if o.file_name == "bad.csv")
    assert outcome.status == "quarantined" and CUSTOMER not in outcome.error
    assert "1 column(s) outside the contract" in outcome.error
    assert "1 unrecognised name(s) at column(s) 6" in outcome.error


def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_other_files_still_land(intake, data_dir):  # noqa: F811
    """A name with a byte that is not UTF-8 cannot go into the ledger, Parquet or Dagster as text:
    the file is quarantined under a printable name (the byte as \\xff) with the reason, and it
    does not stop the files after it."""
    import os

    incoming = os.fsencode(str(data_dir / "incoming"))
    for raw in (b"a-sales\xff.csv", b"b-good.csv"):
        with open(os.path.join(incoming, raw), "wb") as handle:
            handle.write(f"transaction_id,customer_id,product_id,quantity,timestamp\n{ROW}\n".encode())
    outcomes = {o.file_name: o for o in intake.run()}
    assert outcomes["b-good.csv"].status == "landed"
    bad = outcomes["a-sales\\xff.csv"]
    assert bad.status == "quarantined" and "not valid UTF-8" in bad.error
    assert os.listdir(incoming) == []
    reason_file = next((data_dir / "quarantine").glob("*.reason.txt")).read_text()
    assert "file: a-sales\\xff.csv" in reason_file and "not valid UTF-8" in reason_file
    with intake.engine.connect() as conn:
        stored = conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all()
    assert sorted(stored) == [("a-sales\\xff.csv", "quarantined"), ("b-good.csv", "landed")]
    # the drop sensor's run config names it as printable text: the same file is found by it
    with open(os.path.join(incoming, b"c\xfe.csv"), "wb") as handle:
        handle.write(b"transaction_id\n")
    assert [o.file_name for o in intake.run(only={"c\\xfe.csv"})] == ["c\\xfe.csv"]
