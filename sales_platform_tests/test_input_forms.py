"""Input forms a sender's tools produce, end to end, compared whole with the oracle.

Exports concatenated with a second header in another column order; ids that differ only by an
invisible character or by Unicode composition; a Windows-1252 byte past the first 64 KiB; UTF-16;
Excel's ``sep=,`` line; a delimiter ending every line; an alias beside the column it names. The
files are landed and loaded in one range run (SQLite and PostgreSQL) and the whole `sales` and
`sales_rejects` tables compared with the independent oracle; the quarantine reasons are checked
against positions computed from the input bytes. A second test lands each file by both readers
(Arrow's fast path and the exact one) and finds the same rows.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import column, inspect, select

from sales_platform.core import landing
from sales_platform.core.crypto import Keyring, generate_key
from sales_platform.core.csvread import NeedsExactRead
from sales_platform.core.landing import Lander
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas, read_sealed_table
from sales_platform.core.warehouse.tables import agg_sales_by_customer, file_events, sales
from sales_platform_tests.boundary_support import DAY_CHAIN, module_backend, range_run
from sales_platform_tests.helpers import PRODUCTS, materialize, write_catalogue
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import normalize_id

D1, D2 = "2024-06-15", "2024-06-16"
AT1, AT2 = f"{D1}T10:00:00", f"{D2}T10:00:00"
HEADER = "transaction_id,customer_id,product_id,quantity,timestamp"
CAFE = "CAF\u00c9"  # precomposed É
CAFE_DECOMPOSED = "CAFE\u0301"  # E + COMBINING ACUTE ACCENT
ZWSP = "\u200b"
CATALOGUE = ["P1", "P2", f"{CAFE_DECOMPOSED}-P"]  # the catalogue writes one product decomposed


def text(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def rows(prefix: str, n: int, at: str = AT1) -> list[str]:
    return [f"{prefix}{i},C{i % 3},P{1 + i % 2},{1 + i % 4},{at}" for i in range(n)]


def _cp1252_file() -> bytes:
    """3,001 rows: 3,000 in ASCII, then one with a Windows-1252 é far past the first 64 KiB."""
    return (text(HEADER, *rows("W", 3000)) + f"W-last,Caf\u00e9,P1,1,{AT1}\n").encode("cp1252")


FILES: dict[str, bytes] = {
    # `cat a.csv b.csv`: the second export (its own BOM) writes customer_id first
    "concat.csv": b"\xef\xbb\xbf" + text(HEADER, *rows("A", 3)).encode() + "\ufeff".encode()
    + text("customer_id,transaction_id,quantity,product_id,timestamp",
           f"K-1,B1,2,P1,{AT1}", f"K-2,B2,3,P2,{AT1}").encode(),
    # a second header with another column: refused, naming its line (5)
    "concat_other.csv": text(HEADER, *rows("O", 3), f"{HEADER},store_id",
                             f"O9,C1,P1,1,{AT1},S-1").encode(),
    "twins.csv": text(
        HEADER,
        f"ID-ZW,{CAFE},P1,1,{AT1}",
        f"ID-ZW{ZWSP},C2,P1,1,{AT1}",  # a twin by an invisible character: refused
        f"T-CAFE,{CAFE_DECOMPOSED},P2,2,{AT1}",  # the same customer as ID-ZW's
        f"T-ZWC,C{ZWSP}X,P1,1,{AT1}",
        f"T-BIDI,C1,P\u202e1,1,{AT1}",
        f"T-PROD,C1,{CAFE}-p,1,{AT1}",  # the catalogue's decomposed product, precomposed here
        f"TX-{CAFE},C1,P1,1,{AT1}",  # one transaction on two days, written two ways
        f"tx-{CAFE_DECOMPOSED.lower()},C1,P1,1,{AT2}",
    ).encode(),
    "cp1252.csv": _cp1252_file(),
    "utf16.csv": text(HEADER, *rows("U", 3)).encode("utf-16"),
    "sep.csv": text("sep=,", HEADER, *rows("S", 3)).encode(),
    # a delimiter ending every line; one record with a value there, one without the delimiter
    "trailing.csv": text(*(f"{line}," for line in (HEADER, *rows("E", 3))),
                         f"E-val,C1,P1,1,{AT1},surprise", f"E-short,C1,P1,1,{AT1}").encode(),
    "alias.csv": text(f"{HEADER},product", *(f"{r},Widget {i}" for i, r in enumerate(rows("N", 3)))).encode(),
}
QUARANTINED = {"concat_other.csv", "cp1252.csv", "utf16.csv"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request, tmp_path_factory) -> Harness:
    folder = tmp_path_factory.mktemp(request.param)
    with module_backend(request.param, folder) as url:
        data_dir = folder / "data"
        harness = Harness(data_dir, url, generate_key(), platform={"max_reject_rate": 0.5})
        write_catalogue(data_dir, CATALOGUE)
        materialize(harness.resources, PRODUCTS, instance=harness.instance)
        for name, content in FILES.items():
            harness.drop(name, content)
        result = range_run(harness.resources, D1, D2, DAY_CHAIN, harness.instance)
        assert result.success
        yield harness


def known() -> set[str]:
    return {normalize_id(p) for p in CATALOGUE}


def test_sales_and_rejects_are_the_oracles(loaded):
    expected = assert_matches_oracle(loaded, known_products=known())
    assert {name for name, _, why in expected.skipped if why == "quarantined"} == QUARANTINED
    ledger = {name: row["status"] for (name, _), row in loaded.ledger().items()}
    assert ledger == {name: "quarantined" if name in QUARANTINED else "loaded" for name in FILES}


def test_a_second_header_is_read_in_its_own_column_order(loaded):
    got = loaded.sales_rows()
    assert (got["B1"][0], got["B1"][2], got["B1"][6]) == ("K-1", 2, 4)  # no swapped ids
    assert (got["B2"][0], got["B2"][1]) == ("K-2", "P2")
    assert not [r for r in loaded.reject_rows() if r[0] == "concat.csv"]  # the header is no row


def test_invisible_characters_and_composition_make_no_twins(loaded):
    got = loaded.sales_rows()
    twins = {tid for tid, row in got.items() if row[5] == "twins.csv"}
    assert twins == {"ID-ZW", "T-CAFE", "T-PROD"}
    assert got["ID-ZW"][0] == got["T-CAFE"][0] == CAFE  # one customer, stored NFC
    assert got["T-PROD"][1] == f"{CAFE}-P" and unicodedata.is_normalized("NFC", got["T-PROD"][1])
    reasons = {(row, reason) for file, row, reason, _ in loaded.reject_rows() if file == "twins.csv"}
    assert reasons == {(2, "invalid_identifier"), (4, "invalid_identifier"),
                       (5, "invalid_identifier"), (7, "duplicate_across_days"),
                       (8, "duplicate_across_days")}
    with loaded.engine.connect() as conn:  # the finance view: one customer with both sales
        per_customer = {loaded.tokenizer.decrypt(token): n for token, n in conn.execute(
            select(agg_sales_by_customer.c.customer_token, agg_sales_by_customer.c.transactions)
            .where(agg_sales_by_customer.c.sale_date == datetime(2024, 6, 15).date()))}
    assert per_customer[CAFE] == 2 and CAFE_DECOMPOSED not in per_customer


def _reason(loaded: Harness, name: str) -> tuple[str, str]:
    """The ledger's error and the quarantine reason file of a quarantined file."""
    (error,) = [row["error"] for (file, _), row in loaded.ledger().items() if file == name]
    stem = Path(name).stem
    (note,) = [p for p in (loaded.data_dir / "quarantine").glob(f"{stem}__*.reason.txt")]
    return error, note.read_text()


def test_a_cp1252_byte_anywhere_is_named_with_its_line_and_encoding(loaded):
    content = FILES["cp1252.csv"]
    offset = content.index(b"\xe9")
    line = content[:offset].count(b"\n") + 1
    assert offset > 64 << 10 and line == 3002  # past the probe; the header, 3,000 rows, then it
    for text_ in _reason(loaded, "cp1252.csv"):
        assert f"byte 0xE9 on line {line:,} (byte offset {offset:,})" in text_
        assert "Windows-1252" in text_ and "save the file as UTF-8" in text_
        assert "In CSV column" not in text_


def test_utf16_is_named_utf16(loaded):
    for text_ in _reason(loaded, "utf16.csv"):
        assert "UTF-16 text (its byte-order mark)" in text_ and "save it as UTF-8" in text_
        assert "binary" not in text_


def test_a_second_header_with_other_columns_names_its_line(loaded):
    line = FILES["concat_other.csv"].split(b"\n").index(f"{HEADER},store_id".encode()) + 1
    for text_ in _reason(loaded, "concat_other.csv"):
        assert f"line {line} is another header row with other columns" in text_


def test_excel_sep_line_trailing_delimiter_and_alias_beside_its_column(loaded):
    got = loaded.sales_rows()
    assert {t for t, r in got.items() if r[5] == "sep.csv"} == {"S0", "S1", "S2"}
    assert {t for t, r in got.items() if r[5] == "trailing.csv"} == {"E0", "E1", "E2", "E-SHORT"}
    columns = {c["name"] for c in inspect(loaded.engine).get_columns("sales")}
    assert "unnamed" not in columns and "product" in columns
    with loaded.engine.connect() as conn:
        names = dict(conn.execute(select(sales.c.transaction_id, column("product"))
                                  .select_from(sales).where(sales.c.source_file == "alias.csv")).all())
        events = list(conn.execute(select(file_events.c.detail)
                                   .where(file_events.c.file_name == "alias.csv")).scalars())
    assert names == {"N0": "Widget 0", "N1": "Widget 1", "N2": "Widget 2"}
    assert any("'product' is an alias of product_id" in (e or "") for e in events)


# ---- both readers, same rows ------------------------------------------------------------------

def _land(tmp: Path, name: str, content: bytes, exact: bool, monkeypatch) -> tuple[list, int]:
    """The landed rows (sorted by source_row) and the landing rejects, by one reader."""
    calls = []
    real = landing.exact_batches

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    def refuse(*_args, **_kwargs):
        raise NeedsExactRead("forced")
        yield  # a generator, as the reader is

    monkeypatch.setattr(landing, "exact_batches", counted)
    monkeypatch.setattr(landing, "fast_batches", refuse if exact else landing.fast_batches)
    areas = DataAreas(tmp / ("exact" if exact else "fast"))
    areas.ensure()
    keyring = Keyring.from_secrets(KEY)
    path = tmp / name
    path.write_bytes(content)
    lander = Lander(areas, keyring, SchemaContract(), QualityRules(), datetime(2024, 7, 1))
    result = lander.land(path, name, "0" * 64, len(content), 1)
    lander.publish(result, lambda: None)  # no ledger here: published as a committed landing would
    tables = [read_sealed_table(areas.staging / p, keyring) for p in sorted(result.fragment_rows)]
    landed = pa.concat_tables(tables).to_pylist() if tables else []
    rejects = [] if result.rejects is None or not len(result.rejects) else sorted(
        zip(result.rejects["source_row"], result.rejects["reason"], strict=True))
    monkeypatch.undo()
    return [sorted(landed, key=lambda r: r["source_row"]), rejects, result.columns], len(calls)


KEY = generate_key()
FAST_PATH = {"twins.csv": True, "sep.csv": True, "alias.csv": True, "concat.csv": False,
             "trailing.csv": False}


@pytest.mark.parametrize("name", sorted(FAST_PATH))
def test_both_readers_land_the_same_rows(tmp_path, monkeypatch, name):
    fast, exact_calls = _land(tmp_path, name, FILES[name], False, monkeypatch)
    assert (exact_calls == 0) == FAST_PATH[name]  # which reader the file needs
    exact, _ = _land(tmp_path, name, FILES[name], True, monkeypatch)
    assert fast == exact and fast[0]


def test_the_products_dimension_and_api_fold_ids_by_the_same_rule():
    """Ids equal once normalized are one product for the API and for dim_products; an id with an
    invisible character is left out of the dimension, as the API refuses it."""
    from sales_platform.api.schemas import id_key
    from sales_platform.core.products import products_from_items

    item = {"name": "n", "category": "c", "unit_price": 1.0, "updated_at": "2024-01-01T00:00:00"}
    assert id_key(f" {CAFE_DECOMPOSED.lower()}-p") == id_key(f"{CAFE}-P") == f"{CAFE}-P"
    frame, reasons = products_from_items([{**item, "product_id": f"{CAFE_DECOMPOSED}-P"},
                                          {**item, "product_id": f"{CAFE}-p"},
                                          {**item, "product_id": f"P{ZWSP}9"}])
    assert frame["product_id"].tolist() == [f"{CAFE}-P"]
    assert reasons == ["item 1: same id as item 0 once normalized (trim, NFC, upper case)",
                       "item 2: product_id longer than 64 characters or with control or invisible "
                       "format characters"]
