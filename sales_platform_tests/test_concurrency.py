"""Several days materialized at the same time, in separate processes, on SQLite and PostgreSQL."""

import multiprocessing
from datetime import date

import pytest
from sqlalchemy import func, select

from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects
from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, materialize, resources_for

DAYS = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]


def _materialize_day(data_dir: str, url: str, key: str, day: str, queue) -> None:
    from pathlib import Path

    try:
        result = materialize(resources_for(Path(data_dir), url, key), SALES_CHAIN, day,
                             raise_on_error=False)
        queue.put((day, result.success, ""))
    except Exception as exc:  # reported to the parent, which fails the test with it
        queue.put((day, False, repr(exc)))


def materialize_at_once(data_dir, url: str, key: str, days: list[str]) -> list[tuple]:
    """One process per day, all started together; (day, success, error) per process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_materialize_day, args=(str(data_dir), url, key, day, queue))
             for day in days]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return outcomes


@pytest.mark.slow
def test_four_days_at_once_all_succeed_with_exact_counts(data_dir, backend, key):
    files = generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 5, 1),
                     4, 2000, GeneratorSettings(seed=5, customers=500, products=50, defect_rate=0.02))
    resources = resources_for(data_dir, backend.url, key)
    materialize(resources, PRODUCTS)
    outcomes = materialize_at_once(data_dir, backend.url, key, DAYS)
    assert all(ok for _, ok, _ in outcomes), outcomes
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        loaded = conn.execute(select(func.count()).select_from(sales)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(sales.c.transaction_id)))).scalar_one()
        rejected = conn.execute(select(func.count()).select_from(sales_rejects)).scalar_one()
        ledger = conn.execute(select(file_ledger.c.status, func.count())
                              .group_by(file_ledger.c.status)).all()
    assert loaded == distinct
    assert loaded + rejected == sum(n for _, n in files)
    assert dict(ledger) == {"loaded": 4}  # each file landed exactly once


@pytest.mark.slow
def test_two_runs_of_the_same_day_at_once_leave_the_table_as_one_run(data_dir, key, tmp_path):
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 5, 1), 1, 3000,
             GeneratorSettings(seed=9, customers=300, products=40, defect_rate=0.03))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    resources = resources_for(data_dir, url, key)
    materialize(resources, PRODUCTS)
    outcomes = materialize_at_once(data_dir, url, key, [DAYS[0], DAYS[0]])
    assert all(ok for _, ok, _ in outcomes), outcomes
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        concurrent = conn.execute(select(sales).order_by(sales.c.transaction_id)).all()
        rejects = conn.execute(select(func.count()).select_from(sales_rejects)).scalar_one()
    materialize(resources, SALES_CHAIN, DAYS[0])  # one more, alone: nothing may change
    with engine.connect() as conn:
        alone = conn.execute(select(sales).order_by(sales.c.transaction_id)).all()
        rejects_alone = conn.execute(select(func.count()).select_from(sales_rejects)).scalar_one()
    strip = [tuple(r)[:-1] for r in concurrent]  # loaded_at aside
    assert strip == [tuple(r)[:-1] for r in alone] and rejects == rejects_alone
