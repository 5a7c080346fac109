"""The SalesLoader round trip against a real SQL Server or Azure SQL database.

Runs only when SALES_PLATFORM_TEST_MSSQL_URL holds an SQLAlchemy URL, e.g.
``mssql+pyodbc://sa:<password>@localhost:1433/sales_test?driver=ODBC+Driver+18+for+SQL+Server
&TrustServerCertificate=yes``. No SQL Server can run on the CI machine, so CI skips it too.
The test writes one far-future day (2031-07-15) and deletes it again.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

MSSQL_URL = os.environ.get("SALES_PLATFORM_TEST_MSSQL_URL")
if not MSSQL_URL:
    pytest.skip("SALES_PLATFORM_TEST_MSSQL_URL not set: no SQL Server on this machine",
                allow_module_level=True)

from sales_platform.core.warehouse.engine import make_engine  # noqa: E402
from sales_platform.core.warehouse.loading import SalesLoader  # noqa: E402
from sales_platform.core.warehouse.retry import run_with_retries  # noqa: E402
from sales_platform.core.warehouse.tables import sales  # noqa: E402

DAY = date(2031, 7, 15)


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    engine = make_engine(MSSQL_URL)
    assert engine.dialect.name == "mssql", "SALES_PLATFORM_TEST_MSSQL_URL must point at SQL Server"
    _clear_day(engine)
    yield engine
    _clear_day(engine)
    engine.dispose()


def _clear_day(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(sales).where(sales.c.sale_date == DAY))


def _frame(ids: list[str], quantities: list[int]) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": ids,
        "customer_id": [f"cust-token-{t}" for t in ids],  # content follows the id, not the position
        "product_id": ["prod-token-1"] * len(ids),
        "quantity": quantities,
        "sale_ts": pd.to_datetime([f"{DAY} 10:00:05.250"] * len(ids)),
        "source_file": ["sales_20310715.csv"] * len(ids),
    })


def _load(loader: SalesLoader, frames: list[pd.DataFrame]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas 2.x: Series.dt.to_pydatetime
        return run_with_retries(lambda: loader.load_day(DAY, iter(frames), datetime.now()))


def _day_rows(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sales.c.transaction_id, sales.c.quantity, sales.c.sale_ts)
                            .where(sales.c.sale_date == DAY)).all()
    return {r.transaction_id: (r.quantity, r.sale_ts) for r in rows}


def test_load_day_inserts_then_leaves_unchanged_then_updates_then_deletes(engine: sa.Engine):
    loader = SalesLoader(engine)
    ids = [f"it-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    first = [_frame(ids[:2], [1, 2]), _frame(ids[2:], [3])]  # two batches, as parquet fragments

    stats = _load(loader, first)
    assert (stats.staged, stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (3, 3, 0, 0, 0)
    rows = _day_rows(engine)
    assert {k: q for k, (q, _) in rows.items()} == dict(zip(ids, [1, 2, 3], strict=True))
    assert rows[ids[0]][1] == datetime(2031, 7, 15, 10, 0, 5)  # floored to the second

    stats = _load(loader, first)  # same files again: nothing to write
    assert (stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (0, 0, 3, 0)

    stats = _load(loader, [_frame(ids, [1, 20, 3])])
    assert (stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (0, 1, 2, 0)
    assert _day_rows(engine)[ids[1]][0] == 20

    stats = _load(loader, [_frame(ids[:2], [1, 20])])  # a row no longer in any file
    assert (stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (0, 0, 2, 1)
    assert sorted(_day_rows(engine)) == sorted(ids[:2])
