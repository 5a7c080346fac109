"""Text columns backed by Arrow (core/frames.py) change the speed of the rules, never a verdict."""

from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pytest

from sales_platform.core import quality as q
from sales_platform.core.frames import ARROW_TEXT, arrow_frame, constant_text, frame_table, text_series
from sales_platform_tests.test_quality import _cyclic_pandas_garbage

RULES = q.QualityRules(max_quantity=100, start_date=date(2024, 1, 1), source_timezone="Europe/Paris")
NOW = datetime(2024, 6, 1, 12, 0, 0)

# (transaction_id, customer_id, product_id, quantity, timestamp) -> expected reason, or the
# normalized (customer_id, quantity, UTC sale time) of a row that passes; written by hand
CASES = [
    (("t1", " straße ", "P1", "2", "2024-03-01T10:00:00"), ("STRASSE", 2, "2024-03-01 09:00:00")),
    (("t2", "ﬁle", "p1", " 3 ", "2024-03-01 10:00:00+02"), ("FILE", 3, "2024-03-01 08:00:00")),
    (("t3", "c3", "P1", "1", " 2024-03-31T02:30:00 "), q.INVALID_TIMESTAMP),  # no such time in Paris
    (("t4", "c4", "P1", "1", "2024-07-01T00:00:00Z"), q.FUTURE_TIMESTAMP),
    (("t5", "c5", "P1", "1", "3000-01-01T00:00:00"), q.FUTURE_TIMESTAMP),
    (("t6", "c6", "P1", "1", "1500-01-01T00:00:00z"), q.BEFORE_START_DATE),
    (("t7", "c7", "P1", "1", "   "), q.MISSING_TIMESTAMP),
    (("t8", "c8", "P1", "1", "2024-03-01"), q.INVALID_TIMESTAMP),
    (("  ", "c9", "P1", "1", "2024-03-01T10:00:00Z"), q.MISSING_TRANSACTION_ID),
    (("t10", "", "P1", "1", "2024-03-01T10:00:00Z"), q.MISSING_CUSTOMER_ID),
    (("t11", "c11", "P9", "1", "2024-03-01T10:00:00Z"), q.UNKNOWN_PRODUCT),
    (("t12", "c\x0012", "P1", "1", "2024-03-01T10:00:00Z"), q.INVALID_IDENTIFIER),
    (("t13", "c13", "P1", "2.5", "2024-03-01T10:00:00Z"), q.QUANTITY_NOT_INTEGER),
    (("t14", "c14", "P1", "1e1", "2024-03-01T10:00:00.9Z"), ("C14", 10, "2024-03-01 10:00:00")),
]
COLUMNS = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]


def raw_frame(arrow_backed: bool) -> pd.DataFrame:
    columns = {name: [case[0][i] for case in CASES] for i, name in enumerate(COLUMNS)}
    frame = pd.DataFrame({k: text_series(v) if arrow_backed else pd.Series(v, dtype=object)
                          for k, v in columns.items()})
    frame.insert(0, "source_row", range(1, len(frame) + 1))
    return frame


@pytest.mark.parametrize("arrow_backed", [False, True], ids=["object", "arrow"])
def test_the_rules_give_the_hand_written_verdicts_for_either_kind_of_text_column(arrow_backed):
    frame = raw_frame(arrow_backed)
    sale_ts, reasons = q.route_timestamps(frame["timestamp"], RULES, NOW)
    frame["sale_ts"] = sale_ts
    frame["source_file"] = constant_text("f.csv", frame.index) if arrow_backed else "f.csv"
    routed = frame[reasons.isna().to_numpy()]
    cleaned = q.clean_rows(routed, RULES, frozenset({"P1"}))
    got = {row: reason for row, reason in zip(frame["source_row"], reasons, strict=True) if reason}
    got.update(zip(cleaned.rejects["source_row"], cleaned.rejects["reason"], strict=True))
    for row in cleaned.rows.itertuples():
        got[row.source_row] = (row.customer_id, row.quantity, str(row.sale_ts))
    assert got == {i + 1: expected for i, (_, expected) in enumerate(CASES)}
    assert all(isinstance(v, str) for v in cleaned.rows["customer_id"])


def test_a_table_from_an_arrow_backed_frame_reads_back_as_plain_pandas():
    frame = arrow_frame(pa.table({"a": ["x", None, "ß"], "n": [1, 2, 3]}))
    assert frame["a"].dtype == ARROW_TEXT
    table = frame_table(frame)
    assert b"pandas" not in (table.schema.metadata or {})
    back = table.to_pandas()
    assert back["a"].dtype == object and back["a"].tolist() == ["x", None, "ß"]
    assert back["n"].tolist() == [1, 2, 3]


def test_the_rules_on_arrow_backed_columns_leave_no_reference_cycle():
    frame = raw_frame(arrow_backed=True)
    frame["sale_ts"] = q.parse_timestamps(frame["timestamp"])
    frame["source_file"] = constant_text("f.csv", frame.index)
    assert _cyclic_pandas_garbage(lambda: q.clean_rows(frame.copy(), RULES, frozenset({"P1"}))) == []
    assert _cyclic_pandas_garbage(
        lambda: q.route_timestamps(frame.copy()["timestamp"], RULES, NOW)) == []
