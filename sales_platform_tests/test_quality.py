import gc
from datetime import date, datetime

import pandas as pd
import pytest

from sales_platform.core import quality as q
from sales_platform.core.dedupe import DuplicateScan
from sales_platform.core.schema import SchemaContract, SchemaError

RULES = q.QualityRules(max_quantity=100, start_date=date(2024, 1, 1))
NOW = datetime(2024, 6, 1, 12, 0, 0)


def chunk(**overrides) -> pd.DataFrame:
    row = {"transaction_id": "T1", "customer_id": "C1", "product_id": "P1", "quantity": "2",
           "timestamp": "2024-03-01T10:00:00"}
    row.update(overrides)
    frame = pd.DataFrame([row])
    frame["sale_ts"] = q.parse_timestamps(frame["timestamp"])
    frame["source_file"] = "f.csv"
    frame["source_row"] = 1
    return frame


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"transaction_id": "  "}, q.MISSING_TRANSACTION_ID),
        ({"customer_id": ""}, q.MISSING_CUSTOMER_ID),
        ({"product_id": " "}, q.MISSING_PRODUCT_ID),
        ({"customer_id": "C" * 65}, q.INVALID_IDENTIFIER),
        ({"customer_id": "C\x001"}, q.INVALID_IDENTIFIER),
        ({"quantity": ""}, q.MISSING_QUANTITY),
        ({"quantity": "three"}, q.QUANTITY_NOT_NUMERIC),
        ({"quantity": "3 units"}, q.QUANTITY_NOT_NUMERIC),
        ({"quantity": "inf"}, q.QUANTITY_NOT_NUMERIC),
        ({"quantity": "2.5"}, q.QUANTITY_NOT_INTEGER),
        ({"quantity": "0"}, q.QUANTITY_NOT_POSITIVE),
        ({"quantity": "-3"}, q.QUANTITY_NOT_POSITIVE),
        ({"quantity": "101"}, q.QUANTITY_OUTLIER),
        ({"product_id": "P404"}, q.UNKNOWN_PRODUCT),
    ],
)
def test_each_row_rule_rejects_with_its_reason(overrides, reason):
    result = q.clean_rows(chunk(**overrides), RULES, frozenset({"P1"}))
    assert result.rows.empty
    assert result.rejects["reason"].tolist() == [reason]


def test_lossless_values_are_coerced_and_identifiers_normalized():
    result = q.clean_rows(chunk(quantity=" 2.0 ", customer_id="  c1 ", product_id="p1 "), RULES,
                          frozenset({"P1"}))
    assert result.rejects.empty
    row = result.rows.iloc[0]
    assert (row["customer_id"], row["product_id"], row["quantity"]) == ("C1", "P1", 2)


def test_unknown_product_rule_is_skipped_without_a_catalogue():
    assert q.clean_rows(chunk(product_id="P404"), RULES, None).rejects.empty


@pytest.mark.parametrize(
    ("raw", "reason", "utc"),
    [("", q.MISSING_TIMESTAMP, None), ("yesterday", q.INVALID_TIMESTAMP, None),
     ("2024-13-45T10:00:00", q.INVALID_TIMESTAMP, None),
     ("2030-01-01T00:00:00", q.FUTURE_TIMESTAMP, None),
     ("2023-12-31T23:59:59", q.BEFORE_START_DATE, None),
     ("2024-03-01T10:00:00", None, datetime(2024, 3, 1, 10, 0, 0)),
     ("2024-03-01 10:00:00", None, datetime(2024, 3, 1, 10, 0, 0)),
     ("2024-03-01T10:00:00+02:00", None, datetime(2024, 3, 1, 8, 0, 0)),
     # an offset that moves the sale to the previous UTC day (2024 is a leap year)
     ("2024-03-01T01:30:00+02:00", None, datetime(2024, 2, 29, 23, 30, 0))],
)
def test_timestamp_routing(raw, reason, utc):
    parsed, reasons = q.route_timestamps(pd.Series([raw]), RULES, NOW)
    assert reasons[0] == reason
    if utc is not None:  # accepted: stored as naive UTC, and its day is the UTC date
        assert parsed[0].tzinfo is None and parsed[0].to_pydatetime() == utc
        assert parsed[0].date() == utc.date()


def test_reject_rate_excludes_collapsed_duplicates():
    assert q.reject_rate(10, {"duplicate_identical": 5, "quantity_outlier": 1}) == 0.1


def test_duplicates_identical_collapse_conflicting_all_rejected():
    rows = pd.concat([
        q.clean_rows(chunk(transaction_id=t, quantity=n), RULES, None).rows
        for t, n in [("A", "1"), ("A", "1"), ("B", "1"), ("B", "2"), ("C", "1"), ("A", "1")]
    ], ignore_index=True)
    scan = DuplicateScan()
    scan.add(rows.iloc[:3])
    scan.add(rows.iloc[3:])
    verdict = scan.verdict()
    reasons = pd.concat([verdict.classify(rows.iloc[:3], 0), verdict.classify(rows.iloc[3:], 3)])
    assert reasons.tolist() == [None, "duplicate_identical", "duplicate_conflicting",
                                "duplicate_conflicting", None, "duplicate_identical"]


def test_schema_contract_maps_variants_and_names_missing_columns():
    contract = SchemaContract()
    mapping = contract.map_header(["TransactionID", "customer id", " Product_ID ", "qty",
                                   "sale_timestamp", "store"], "f.csv")
    assert mapping == {"TransactionID": "transaction_id", "customer id": "customer_id",
                       " Product_ID ": "product_id", "qty": "quantity",
                       "sale_timestamp": "timestamp", "store": "store"}
    with pytest.raises(SchemaError, match="f.csv: missing required column.*quantity"):
        contract.map_header(["transaction_id", "customer_id", "product_id", "timestamp"], "f.csv")
    with pytest.raises(SchemaError, match="both map to 'quantity'"):
        contract.map_header(["qty", "units", "transaction_id", "customer_id", "product_id",
                             "timestamp"], "f.csv")
    # an alias beside the column's own name is the file's own column, with a note
    mapping, notes = contract.resolve_header(["qty", "quantity", "transaction_id", "customer_id",
                                              "product_id", "timestamp"], "f.csv")
    assert (mapping["quantity"], mapping["qty"]) == ("quantity", "qty")
    assert notes == ["column 'qty' is an alias of quantity, but the header also has quantity "
                     "itself: quantity is read from that one and 'qty' is kept as its own column 'qty'"]


def test_whitespace_only_values_count_as_missing():
    assert q.clean_rows(chunk(quantity="   "), RULES, None).rejects["reason"].tolist() == [q.MISSING_QUANTITY]
    assert q.route_timestamps(pd.Series(["  "]), RULES, NOW)[1][0] == q.MISSING_TIMESTAMP


@pytest.mark.parametrize("arrow_backed", [False, True], ids=["object", "arrow"])
@pytest.mark.parametrize("seed", range(6))
def test_duplicate_verdict_matches_a_plain_python_grouping(seed, arrow_backed):
    """Random chunks with repeated ids (agreeing and disagreeing copies, across chunks): every
    row's verdict is what grouping the rows by transaction id in plain Python gives."""
    import random

    rng = random.Random(seed)
    ids = [f"T{rng.randrange(300)}" for _ in range(900)]
    rows = pd.DataFrame({
        "transaction_id": ids, "customer_id": [f"C{hash(t) % 7}" for t in ids],
        "product_id": "P1", "quantity": [1 if rng.random() < 0.9 else 2 for _ in ids],
        "sale_ts": pd.Timestamp("2024-03-01 10:00:00")})
    if arrow_backed:  # as the cleaning hands them over (core/frames.py)
        from sales_platform.core.frames import text_series

        for column in ("transaction_id", "customer_id", "product_id"):
            rows[column] = text_series(rows[column].tolist())
    copies: dict[str, list[int]] = {}
    for ordinal, t in enumerate(ids):
        copies.setdefault(t, []).append(ordinal)
    expected = [None] * len(ids)
    for ordinals in copies.values():
        contents = {tuple(rows.iloc[i][["customer_id", "product_id", "quantity"]]) for i in ordinals}
        for n, i in enumerate(ordinals):
            if len(contents) > 1:
                expected[i] = "duplicate_conflicting"
            elif n > 0:
                expected[i] = "duplicate_identical"
    scan, bounds, start = DuplicateScan(), [], 0
    while start < len(rows):
        size = rng.randrange(1, 250)
        scan.add(rows.iloc[start:start + size])
        bounds.append((start, min(size, len(rows) - start)))
        start += size
    verdict = scan.verdict()
    got = []
    for first, count in bounds:
        reasons = verdict.reasons(first, count)
        got += [None] * count if reasons is None else list(reasons)
    assert got == expected


def _cyclic_pandas_garbage(work) -> list[str]:
    """pandas objects that ``work`` leaves in reference cycles (freed only by a full collection)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        work()
        gc.collect()
        return [f"{type(o).__name__} {getattr(o, 'name', '')}" for o in gc.garbage
                if isinstance(o, pd.Series | pd.DataFrame)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_rules_leave_no_reference_cycle_holding_a_chunk():
    """A chunk's memory is returned as soon as its rules are done. A cycle through one of its
    columns (e.g. a cached ``.str`` accessor) kept the whole chunk's strings alive until a full
    collection, so a day's cleaning grew by 40 MB per 250k-row chunk."""
    frames = [chunk(transaction_id=f"T{i}", quantity=q_) for i, q_ in enumerate(["2", " 3 ", "x", "1e0"])]
    frame = pd.concat(frames, ignore_index=True)
    raw = frame.drop(columns=["sale_ts"])
    assert _cyclic_pandas_garbage(lambda: q.clean_rows(frame.copy(), RULES, frozenset({"P1"}))) == []
    assert _cyclic_pandas_garbage(lambda: q.route_timestamps(raw.copy()["timestamp"], RULES, NOW)) == []


QUANTITY_TEXTS = ["2", " 7 ", "-3", "007", "-0", "+5", "2.0", "2.5", "1e3", "1E-1", "inf", "nan",
                  "", "  ", "three", "3 units", "999999999999999", "1234567890123456",
                  "99999999999999999999", "0x10", "1_000", "١٢", "１２", "\t4\n"]


@pytest.mark.parametrize("arrow_backed", [False, True], ids=["object", "arrow"])
def test_quantities_parse_as_pandas_to_numeric_parses_each_trimmed_text(arrow_backed):
    """Arrow casts the plain integers, pandas the rest: every text gets the number
    ``pd.to_numeric`` gives it on its own (the oracle: one call per value)."""
    from sales_platform.core.frames import text_series

    values = [*QUANTITY_TEXTS, None]
    series = text_series(values) if arrow_backed else pd.Series(values, dtype=object)
    got = q._parse_quantity(q._trimmed(series), series.index).tolist()
    for text, number in zip(values, got, strict=True):
        alone = pd.to_numeric(pd.Series([text.strip() if text is not None else None], dtype=object),
                              errors="coerce").astype(float).iloc[0]
        assert (number == alone) or (pd.isna(number) and pd.isna(alone)), (text, number, alone)
    assert got[:5] == [2.0, 7.0, -3.0, 7.0, 0.0]


def test_control_characters_make_an_identifier_invalid_in_any_script():
    """Hand-written verdicts: a control character (C0 or DEL) anywhere, in ASCII or not, and the
    invisible characters the products API refuses (format, private use, line separators)."""
    from sales_platform.core.frames import text_series

    cases = {"C1": False, "": False, "é-42": False, "中文": False, "a b": False, "x\u200by": True,
             "C\x001": True, "\tC": True, "é\x7f": True, "中\x1f文": True, "~": False,
             "\u202eRLO": True, "a\ue000": True, "a\u2028b": True, "\ufeffX": True, "x\x85": True}
    for series in (pd.Series(list(cases), dtype=object), text_series(list(cases))):
        assert q._invalid_identifier(series).tolist() == list(cases.values())


def test_a_quantity_limit_beyond_exact_float_arithmetic_is_refused():
    """Above 10**15 a float64 comparison could pass a quantity one over the limit."""
    q.QualityRules(max_quantity=10**15)
    with pytest.raises(ValueError, match="outside 1..1,000,000,000,000,000"):
        q.QualityRules(max_quantity=10**15 + 1)
    with pytest.raises(ValueError, match="outside"):
        q.QualityRules(max_quantity=0)
