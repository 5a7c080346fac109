"""Several days materialized at the same time, in separate processes, on SQLite and PostgreSQL."""

import multiprocessing
from datetime import date

import pytest
from sqlalchemy import func, select

from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import file_ledger
from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, materialize, resources_for
from sales_platform_tests.test_pipeline import drops_in, known_products, matches_oracle

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
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 5, 1),
             4, 2000, GeneratorSettings(seed=5, customers=500, products=50, defect_rate=0.02))
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    assert len(drops) == len(DAYS)
    resources = resources_for(data_dir, backend.url, key)
    materialize(resources, PRODUCTS)
    outcomes = materialize_at_once(data_dir, backend.url, key, DAYS)
    assert all(ok for _, ok, _ in outcomes), outcomes
    # every row of the four files exactly once: the oracle's sales rows and rejects, no more, no less
    expected = matches_oracle(data_dir, backend.url, key, drops, known_products=known)
    assert sorted(d.isoformat() for d in expected.rows_by_day()) == DAYS
    engine = cached_engine(resources["warehouse"].url())
    with engine.connect() as conn:
        ledger = conn.execute(select(file_ledger.c.status, func.count())
                              .group_by(file_ledger.c.status)).all()
    assert dict(ledger) == {"loaded": len(drops)}  # each file landed exactly once


@pytest.mark.slow
def test_two_runs_of_the_same_day_at_once_leave_the_table_as_one_run(data_dir, key, tmp_path):
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 5, 1), 1, 3000,
             GeneratorSettings(seed=9, customers=300, products=40, defect_rate=0.03))
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    resources = resources_for(data_dir, url, key)
    materialize(resources, PRODUCTS)
    outcomes = materialize_at_once(data_dir, url, key, [DAYS[0], DAYS[0]])
    assert all(ok for _, ok, _ in outcomes), outcomes
    # what one run must leave, computed from the file: every sale once, every reject once
    expected = matches_oracle(data_dir, url, key, drops, known_products=known)
    assert [d.isoformat() for d in expected.rows_by_day()] == [DAYS[0]] and expected.rejects
