"""Every form an identifier can take, in every table and file it reaches.

Customer and product ids are written in lower and mixed case, with surrounding spaces (a tab, a
no-break space), and with the Unicode characters whose upper case differs in length or shape
(``ß`` -> ``SS``, ``ﬁ`` -> ``FI``, dotless ``ı`` -> ``I``, final ``ς`` -> ``Σ``, ``ǅ`` -> ``Ǆ``).
They travel through one range run of two days (loaded, rejected at landing, at cleaning, as
duplicates and across days, in a malformed record), then the exports. Every id column must hold
only tokens, each decrypting to what the oracle says the row holds: the normalized id in `sales`
and the aggregates, the value it was rejected with in `sales_rejects`. No fragment of any id may
appear in plaintext in the warehouse, the data dir (outside the drop zone), the exports or Dagster's
event log (materialization previews, log messages).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from sales_platform.core.crypto import Keyring, Tokenizer, generate_key, is_token
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import (
    agg_sales_by_customer,
    agg_sales_by_product,
    sales,
    sales_rejects,
)
from sales_platform_tests import oracle
from sales_platform_tests.boundary_support import module_backend, range_run
from sales_platform_tests.helpers import materialize, resources_for
from sales_platform_tests.test_security import database_haystack, files_haystack, leaks

TAG = f"q{uuid.uuid4().hex[:9]}"  # in every id: any plaintext fragment of one contains it
DAY1, DAY2 = "2024-05-01", "2024-05-02"
FORMS = {  # name -> how the id is written (customer ids; product ids get the same forms)
    "lower": f"id-{TAG}-lower",
    "mixed": f"Id-{TAG.upper()}-MiXeD",
    "spaces": f"  id-{TAG}-spaced\t",
    "no-break spaces": f"\u00a0id-{TAG}-nbsp\u00a0",
    "sharp s": f"straße-{TAG}",
    "ligature": f"ﬁle-{TAG}",
    "dotless i": f"ıd-{TAG}",
    "final sigma": f"ς-{TAG}",
    "titlecase digraph": f"ǅ-{TAG}",
}
HEADER = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]
MALFORMED = [f"M1,{FORMS['sharp s']},{FORMS['ligature']},1"]  # a field short


def _rows() -> list[list[str]]:
    forms = list(FORMS.values())
    at1, at2 = f"{DAY1}T10:00:00", f"{DAY2}T10:00:00"
    rows = [[f"L{i}", c, p, "1", at1] for i, (c, p) in enumerate(zip(forms, forms[1:] + forms[:1],
                                                                      strict=True))]
    rows += [[f"R{i}", c, c, "0", at1] for i, c in enumerate(forms)]  # cleaning: quantity_not_positive
    rows += [[f"B{i}", c, c, "1", "not a time"] for i, c in enumerate(forms)]  # landing: invalid_timestamp
    rows += [
        # identical once normalized: one loads, the other is duplicate_identical
        ["D1", f"STRASSE-{TAG.upper()}", FORMS["lower"], "2", at1],
        ["D1", FORMS["sharp s"], f"ID-{TAG.upper()}-LOWER", "2", at1],
        # copies that disagree on the quantity: duplicate_conflicting
        ["K1", FORMS["spaces"], FORMS["mixed"], "1", at1], ["K1", FORMS["spaces"], FORMS["mixed"], "2", at1],
        # one id on two days: duplicate_across_days on each
        ["X1", FORMS["dotless i"], FORMS["final sigma"], "1", at1],
        ["X1", FORMS["titlecase digraph"], FORMS["no-break spaces"], "1", at2],
        ["G2", FORMS["ligature"], FORMS["sharp s"], "3", at2],
    ]
    return rows


def _content() -> bytes:
    lines = oracle.csv_bytes(_rows(), HEADER).decode().splitlines()
    return ("\n".join([*lines, *MALFORMED]) + "\n").encode()


@dataclass
class Outcome:
    expected: oracle.Expected
    tokenizer: Tokenizer
    sales: list[dict]
    rejects: list[dict]
    by_customer: list[dict]
    by_product: list[dict]
    exports: dict[str, str]
    haystack: list[tuple[str, bytes]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def outcome(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp(f"forms_{request.param}")
    data_dir, home = root / "data", root / "dagster_home"
    home.mkdir()
    (data_dir / "incoming").mkdir(parents=True)
    content = _content()
    (data_dir / "incoming" / "forms.csv").write_bytes(content)
    key = generate_key()
    with module_backend(request.param, root) as url, dg.instance_for_test(temp_dir=str(home)) as instance:
        # every row of a day may be rejected here: no day is blocked
        resources = resources_for(data_dir, url, key, max_reject_rate=1.0)
        result = range_run(resources, DAY1, DAY2, instance=instance)
        assert result.success
        materialize(resources, ["agg_exports"], instance=instance)
        engine = cached_engine(resources["warehouse"].url())
        with engine.connect() as conn:
            tables = [[dict(r) for r in conn.execute(select(table)).mappings()]
                      for table in (sales, sales_rejects, agg_sales_by_customer, agg_sales_by_product)]
        blob = data_dir / "blob"
        exports = {p.relative_to(blob).as_posix(): p.read_text() for p in (blob / "exports").rglob("*.csv")}
        haystack = [*database_haystack(url), *files_haystack(home),
                    *(item for item in files_haystack(data_dir)
                      if Path(item[0]).relative_to(data_dir).parts[0] != "incoming")]
        expected = oracle.expected_state([oracle.Drop("forms.csv", content)], now=datetime.now(UTC))
        yield Outcome(expected, Tokenizer(Keyring.from_secrets(key)), *tables, exports, haystack)


def _plain(outcome: Outcome, token: str | None, column: str) -> str | None:
    """The plaintext of a token; anything that is not a token fails the test."""
    if token is None:
        return None
    assert is_token(token), f"{column} holds a non-token value"
    return outcome.tokenizer.decrypt(token, column)


def _stored_rejects(outcome: Outcome, stages: set[str]) -> list[tuple]:
    return sorted((r["source_file"], r["source_row"], r["reason"],
                   r["sale_date"].isoformat() if r["sale_date"] else None,
                   _plain(outcome, r["customer_id"], "customer_id"),
                   _plain(outcome, r["product_id"], "product_id"))
                  for r in outcome.rejects if r["stage"] in stages)


def _expected_rejects(outcome: Outcome, reasons: set[str] | None = None,
                      landing: bool = False) -> list[tuple]:
    return sorted((r.source_file, r.source_row, r.reason, r.sale_date.isoformat() if r.sale_date else None,
                   r.customer_id, r.product_id) for r in outcome.expected.rejects
                  if (r.sale_date is None) == landing and (reasons is None or r.reason in reasons))


def test_sales_ids_are_tokens_of_the_normalized_ids(outcome: Outcome):
    got = {r["transaction_id"]: (_plain(outcome, r["customer_id"], "customer_id"),
                                 _plain(outcome, r["product_id"], "product_id")) for r in outcome.sales}
    assert got == {t: (s.customer_id, s.product_id) for t, s in outcome.expected.sales.items()}
    # the forms really differ from their normalized ids (upper case, trimmed, longer)
    assert got["L4"][0] == f"STRASSE-{TAG.upper()}" and got["L5"][0] == f"FILE-{TAG.upper()}"


def test_case_pairs_share_one_token(outcome: Outcome):
    tokens = {r["transaction_id"]: r["customer_id"] for r in outcome.sales}
    # D1's loaded copy was written STRASSE-..., L4 straße-...: one customer, one token
    assert tokens["D1"] == tokens["L4"]


def test_landing_rejects_hold_tokens_of_the_ids_as_written(outcome: Outcome):
    assert _stored_rejects(outcome, {"landing"}) == _expected_rejects(outcome, landing=True)


def test_cleaning_rejects_hold_tokens_of_the_ids_as_written(outcome: Outcome):
    rule_rejects = {"quantity_not_positive"}
    assert ([r for r in _stored_rejects(outcome, {"cleaning"}) if r[2] in rule_rejects]
            == _expected_rejects(outcome, rule_rejects))


def test_duplicate_rejects_hold_tokens_of_the_normalized_ids(outcome: Outcome):
    copies = {"duplicate_identical", "duplicate_conflicting"}
    assert ([r for r in _stored_rejects(outcome, {"cleaning"}) if r[2] in copies]
            == _expected_rejects(outcome, copies))


def test_cross_day_rejects_hold_tokens_of_the_normalized_ids(outcome: Outcome):
    across = {"duplicate_across_days"}
    assert ([r for r in _stored_rejects(outcome, {"cleaning", "conflict"}) if r[2] in across]
            == _expected_rejects(outcome, across))


def test_every_reject_matches_the_oracle_with_its_ids(outcome: Outcome):
    stored = _stored_rejects(outcome, {"landing", "cleaning", "conflict"})
    assert stored == sorted(_expected_rejects(outcome) + _expected_rejects(outcome, landing=True))


def test_malformed_record_is_one_token_of_its_text(outcome: Outcome):
    (row,) = [r for r in outcome.rejects if r["reason"] == "malformed_row"]
    assert row["customer_id"] is None and row["product_id"] is None
    fields = next(csv.reader(io.StringIO(MALFORMED[0])))
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(fields)
    assert _plain(outcome, row["raw_text"], "raw_text") == text.getvalue()


def test_daily_aggregates_hold_tokens_of_the_normalized_ids(outcome: Outcome):
    sold = outcome.expected.sales.values()
    customers = Counter((s.sale_date.isoformat(), s.customer_id) for s in sold)
    products = Counter((s.sale_date.isoformat(), s.product_id) for s in sold)
    assert {(r["sale_date"].isoformat(), _plain(outcome, r["customer_token"], "customer_id")):
            r["transactions"] for r in outcome.by_customer} == customers
    assert {(r["sale_date"].isoformat(), _plain(outcome, r["product_token"], "product_id")):
            r["transactions"] for r in outcome.by_product} == products


@pytest.mark.parametrize(("name", "column", "kind"), [
    ("agg_sales_by_customer", "customer_token", "customer_id"),
    ("agg_sales_by_product", "product_token", "product_id")])
def test_exports_hold_tokens_of_the_normalized_ids(outcome: Outcome, name: str, column: str, kind: str):
    rows = list(csv.DictReader(io.StringIO(outcome.exports[f"exports/{name}/2024.csv"])))
    want = {getattr(s, kind) for s in outcome.expected.sales.values()}
    assert {_plain(outcome, r[column], kind) for r in rows} == want


def test_no_id_form_is_written_in_plaintext_anywhere(outcome: Outcome):
    where = [name for name, _ in outcome.haystack]
    # the search covers the warehouse, the exports, the staging layers and Dagster's event log
    assert "table sales_rejects" in where and any("/exports/" in n for n in where)
    assert any("(parquet rows)" in n for n in where) and any("dagster_home" in n for n in where)
    assert leaks(outcome.haystack, {"an id": {TAG.encode(), TAG.upper().encode()}}) == []


def test_oracle_keeps_rejected_ids_as_written_and_copies_normalized():
    """The oracle's rule for reject ids, on hand-written rows (no platform involved)."""
    rows = [["T1", " c1 ", "p1", "0", f"{DAY1}T10:00:00"], ["T2", "c2", "p2", "1", "later"],
            ["T3", "c3", "p3", "1", f"{DAY1}T10:00:00"], ["t3", " C3", "P3 ", "1", f"{DAY1}T10:00:00"]]
    expected = oracle.expected_state([oracle.Drop("a.csv", oracle.csv_bytes(rows))], now=datetime.now(UTC))
    assert [(r.reason, r.customer_id, r.product_id) for r in expected.rejects] == [
        ("quantity_not_positive", " c1 ", "p1"), ("invalid_timestamp", "c2", "p2"),
        ("duplicate_identical", "C3", "P3")]
