"""The encrypted layer made in the cleaning pass (``clean_day(..., tokenize=True)``) is the layer
``encrypt_day`` makes from the published cleaned layer: same files, rows and tokens, duplicates
taken out of both, and nothing left behind when it is not published."""

from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sales_platform.core.crypto import Tokenizer
from sales_platform.core.intake import Intake
from sales_platform.core.pipeline import CLEANED, ENCRYPTED, clean_day, encrypt_day
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas, read_sealed_table
from sales_platform.core.warehouse.engine import make_engine
from sales_platform_tests.helpers import HEADER, write_csv

DAY = "2024-03-01"
RULES = QualityRules(start_date=date(2024, 1, 1))


@pytest.fixture
def landed(data_dir, keyring, tmp_path):
    """Three files of one day (three landed fragments): duplicates inside a file and across files,
    identical and conflicting, a bad quantity, and an extra column in one file only."""
    incoming = data_dir / "incoming"
    write_csv(incoming / "a.csv", [[f"T{i}", f"c{i % 7}", f"P{i % 3}", str(i % 5 + 1), f"{DAY}T09:00:00"]
                                   for i in range(40)] + [["T1", "c1", "P1", "2", f"{DAY}T09:00:00"]])
    b_rows = [[f"T{i}", f"c{i % 11}", f"P{i % 3}", "3", f"{DAY}T10:00:00", "S1"] for i in range(30, 70)]
    write_csv(incoming / "b.csv", [*b_rows, ["TX", "c1", "P1", "-4", f"{DAY}T10:00:00", "S2"]],
              header=[*HEADER, "store_id"])
    write_csv(incoming / "c.csv", [["T5", "c5", "P2", "9", f"{DAY}T11:00:00"],  # conflicts with a.csv
                                   ["T80", " c80 ", "p1", "1", f"{DAY}T11:00:00"]])
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    outcomes = Intake(areas, engine, keyring, SchemaContract(), RULES, code_version="test",
                      now=datetime(2024, 6, 1), settle_s=0).run()
    assert [o.status for o in outcomes] == ["landed"] * 3
    return areas


def layer(areas: DataAreas, name: str) -> dict[str, pa.Table]:
    return {p.name: pq.read_table(p) for p in areas.fragments(name, DAY)}


def test_tokenized_in_the_cleaning_pass_equals_encrypting_the_cleaned_layer(landed, keyring):
    result = clean_day(landed, keyring, DAY, RULES, None, tokenize=True)
    assert result.encrypted is not None and result.rejects_by_reason  # duplicates and a bad row
    fused = result.encrypted.publish()
    made_in_pass = layer(landed, ENCRYPTED)
    cleaned = [read_sealed_table(p, keyring) for p in landed.fragments(CLEANED, DAY)]
    assert len(made_in_pass) == len(cleaned) == 3

    again = encrypt_day(landed, keyring, DAY)
    from_cleaned = layer(landed, ENCRYPTED)
    assert made_in_pass.keys() == from_cleaned.keys()
    for name, table in made_in_pass.items():
        assert table.equals(from_cleaned[name]), name
    assert (fused.rows, fused.distinct_customers, fused.distinct_products) == \
        (again.rows, again.distinct_customers, again.distinct_products)
    assert [f.rows for f in fused.written] == [f.rows for f in again.written]

    # independently: each cleaned row, in order, with its identifiers as their tokens
    tokenizer = Tokenizer(keyring)
    for plain, name in zip(cleaned, sorted(made_in_pass), strict=True):
        tokens = made_in_pass[name]
        assert tokens.column("transaction_id").to_pylist() == plain.column("transaction_id").to_pylist()
        assert tokens.column("customer_id").to_pylist() == \
            [tokenizer.encrypt(v, "customer_id") for v in plain.column("customer_id").to_pylist()]
    ids = [t for table in cleaned for t in table.column("transaction_id").to_pylist()]
    assert len(ids) == len(set(ids)) and "T5" not in ids and "TX" not in ids


def test_an_unpublished_pass_leaves_no_layer_behind(landed, keyring):
    result = clean_day(landed, keyring, DAY, RULES, None, tokenize=True)
    result.encrypted.discard()
    assert not landed.fragments(ENCRYPTED, DAY)
    assert not [p for p in (landed.staging / ENCRYPTED).glob(".*") if p.is_dir()]


def test_a_pass_whose_cleaned_layer_lost_to_a_newer_one_publishes_no_tokens(landed, keyring):
    newer = clean_day(landed, keyring, DAY, RULES, None)
    older = DataAreas(landed.root)
    # a run that read the landed rows before ``newer`` did: its cleaned layer is not published,
    # so its tokens (made from those older rows) must not be either
    import sales_platform.core.pipeline as pipeline

    real = pipeline.time.time_ns
    pipeline.time.time_ns = lambda: newer.snapshot_ns - 1
    try:
        stale = clean_day(older, keyring, DAY, RULES, None, tokenize=True)
    finally:
        pipeline.time.time_ns = real
    assert stale.encrypted is None and not stale.written
    assert not landed.fragments(ENCRYPTED, DAY)
    assert not [p for p in (landed.staging / ENCRYPTED).glob(".*") if p.is_dir()]
