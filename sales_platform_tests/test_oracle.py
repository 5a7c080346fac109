"""Unit tests of the independent test oracle: every expectation here is worked out by hand."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from sales_platform_tests.oracle import (
    HEADER,
    Drop,
    ExpectedReject,
    ExpectedSale,
    catalogue_prices,
    check_quantity,
    csv_bytes,
    expected_state,
    parse_timestamp,
)

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
D1, D2 = date(2024, 6, 15), date(2024, 6, 16)


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def row(tid: str = "T1", ts: str = "2024-06-15T10:00:00Z", qty: str = "2", cid: str = "C1",
        pid: str = "P1") -> list[str]:
    return [tid, cid, pid, qty, ts]


def drop(name: str, *rows: list[str]) -> Drop:
    return Drop(name, csv_bytes(list(rows)))


def state(*drops: Drop, **options):
    options.setdefault("now", NOW)
    return expected_state(list(drops), **options)


def reasons(expected) -> list[tuple[str, int, str]]:
    return [(r.source_file, r.source_row, r.reason) for r in expected.rejects]


def only_reason(*rows: list[str], **options) -> str:
    """The reject reason of a single-row file (asserting there is exactly one reject and no sale)."""
    expected = state(drop("a.csv", *rows), **options)
    assert not expected.sales
    assert len(expected.rejects) == 1
    return expected.rejects[0].reason


# ---------------------------------------------------------------- rule 1: which drops are files


def test_csv_bytes_writes_header_and_rows() -> None:
    assert csv_bytes([["a", "b,c", "x\ny", "1", "2"]]) == (
        b'transaction_id,customer_id,product_id,quantity,timestamp\na,"b,c","x\ny",1,2\n'
    )
    assert csv_bytes([["1"]], header=None) == b"1\n"
    assert ",".join(HEADER) == "transaction_id,customer_id,product_id,quantity,timestamp"


@pytest.mark.parametrize("name", ["notes.txt", ".hidden.csv", "sales.csv.tmp", "sales.csv.partial",
                                  "sales.csv.part", "sales.csv.crdownload", "salescsv", "sales.csv.bak"])
def test_non_csv_names_are_skipped(name: str) -> None:
    content = csv_bytes([row()])
    expected = state(Drop(name, content))
    assert expected.skipped == [(name, sha(content), "not_csv")]
    assert expected.current_files == {} and expected.sales == {} and expected.rejects == []


def test_csv_suffix_is_case_insensitive() -> None:
    content = csv_bytes([row()])
    assert state(Drop("SALES.CSV", content)).current_files == {"SALES.CSV": sha(content)}


# ---------------------------------------------------------------- rule 2: versions and duplicates


def test_similar_and_cjk_names_are_distinct_files() -> None:
    names = ["sales 1.csv", "sales_1.csv", "销售.csv", "销售数据.csv"]
    drops = [drop(name, row(tid=f"T{i}")) for i, name in enumerate(names)]
    expected = state(*drops)
    assert expected.current_files == {d.name: sha(d.content) for d in drops}
    assert expected.current_order == names
    assert {tid: sale.source_file for tid, sale in expected.sales.items()} == {
        "T0": "sales 1.csv", "T1": "sales_1.csv", "T2": "销售.csv", "T3": "销售数据.csv"}
    assert expected.skipped == []


def test_identical_content_under_another_name_is_a_duplicate() -> None:
    first = drop("a.csv", row())
    again = Drop("b.csv", first.content)
    same_name = Drop("a.csv", first.content)
    expected = state(first, again, same_name)
    assert expected.current_files == {"a.csv": sha(first.content)}
    assert expected.skipped == [("b.csv", sha(first.content), "duplicate"),
                                ("a.csv", sha(first.content), "duplicate")]
    assert list(expected.sales) == ["T1"] and expected.rejects == []


def test_content_of_a_replaced_version_lands_again() -> None:
    v1, v2 = drop("a.csv", row(qty="1")), drop("a.csv", row(qty="2"))
    expected = state(v1, v2, Drop("b.csv", v1.content))
    assert expected.skipped == []
    assert expected.current_files == {"a.csv": sha(v2.content), "b.csv": sha(v1.content)}
    # both carry T1 on the same day with different quantities
    assert reasons(expected) == [("a.csv", 1, "duplicate_conflicting"), ("b.csv", 1, "duplicate_conflicting")]


def test_corrected_version_replaces_every_day_of_the_previous_one() -> None:
    v1 = drop("sales.csv", row("T1", "2024-06-15T10:00:00Z"), row("T2", "2024-06-16T10:00:00Z"),
              row("T3", "2024-06-16T11:00:00Z", qty="abc"))
    v2 = drop("sales.csv", row("T1", "2024-06-15T10:00:00Z", qty="5"))
    expected = state(v1, v2)
    assert expected.current_files == {"sales.csv": sha(v2.content)}
    assert expected.sales == {"T1": ExpectedSale("T1", "C1", "P1", 5, datetime(2024, 6, 15, 10), D1,
                                                 "sales.csv", 1)}
    assert expected.rejects == []
    assert expected.rows_by_day() == {D1: 1}


# ---------------------------------------------------------------- rule 3: unreadable files


@pytest.mark.parametrize("content", [
    b"",
    b"  \n\r\n\t",
    b"transaction_id,customer_id,product_id,quantity,timestamp\nT1,C1,P1,2,2024-06-15T10:00:00\x00Z\n",
    "transaction_id,customer_id,product_id,quantity,timestamp\nT1,C1,P1,2,2024-06-15T10:00:00Z\n"
    .replace("C1", "Cé").encode("latin-1"),
    b"transaction_id,customer_id,product_id,quantity,timestamp\n",
    b"transaction_id,customer_id,product_id,quantity,timestamp\n\n\n",
    b"transaction_id,customer_id,product_id,qty,timestamp\nT1,C1,P1,2,2024-06-15T10:00:00Z\n",
    b"T1,C1,P1,2,2024-06-15T10:00:00Z\nT2,C1,P1,2,2024-06-15T10:00:00Z\n",
    b"\xef\xbb\xbf",
], ids=["empty", "whitespace", "nul", "latin1", "header-only", "header-and-blank", "missing-column",
        "no-header", "bom-only"])
def test_unreadable_file_is_quarantined_and_replaces_nothing(content: bytes) -> None:
    good = drop("a.csv", row())
    expected = state(good, Drop("a.csv", content))
    assert expected.skipped == [("a.csv", sha(content), "quarantined")]
    assert expected.current_files == {"a.csv": sha(good.content)}
    assert list(expected.sales) == ["T1"] and expected.rejects == []


def test_bom_loose_header_and_extra_or_reordered_columns_are_readable() -> None:
    content = ("\ufeff Timestamp ,QUANTITY,extra,product_id,Customer_ID,transaction_id\n"
               "2024-06-15T10:00:00Z,3,x,p1,c1,t1\n").encode()
    expected = state(Drop("a.csv", content))
    sale = ExpectedSale("T1", "C1", "P1", 3, datetime(2024, 6, 15, 10), D1, "a.csv", 1)
    assert expected.sales == {"T1": sale}


# ---------------------------------------------------------------- rule 4: records


def test_blank_lines_are_not_counted_and_quoted_newlines_stay_in_one_record() -> None:
    content = (b"transaction_id,customer_id,product_id,quantity,timestamp\r\n\r\n"
               b'T1,"C\n1",P1,2,2024-06-15T10:00:00Z\r\n\n\n'
               b"T2,C2,P1,2,2024-06-15T11:00:00Z\r\n")
    expected = state(Drop("a.csv", content))
    # "C\n1" contains a control character: a reject, but still record 1; T2 is record 2
    assert reasons(expected) == [("a.csv", 1, "invalid_identifier")]
    assert expected.sales["T2"].source_row == 2
    assert expected.accounted() == {"a.csv": 2}


def test_malformed_record_in_the_middle_keeps_the_numbering() -> None:
    content = (b"transaction_id,customer_id,product_id,quantity,timestamp\n"
               b"T1,C1,P1,2,2024-06-15T10:00:00Z\n"
               b"T2,C1,P1,2\n"
               b"T3,C1,P1,2,2024-06-15T10:00:00Z,extra\n"
               b"T4,C1,P1,2,2024-06-15T10:00:00Z\n")
    expected = state(Drop("a.csv", content))
    assert expected.rejects == [
        ExpectedReject("a.csv", 2, "malformed_row", None, None, "landing"),
        ExpectedReject("a.csv", 3, "malformed_row", None, None, "landing"),
    ]
    assert {tid: sale.source_row for tid, sale in expected.sales.items()} == {"T1": 1, "T4": 4}


# ---------------------------------------------------------------- rule 5: timestamps


def test_offset_and_naive_timestamps_in_one_file() -> None:
    expected = state(drop("a.csv", row("T1", "2024-06-15T02:00:00-08:00"), row("T2", "2024-06-15T20:00:00")),
                     source_timezone="UTC")
    assert expected.sales["T1"].sale_ts == datetime(2024, 6, 15, 10)
    assert expected.sales["T2"].sale_ts == datetime(2024, 6, 15, 20)
    assert expected.sales["T1"].sale_date == expected.sales["T2"].sale_date == D1


def test_naive_timestamp_uses_the_source_timezone() -> None:
    expected = state(drop("a.csv", row("T1", "2024-06-15T22:30:00"), row("T2", "2024-06-15T10:00:00+02:00")),
                     source_timezone="America/New_York")
    assert expected.sales["T1"].sale_ts == datetime(2024, 6, 16, 2, 30)  # EDT is UTC-4
    assert expected.sales["T1"].sale_date == D2
    assert expected.sales["T2"].sale_ts == datetime(2024, 6, 15, 8)  # explicit offset wins


@pytest.mark.parametrize("value, utc", [
    ("2024-06-15T10:00Z", datetime(2024, 6, 15, 10)),
    ("2024-06-15 10:00:00", datetime(2024, 6, 15, 10)),
    ("2024-06-15T10:00:59.999999Z", datetime(2024, 6, 15, 10, 0, 59)),
    ("2024-06-15T10:00:00.5", datetime(2024, 6, 15, 10)),
    ("2024-06-15T10:00:00+0530", datetime(2024, 6, 15, 4, 30)),
    ("2024-06-15T10:00:00+05", datetime(2024, 6, 15, 5)),
    ("2024-06-15T10:00:00.9-01:00", datetime(2024, 6, 15, 11)),
    ("  2024-06-15T10:00:00Z \t", datetime(2024, 6, 15, 10)),
    ("2024-02-29T00:00:00", datetime(2024, 2, 29)),
])
def test_accepted_timestamp_shapes(value: str, utc: datetime) -> None:
    expected = state(drop("a.csv", row(ts=value)))
    assert expected.sales["T1"].sale_ts == utc
    assert expected.sales["T1"].sale_date == utc.date()


@pytest.mark.parametrize("value", [
    "2024-06-15", "2024", "yesterday", "2024-06-15T10", "2024-06-15T10:00:00.1234567Z", "2024-13-01T00:00:00",
    "2023-02-29T00:00:00", "2024-06-15T24:00:00", "2024-06-15T10:60:00", "2024-06-15T10:00:60",
    "2024-06-15T10:00:00+24:00", "2024-06-15T10:00:00+05:60", "2024-06-15T10:00:00 +01:00",
    "15/06/2024 10:00",
    "2024-06-15T10:00:00UTC", "2024-06-15t10:00:00z", "2024-06-15T10:00.5", "２０２４-06-15T10:00:00",
    "2024-06-15T10:00:00+5",
])
def test_invalid_timestamps(value: str) -> None:
    assert only_reason(row(ts=value)) == "invalid_timestamp"


def test_dst_gap_and_fold_are_invalid_in_the_source_timezone() -> None:
    ny = {"source_timezone": "America/New_York", "now": datetime(2025, 1, 1, tzinfo=UTC)}
    assert only_reason(row(ts="2024-03-10T02:30:00"), **ny) == "invalid_timestamp"  # gap
    assert only_reason(row(ts="2024-11-03T01:30:00"), **ny) == "invalid_timestamp"  # fold
    # the same wall times are fine in UTC, and with an explicit offset
    assert "T1" in state(drop("a.csv", row(ts="2024-03-10T02:30:00"))).sales
    assert state(drop("a.csv", row(ts="2024-11-03T01:30:00-05:00")), **ny).sales["T1"].sale_ts == datetime(
        2024, 11, 3, 6, 30)
    assert state(drop("a.csv", row(ts="2024-03-10T03:30:00")), **ny).sales["T1"].sale_ts == datetime(
        2024, 3, 10, 7, 30)


def test_future_and_before_start_and_missing_timestamps() -> None:
    assert only_reason(row(ts="")) == "missing_timestamp"
    assert only_reason(row(ts="   ")) == "missing_timestamp"
    assert only_reason(row(ts="2024-07-01T13:00:01Z")) == "future_timestamp"
    assert only_reason(row(ts="2024-07-01T13:00:00.000001Z")) == "future_timestamp"
    assert state(drop("a.csv", row(ts="2024-07-01T13:00:00Z"))).sales["T1"].sale_date == date(2024, 7, 1)
    assert only_reason(row(ts="2023-12-31T23:59:59Z")) == "before_start_date"
    assert only_reason(row(ts="2024-01-01T00:30:00+01:00")) == "before_start_date"
    assert only_reason(row(ts="2024-06-01T00:00:00Z"), start_date=date(2024, 6, 2)) == "before_start_date"
    assert "T1" in state(drop("a.csv", row(ts="2024-01-01T00:00:00Z"))).sales
    reject = state(drop("a.csv", row(ts="2030-01-01T00:00:00Z"))).rejects[0]
    assert reject == ExpectedReject("a.csv", 1, "future_timestamp", None, None, "landing")


def test_parse_timestamp_directly() -> None:
    assert parse_timestamp("2024-06-15T10:00:00.250-02:00") == datetime(2024, 6, 15, 12, 0, 0, 250000, UTC)
    assert parse_timestamp("2024-06-15T10:00:00", "Asia/Tokyo") == datetime(2024, 6, 15, 1, tzinfo=UTC)
    assert parse_timestamp("") == "missing_timestamp"


def test_timestamp_rules_come_before_row_rules() -> None:
    assert only_reason(row(tid="", qty="abc", ts="2024-06-15")) == "invalid_timestamp"


# ---------------------------------------------------------------- rule 6: row rules


@pytest.mark.parametrize("fields, reason", [
    ({"tid": "  "}, "missing_transaction_id"),
    ({"cid": ""}, "missing_customer_id"),
    ({"pid": " "}, "missing_product_id"),
    ({"tid": "", "cid": "", "qty": "x"}, "missing_transaction_id"),
    ({"cid": "", "pid": ""}, "missing_customer_id"),
    ({"tid": "T" * 65}, "invalid_identifier"),
    ({"pid": "P\x7f1"}, "invalid_identifier"),
    ({"cid": "C\x011"}, "invalid_identifier"),
    ({"cid": "C\t1"}, "invalid_identifier"),
    ({"pid": "P" * 65, "qty": ""}, "invalid_identifier"),
    ({"qty": ""}, "missing_quantity"),
    ({"qty": "  "}, "missing_quantity"),
    ({"qty": "abc"}, "quantity_not_numeric"),
    ({"qty": "1,5"}, "quantity_not_numeric"),
    ({"qty": "inf"}, "quantity_not_numeric"),
    ({"qty": "nan"}, "quantity_not_numeric"),
    ({"qty": "1e400"}, "quantity_not_numeric"),
    ({"qty": "0x10"}, "quantity_not_numeric"),
    ({"qty": "1 2"}, "quantity_not_numeric"),
    ({"qty": "١٢"}, "quantity_not_numeric"),
    ({"qty": "2.5"}, "quantity_not_integer"),
    ({"qty": "1e-1"}, "quantity_not_integer"),
    ({"qty": "0"}, "quantity_not_positive"),
    ({"qty": "-0"}, "quantity_not_positive"),
    ({"qty": "-3"}, "quantity_not_positive"),
    ({"qty": "-2.5"}, "quantity_not_integer"),
    ({"qty": "1001"}, "quantity_outlier"),
    ({"qty": "1e4"}, "quantity_outlier"),
])
def test_row_rules(fields: dict[str, str], reason: str) -> None:
    expected = state(drop("a.csv", row(**fields)))
    assert not expected.sales
    tid = fields.get("tid", "T1").strip().upper() or None
    assert expected.rejects == [ExpectedReject("a.csv", 1, reason, D1, tid, "cleaning")]


@pytest.mark.parametrize("value, quantity", [
    ("2", 2), (" 7 ", 7), ("+3", 3), ("007", 7), ("5.0", 5), ("5.", 5), ("1e2", 100), ("2.50E1", 25),
    (".1e1", 1), ("1000", 1000),
])
def test_accepted_quantities(value: str, quantity: int) -> None:
    assert check_quantity(value) == quantity
    assert state(drop("a.csv", row(qty=value))).sales["T1"].quantity == quantity


def test_max_quantity_and_known_products() -> None:
    assert only_reason(row(qty="11"), max_quantity=10) == "quantity_outlier"
    assert state(drop("a.csv", row(qty="10")), max_quantity=10).sales["T1"].quantity == 10
    assert only_reason(row(pid="p9"), known_products={"P1"}) == "unknown_product"
    assert "T1" in state(drop("a.csv", row(pid=" p1 ")), known_products={"P1"}).sales
    # quantity rules come before the product check
    assert only_reason(row(pid="P9", qty="0"), known_products={"P1"}) == "quantity_not_positive"


def test_identifiers_are_stripped_and_upper_cased() -> None:
    sale = state(drop("a.csv", row(tid=" t-1 ", cid="c1", pid="  pé"))).sales["T-1"]
    assert (sale.transaction_id, sale.customer_id, sale.product_id) == ("T-1", "C1", "PÉ")
    assert "T" * 64 in state(drop("a.csv", row(tid="t" * 64))).sales


# ---------------------------------------------------------------- rule 7: duplicates


def test_transaction_ids_are_case_insensitive() -> None:
    expected = state(drop("a.csv", row("t1"), row("T1")))
    assert list(expected.sales) == ["T1"]
    assert expected.sales["T1"].source_row == 1
    assert expected.rejects == [ExpectedReject("a.csv", 2, "duplicate_identical", D1, "T1", "cleaning")]


def test_same_tid_on_two_days_in_two_files_rejects_both() -> None:
    expected = state(drop("a.csv", row("T1", "2024-06-15T10:00:00Z")),
                     drop("b.csv", row("t1", "2024-06-16T10:00:00Z")))
    assert expected.sales == {}
    assert expected.rejects == [
        ExpectedReject("a.csv", 1, "duplicate_across_days", D1, "T1", "cleaning"),
        ExpectedReject("b.csv", 1, "duplicate_across_days", D2, "T1", "cleaning"),
    ]
    assert expected.rejects_by_reason() == {"duplicate_across_days": 2}


def test_across_days_wins_over_conflicting_and_counts_only_passing_rows() -> None:
    expected = state(drop("a.csv", row("T1", "2024-06-15T10:00:00Z", qty="1"),
                          row("T1", "2024-06-16T10:00:00Z", qty="2"),
                          row("T1", "2024-06-17T10:00:00Z", qty="abc"),
                          row("T2", "2024-06-15T10:00:00Z"),
                          row("T2", "2024-06-16T10:00:00Z", qty="0")))
    assert reasons(expected) == [("a.csv", 1, "duplicate_across_days"), ("a.csv", 2, "duplicate_across_days"),
                                 ("a.csv", 3, "quantity_not_numeric"), ("a.csv", 5, "quantity_not_positive")]
    assert list(expected.sales) == ["T2"]


@pytest.mark.parametrize("other", [
    row(cid="C2"), row(pid="P2"), row(qty="3"), row(ts="2024-06-15T10:00:01Z"),
])
def test_conflicting_copies_on_one_day_are_all_rejected(other: list[str]) -> None:
    expected = state(drop("a.csv", row()), drop("b.csv", other))
    assert expected.sales == {}
    assert reasons(expected) == [("a.csv", 1, "duplicate_conflicting"), ("b.csv", 1, "duplicate_conflicting")]


def test_copies_identical_after_normalization_and_truncation_are_identical() -> None:
    expected = state(drop("a.csv", row(cid=" c1", qty="2.0", ts="2024-06-15T10:00:00.7Z")),
                     drop("b.csv", row(pid="p1 ", qty="+2", ts="2024-06-15T12:00:00+02:00")))
    assert expected.sales["T1"].source_file == "a.csv"
    assert reasons(expected) == [("b.csv", 1, "duplicate_identical")]


def test_identical_copies_keep_the_earliest_landed_file() -> None:
    a = drop("a.csv", row("T9"), row("T1"))
    b = drop("b.csv", row("T1"))
    expected = state(b, a)
    kept = ExpectedSale("T1", "C1", "P1", 2, datetime(2024, 6, 15, 10), D1, "b.csv", 1)
    assert expected.sales["T1"] == kept
    assert reasons(expected) == [("a.csv", 2, "duplicate_identical")]
    # a new version of b.csv lands after a.csv: now a.csv holds the earliest-landed copy
    b2 = drop("b.csv", row("T1"), row("T5"))
    expected = state(b, a, b2)
    assert expected.current_order == ["a.csv", "b.csv"]
    assert (expected.sales["T1"].source_file, expected.sales["T1"].source_row) == ("a.csv", 2)
    assert reasons(expected) == [("b.csv", 1, "duplicate_identical")]


def test_summaries() -> None:
    expected = state(drop("a.csv", row("T1"), row("T2", "2024-06-16T00:00:00Z"), row("T3"),
                          row("T4", qty="x"), row("T5", ts="nope")))
    assert expected.rows_by_day() == {D1: 2, D2: 1}
    assert expected.rejects_by_reason() == {"quantity_not_numeric": 1, "invalid_timestamp": 1}
    assert expected.rejects_by_day() == {D1: 1, None: 1}
    assert expected.accounted() == {"a.csv": 5}


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        expected_state([], now=datetime(2024, 7, 1))


# ---------------------------------------------------------------- rule 8: every record is accounted for


GOOD_STAMPS = ["2024-06-15T10:00:00Z", "2024-06-15T02:00:00-08:00", "2024-06-15T20:00:00", "2024-06-16 01:00",
               "2024-06-16T23:59:59.9+00:00", "2024-06-17T08:00+0200"]
BAD_STAMPS = ["2024-06-15", "2030-01-01T00:00:00Z", "2023-06-01T00:00:00Z", "2024-03-10T02:30:00", "",
              "garbage"]
BAD_QUANTITIES = ["0", "-1", "2.5", "abc", "", "5000"]


def _random_line(rng: random.Random) -> str:
    """Mostly good rows (each tid has a usual value, so identical copies are common), some bad ones."""
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.12:
        return f"T{rng.randint(1, 9)},C1,P1"  # too few fields
    number = rng.randint(1, 150)
    tid = rng.choice([f"t{number}", f"T{number}", f" T{number} "])
    fields = [tid, f"C{number % 3}", f"P{number % 2 + 1}", str(number % 5 + 1), GOOD_STAMPS[number % 6]]
    if kind < 0.15:
        fields[4] = rng.choice(GOOD_STAMPS)  # maybe another day: duplicate_across_days or conflicting
    elif kind < 0.4:
        fields[rng.randrange(5)] = rng.choice(["", " ", "P9", '"C\n1"', *BAD_STAMPS, *BAD_QUANTITIES])
    elif kind < 0.45:
        fields[3] = rng.choice(["1e0", "2.0", "+3"])
    return ",".join(fields)


def _random_drops(rng: random.Random, count: int) -> list[Drop]:
    names = ["sales 1.csv", "sales_1.csv", "销售.csv", "X.CSV", "notes.txt"]
    names += [f"f{i}.csv" for i in range(60)]
    drops: list[Drop] = []
    for _ in range(count):
        if drops and rng.random() < 0.1:  # the same bytes again, under any name
            drops.append(Drop(rng.choice(names), rng.choice(drops).content))
            continue
        lines = [_random_line(rng) for _ in range(rng.randint(0, 8))]
        body = "\n".join([",".join(HEADER), *lines]) + rng.choice(["", "\n", "\r\n"])
        drops.append(Drop(rng.choice(names), body.encode()))
    return drops


def _data_records(content: bytes) -> int:
    text = content.decode("utf-8-sig")
    return sum(1 for record in csv.reader(io.StringIO(text, newline="")) if record) - 1


@pytest.mark.parametrize("seed", range(5))
def test_every_record_ends_in_exactly_one_place(seed: int) -> None:
    rng = random.Random(seed)
    drops = _random_drops(rng, 300)[: rng.choice([100, 200, 300])]
    expected = expected_state(drops, now=NOW, known_products=rng.choice([None, {"P1", "P2"}]),
                              source_timezone=rng.choice(["UTC", "America/New_York"]))
    assert len(expected.current_files) > 20 and expected.sales
    assert {"duplicate", "not_csv", "quarantined"} <= {why for _, _, why in expected.skipped}
    wanted = {"duplicate_across_days", "duplicate_identical", "malformed_row", "invalid_timestamp"}
    assert wanted <= set(expected.rejects_by_reason())
    latest = {d.name: d.content for d in drops if sha(d.content) == expected.current_files.get(d.name)}
    assert set(latest) == set(expected.current_files)
    assert expected.accounted() == {name: _data_records(latest[name]) for name in expected.current_files}
    places = [(s.source_file, s.source_row) for s in expected.sales.values()]
    places += [(r.source_file, r.source_row) for r in expected.rejects]
    assert len(places) == len(set(places))
    assert sum(expected.accounted().values()) == len(places)
    for sale in expected.sales.values():
        assert sale.sale_ts.tzinfo is None and sale.sale_ts.microsecond == 0
        assert sale.sale_ts.date() == sale.sale_date
    for reject in expected.rejects:
        assert (reject.stage == "landing") == (reject.sale_date is None)
    assert {why for _, _, why in expected.skipped} <= {"not_csv", "duplicate", "quarantined"}


def test_catalogue_prices_normalize_ids_and_round_to_the_cent() -> None:
    content = ("\ufeffproduct_id,name,category,unit_price,updated_at\n"
               " p1 ,Kite,Toys,2.5,2024-01-01T00:00:00\n"
               "P00002,\"Lamp, large\",Home,19.999,2024-01-01\n"
               "P3,Cup,Home,0.125,2024-01-01\n").encode()
    assert catalogue_prices(content) == {"P1": Decimal("2.50"), "P00002": Decimal("20.00"),
                                         "P3": Decimal("0.12")}
