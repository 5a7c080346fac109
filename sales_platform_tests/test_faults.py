"""Faults survived: a killed run, an unwritable data dir, blob storage down during an export."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import sales, sales_rejects
from sales_platform.resources.azure_blob import AzureBlobStorage
from sales_platform_tests.helpers import PRODUCTS, SALES_CHAIN, count, materialize, resources_for

DAY = "2024-07-01"

RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sales_platform_tests.helpers import SALES_CHAIN, materialize, resources_for
    data_dir, url, key, day = sys.argv[1:5]
    materialize(resources_for(Path(data_dir), url, key), SALES_CHAIN, day)
""")


def write_lock_held(db: Path) -> bool:
    """True while another process holds SQLite's write lock (the loader's transaction)."""
    conn = sqlite3.connect(db, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def rejects_committed(db: Path) -> bool:
    conn = sqlite3.connect(db, timeout=0)  # a plain deferred read: never waits for the writer
    try:
        return conn.execute("SELECT count(*) FROM sales_rejects WHERE stage = 'cleaning'").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def day_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sales)
                            .where(sales.c.sale_date == date.fromisoformat(DAY))).scalar_one()


@pytest.mark.slow
def test_kill_9_mid_load_leaves_old_or_new_content_and_the_next_run_completes(data_dir, key, tmp_path):
    ((_, rows_in_file),) = generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv",
                                    date.fromisoformat(DAY), 1, 150_000,
                                    GeneratorSettings(seed=3, customers=2000, products=50, defect_rate=0.01))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    resources = resources_for(data_dir, url, key)
    engine = cached_engine(resources["warehouse"].url())
    materialize(resources, PRODUCTS)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(data_dir), url, key, DAY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    encrypted = data_dir / "staging" / "encrypted" / DAY
    deadline = time.monotonic() + 240
    # steps run raw -> cleaned -> encrypted -> sales_rejects -> sales: once the day's rejects are
    # committed, the next holder of the write lock is the sales load
    while not (encrypted.exists() and rejects_committed(tmp_path / "w.db")
               and write_lock_held(tmp_path / "w.db")):
        assert proc.poll() is None and time.monotonic() < deadline, "the load never started"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the loader is inside its write transaction
    proc.wait(timeout=30)
    seen = day_count(engine)
    assert seen == 0, f"a killed load must leave the previous content (empty), saw {seen} rows"
    materialize(resources, SALES_CHAIN, DAY)
    loaded = day_count(engine)
    rejected = count(engine, sales_rejects)
    assert loaded + rejected == rows_in_file  # every row exactly once: loaded or rejected
    with engine.connect() as conn:
        distinct = conn.execute(select(func.count(func.distinct(sales.c.transaction_id)))).scalar_one()
    assert distinct == loaded


@pytest.mark.slow
def test_read_only_data_dir_fails_clearly_and_leaves_the_drop_zone_untouched(data_dir, key, tmp_path):
    # A file where the platform's folder should be: fails for root too (permissions would not).
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date.fromisoformat(DAY), 1,
             500, GeneratorSettings(seed=4, customers=50, products=10))
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    materialize(resources, PRODUCTS)
    before = {p.name: p.read_bytes() for p in (data_dir / "incoming").iterdir()}
    staging = data_dir / "staging"
    staging.mkdir(exist_ok=True)
    blocker = staging / "landed"
    blocker.write_text("not a folder")  # the platform cannot create its landing area
    result = materialize(resources, SALES_CHAIN, DAY, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "landed" in str(failure.event_specific_data.error)
    assert {p.name: p.read_bytes() for p in (data_dir / "incoming").iterdir()} == before
    assert count(cached_engine(resources["warehouse"].url()), sales) == 0
    blocker.unlink()
    assert materialize(resources, SALES_CHAIN, DAY).success
    assert count(cached_engine(resources["warehouse"].url()), sales) > 0


@pytest.mark.slow
def test_blob_outage_during_export_then_rerun_completes(azurite, data_dir, key, tmp_path):
    from sales_platform_tests.test_products_and_exports import ROLLUPS, load_days

    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date.fromisoformat(DAY), 1,
             300, GeneratorSettings(seed=6, customers=50, products=10))
    blob = AzureBlobStorage(container="outage", connection_string=azurite.connection_string,
                            max_retries=1, retry_backoff=0.2, connection_timeout=2, read_timeout=2)
    resources = {**resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key), "blob": blob}
    materialize(resources, PRODUCTS)
    load_days(resources, DAY, DAY)
    with azurite.outage():
        result = materialize(resources, ["agg_sales_monthly", "agg_sales_yearly", "agg_exports"],
                             raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = str(failure.event_specific_data.error)
        assert "Azure blob storage" in message and azurite.account_key not in message
    assert not [n for n in blob.list_names("exports/") if n.endswith(".csv")]  # nothing half-written
    assert materialize(resources, ROLLUPS).success
    assert "exports/agg_sales_by_day/2024.csv" in blob.list_names("exports/")
