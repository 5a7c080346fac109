"""The SQLite load's scratch file filled during the encryption (``core/warehouse/prefill.py``).

The prefilled file must hold exactly the rows the load would have read back from the encrypted
layer, be used only while that layer is the one it was made from, and leave nothing behind when
the fill or the encryption fails. Expectations come from the inputs (plain Python, the oracle).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

import sales_platform.defs.sales.assets as sales_assets
from sales_platform.core.pipeline import ENCRYPTED, MANIFEST, manifest_ns
from sales_platform.core.store import DataAreas, files_identity
from sales_platform.core.warehouse import prefill
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.prefill import Prefills, ScratchFeed, encrypt_with_prefill
from sales_platform.core.warehouse.sqlite_scratch import PREFIX, TABLE
from sales_platform.core.warehouse.tables import sales
from sales_platform.partitions import partition_range_tags
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    materializations_of,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import Drop


def _chunk(ids: list[str], stamps: list[datetime], extra: dict[str, list] | None = None) -> pa.Table:
    n = len(ids)
    columns = {"transaction_id": ids, "customer_id": [f"tok-c-{i}" for i in ids],
               "product_id": ["tok-p"] * n, "quantity": pa.array(range(1, n + 1), pa.int64()),
               "sale_ts": pa.array(stamps, pa.timestamp("ns", tz="UTC")),
               "source_file": ["f.csv"] * n, "source_sha256": ["ab" * 32] * n,
               "source_row": pa.array(range(2, n + 2), pa.int64())}
    return pa.table({**columns, **(extra or {})})


def _scratch_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {TABLE}").fetchall()


def _leftovers(temp_dir: Path) -> list[Path]:
    return list(temp_dir.glob(f"{PREFIX}*"))


def test_a_feed_holds_each_row_in_the_staging_formats_in_order(tmp_path):
    stamps = [datetime(2024, 3, 1, 23, 59, 59, 900000, tzinfo=UTC), datetime(2024, 3, 2, 0, 0, 1, tzinfo=UTC)]
    chunks = [_chunk(["A", "B"], stamps, {"store": ["S1", None]}),
              _chunk([], [], {"store": pa.array([], pa.string())}),
              _chunk(["C"], stamps[1:], {"store": ["S3"]})]
    feed = ScratchFeed(temp_dir=str(tmp_path))
    for chunk in chunks:
        feed.put(chunk)
    scratch = feed.finish()
    assert scratch is not None and feed.extras == ("store",)
    with scratch:
        rows = _scratch_rows(scratch.path)
    sha = "ab" * 32  # sub-second parts are cut, never rounded up into the next second or day
    assert rows == [("A", "tok-c-A", "tok-p", 1, "2024-03-01", "2024-03-01 23:59:59", "f.csv", sha, 2, "S1"),
                    ("B", "tok-c-B", "tok-p", 2, "2024-03-02", "2024-03-02 00:00:01", "f.csv", sha, 3, None),
                    ("C", "tok-c-C", "tok-p", 1, "2024-03-02", "2024-03-02 00:00:01", "f.csv", sha, 2, "S3")]
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("fault", ["unconvertible chunk", "other extra columns"])
def test_a_failing_fill_leaves_nothing_and_never_stops_the_encryption(tmp_path, fault):
    stamp = [datetime(2024, 3, 1, 10, tzinfo=UTC)]
    second = (_chunk(["B"], stamp).drop_columns(["sale_ts"]) if fault == "unconvertible chunk"
              else _chunk(["B"], stamp, {"note": ["x"]}))
    feed = ScratchFeed(temp_dir=str(tmp_path), depth=1)
    for chunk in [_chunk(["A"], stamp), second, *(_chunk([f"C{i}"], stamp) for i in range(5))]:
        feed.put(chunk)  # returns although the filler has stopped (it would block on a full queue)
    assert feed.finish() is None and feed.error is not None
    assert not _leftovers(tmp_path)


def test_an_abandoned_feed_removes_its_file(tmp_path):
    feed = ScratchFeed(temp_dir=str(tmp_path))
    feed.put(_chunk(["A"], [datetime(2024, 3, 1, tzinfo=UTC)]))
    feed.abandon()
    assert not _leftovers(tmp_path)


def _layer(folder: Path, content: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    path.write_text(content)
    return [path]


def _filled(prefills: Prefills, size: int, ids: list[str]) -> ScratchFeed | None:
    feed = prefills.start(size)
    if feed is not None:
        feed.put(_chunk(ids, [datetime(2024, 3, 1, tzinfo=UTC)] * len(ids)))
    return feed


def test_a_prefilled_file_is_used_only_for_the_layer_it_was_made_from(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    with Prefills(budget_bytes=10, temp_dir=str(temp), min_bytes=0) as prefills:
        layer = _layer(tmp_path / "d1", "v1")
        prefills.settle("d1", _filled(prefills, 5, ["A"]), files_identity(layer))
        assert prefills.take("d1", layer, ["store"]) is None  # other columns
        assert not _leftovers(temp) and prefills.refused == 1

        prefills.settle("d1", _filled(prefills, 5, ["A"]), files_identity(layer))
        shutil.rmtree(tmp_path / "d1")  # republished: same name, same size, new file
        replaced = _layer(tmp_path / "d1", "v2")
        assert prefills.take("d1", replaced, []) is None
        assert not _leftovers(temp)

        prefills.settle("d1", _filled(prefills, 5, ["A"]), files_identity(replaced))
        with prefills.take("d1", replaced, []) as scratch:
            assert [r[0] for r in _scratch_rows(scratch.path)] == ["A"]
        assert prefills.take("d1", replaced, []) is None  # taken once (a retry reads)
        assert prefills.taken == 1

        prefills.settle("d2", _filled(prefills, 5, ["B"]), ())  # not published: dropped
        assert not _leftovers(temp)


def test_the_budget_bounds_the_files_held_and_the_first_day_always_has_room(tmp_path):
    assert Prefills(budget_bytes=10, min_bytes=3).start(2) is None  # too small to gain
    with Prefills(budget_bytes=10, temp_dir=str(tmp_path), min_bytes=0) as prefills:
        layer = _layer(tmp_path / "d1", "x")
        identity = files_identity(layer)
        big = _filled(prefills, 50, ["A"])  # larger than the budget, but nothing is held
        assert big is not None
        assert prefills.start(1) is None  # the big day holds everything
        prefills.settle("d1", big, identity)
        assert prefills.start(1) is None
        prefills.take("d1", layer, []).remove()  # the load took it: room again
        small = _filled(prefills, 6, ["B"])
        assert small is not None and prefills.start(5) is None and prefills.start(4) is not None
        prefills.settle("d2", small, identity)
    assert not _leftovers(tmp_path)  # closing removed the files no load took


def test_a_failed_encryption_leaves_no_file_and_frees_its_budget(tmp_path):
    class Encrypted:
        identity = ()

    def encrypt(on_chunk):
        on_chunk(_chunk(["A"], [datetime(2024, 3, 1, tzinfo=UTC)]))
        raise OSError("disk full while encrypting")

    with Prefills(budget_bytes=10, temp_dir=str(tmp_path), min_bytes=0) as prefills:
        with pytest.raises(OSError, match="disk full"):
            encrypt_with_prefill(prefills, "d1", 8, encrypt)
        assert not _leftovers(tmp_path)
        assert encrypt_with_prefill(prefills, "d2", 8, lambda on_chunk: Encrypted()).identity == ()
        assert encrypt_with_prefill(None, "d3", 8, lambda on_chunk: on_chunk) is None


# --- the step: prefilled loads give the oracle's tables, and a replaced layer is loaded as replaced ---


@pytest.fixture(autouse=True)
def small_days_prefilled(monkeypatch):
    """The tests' days are small: prefill them too (the platform leaves days under 1 MiB of
    cleaned layer to their load)."""
    monkeypatch.setattr(prefill, "MIN_DAY_BYTES", 0)

HEADER = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]
DAYS = ["2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03"]


def _hostile_drops(data_dir: Path) -> None:
    incoming = data_dir / "incoming"
    write_csv(incoming / "day one.csv", [
        ["T1", "c1", "P1", "2", "2024-03-01T10:00:00"],
        ["T2", "c2", "P2", "1", "2024-03-01T23:30:00-02:00"],  # 2024-03-02 in UTC
        ["T3", "c3", "P1", "3", "2024-03-01T00:00:00+01:00"],  # 2024-02-29 in UTC
        ["T3", "c3", "P1", "3", "2024-03-01T00:00:00+01:00"],  # identical duplicate
        ["T4", "c4", "P9", "1", "2024-03-01T11:00:00"],        # unknown product
        ["T5", "c5", "P1", "0", "2024-03-01T12:00:00"],        # not positive
    ])
    write_csv(incoming / "day two+store.csv", [
        ["T6", "c6", "P1", "4", "2024-03-02T08:00:00", "S-1", "ann@example.com"],
        ["T7", "c7", "P2", "5", "2024-03-02T09:00:00", "", "bob@example.com"],
        ["T1", "c1", "P1", "2", "2024-03-02T10:00:00", "S-2", ""],  # T1 on a second day
    ], header=[*HEADER, "store_id", "email"])
    write_csv(incoming / "day three.csv", [[f"R{i}", f"c{i % 7}", "P1", str(1 + i % 5),
                                            f"2024-03-03T{i % 24:02d}:00:00Z"] for i in range(40)])


def _sales_table(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(sales).order_by(sales.c.transaction_id)).mappings().all()
    return [tuple((k, v) for k, v in sorted(r.items()) if k != "loaded_at") for r in rows]


def _run_range(data_dir: Path, url: str, key: str, instance: dg.DagsterInstance | None = None,
               **platform) -> dg.ExecuteInProcessResult:
    write_catalogue(data_dir, ["P1", "P2"])
    resources = resources_for(data_dir, url, key, max_reject_rate=1.0, **platform)
    materialize(resources, PRODUCTS)
    return dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                          instance=instance, tags=partition_range_tags(DAYS[0], DAYS[-1]))


def _days_prefilled(result: dg.ExecuteInProcessResult) -> int:
    return materializations_of(result, "sales")[0].metadata["days_prefilled"].value


def _matches_oracle(data_dir: Path, url: str, key: str, drops: list[Drop]) -> None:
    harness = Harness(data_dir, url, key)
    harness.drops.extend(drops)
    assert_matches_oracle(harness, known_products={"P1", "P2"})


def test_prefilled_loads_and_loads_read_back_give_the_same_tables_as_the_oracle(tmp_path, key,
                                                                              monkeypatch):
    """The same hostile drops (offsets moving rows across days, duplicates, an id on two days, a
    file with extra and sensitive columns, rejects) through the step with and without the prefill."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the load files go
    tables = {}
    for budget in (16, 0):
        data_dir = tmp_path / f"prefill-{budget}"
        _hostile_drops(data_dir)
        drops = [Drop(p.name, p.read_bytes()) for p in sorted((data_dir / "incoming").iterdir())]
        url = f"sqlite:///{tmp_path / f'w-{budget}.db'}"
        result = _run_range(data_dir, url, key, load_prefill_mb=budget)
        prefilled = _days_prefilled(result)
        assert prefilled >= 2 if budget else prefilled == 0  # 02-29 and 03-03 have one layout
        _matches_oracle(data_dir, url, key, drops)
        tables[budget] = _sales_table(cached_engine(url))
    assert tables[16] == tables[0]
    assert not _leftovers(temp)


def _republished_after_encryption(monkeypatch, data_dir: Path, which: str,
                                  first_quantity: int | None = None) -> None:
    """Once this run has encrypted ``which``, another writer publishes its encrypted layer again
    (new files; with ``first_quantity``, the first row's quantity changed)."""
    real = sales_assets.encrypt_with_prefill

    def then_replaced(prefills, day, size, encrypt):
        result = real(prefills, day, size, encrypt)
        if day != which:
            return result
        areas = DataAreas(data_dir.resolve())
        (fragment,) = areas.fragments(ENCRYPTED, day)
        table = pq.read_table(fragment)
        if first_quantity is not None:
            quantities = [first_quantity, *table.column("quantity").to_pylist()[1:]]
            table = table.set_column(table.column_names.index("quantity"), "quantity",
                                     pa.array(quantities, table.column("quantity").type))
        tmp = areas.replace_layer(ENCRYPTED, day)
        pq.write_table(table, tmp / fragment.name)
        shutil.copyfile(fragment.parent / MANIFEST, tmp / MANIFEST)
        assert areas.publish_layer(ENCRYPTED, day, tmp, version=manifest_ns)
        return result

    monkeypatch.setattr(sales_assets, "encrypt_with_prefill", then_replaced)


def test_a_layer_replaced_between_encryption_and_load_is_loaded_as_replaced(data_dir, tmp_path, key,
                                                                           monkeypatch):
    """Another writer republishes the day's encrypted layer (here with one quantity changed) after
    this run encrypted it: the load must take the layer as it now is, not the prefilled rows."""
    write_csv(data_dir / "incoming" / "day.csv",
              [[f"T{i}", f"c{i}", "P1", "1", "2024-03-03T10:00:00"] for i in range(10)])
    _republished_after_encryption(monkeypatch, data_dir, "2024-03-03", first_quantity=999)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = _run_range(data_dir, url, key)
    assert _days_prefilled(result) == 0
    with cached_engine(url).connect() as conn:
        quantities = dict(conn.execute(select(sales.c.transaction_id, sales.c.quantity)).all())
    assert quantities == {"T0": 999, **{f"T{i}": 1 for i in range(1, 10)}}


def test_the_budget_is_set_from_the_environment_and_bad_values_name_the_variable(monkeypatch, tmp_path):
    from sales_platform.core.settings import SettingError
    from sales_platform.resources.factory import platform_resource

    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SALES_PLATFORM_LOAD_PREFILL_MB", "0")
    assert platform_resource().load_prefill_mb == 0
    monkeypatch.setenv("SALES_PLATFORM_LOAD_PREFILL_MB", "-5")
    with pytest.raises(SettingError, match="SALES_PLATFORM_LOAD_PREFILL_MB"):
        platform_resource()
    monkeypatch.delenv("SALES_PLATFORM_LOAD_PREFILL_MB")
    assert platform_resource().load_prefill_mb == 16


def test_a_load_out_of_temp_space_drops_the_files_held_ahead_and_loads_every_day(
        data_dir, tmp_path, key, monkeypatch):
    """A load that fills its own file (the range's empty first day; 03-01, whose prefill is
    refused because its layer was republished) finds the temp space full beside the files held
    for later days: the held files are dropped and the load tried again; every day loads."""
    from sales_platform.core.warehouse import loading

    for d in ("2024-03-01", "2024-03-02", "2024-03-03"):
        write_csv(data_dir / "incoming" / f"{d}.csv",
                  [[f"{d}-{i}", f"c{i}", "P1", "2", f"{d}T10:00:00"] for i in range(20)])
    _republished_after_encryption(monkeypatch, data_dir, "2024-03-01")
    real_scratch, failures = loading.SqliteScratch, []

    def full_once(*args, **kwargs):  # the load's own fill, at the first attempt only
        if not failures:
            failures.append(1)
            raise OSError("cannot write the load's scratch file in /tmp (TMPDIR): disk full")
        return real_scratch(*args, **kwargs)

    monkeypatch.setattr(loading, "SqliteScratch", full_once)
    url, instance = f"sqlite:///{tmp_path / 'w.db'}", dg.DagsterInstance.ephemeral()
    result = _run_range(data_dir, url, key, instance)
    assert failures and _days_prefilled(result) == 0
    with cached_engine(url).connect() as conn:
        loaded = sorted(conn.execute(select(sales.c.transaction_id)).scalars())
    assert loaded == sorted(f"{d}-{i}" for d in ("2024-03-01", "2024-03-02", "2024-03-03")
                            for i in range(20))
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("the load's file did not fit in the temp space" in m for m in logged)


def test_too_little_temp_space_leaves_the_day_to_its_load_and_says_so(tmp_path, monkeypatch):
    free = {"bytes": 10 << 30}
    monkeypatch.setattr(prefill.shutil, "disk_usage",
                        lambda folder: shutil._ntuple_diskusage(100 << 30, 0, free["bytes"]))
    with Prefills(budget_bytes=1 << 30, temp_dir=str(tmp_path), min_bytes=0) as prefills:
        size = 1 << 20  # ~40 MB of load file, twice that asked for
        feed = prefills.start(size)
        assert feed is not None
        prefills.give_up(feed)
        free["bytes"] = 2 * size * prefill.SCRATCH_BYTES_PER_CLEANED_BYTE - 1
        assert prefills.start(size) is None
        assert prefills.notes and "MB free in" in prefills.notes[0]
    assert not _leftovers(tmp_path)


class _Interrupted(BaseException):
    """What Dagster raises in the step's thread when a run is terminated."""


def test_an_interruption_while_a_fill_finishes_stops_its_thread_and_leaves_no_file(tmp_path,
                                                                                   monkeypatch):
    import threading

    real_finish = ScratchFeed.finish

    def interrupted(self):
        self.put(_chunk(["late"], [datetime(2024, 3, 1, tzinfo=UTC)]))
        raise _Interrupted

    monkeypatch.setattr(ScratchFeed, "finish", interrupted)

    class Encrypted:
        identity = (("part-00000.parquet", 1, 1, 1),)

    def encrypt(on_chunk):
        on_chunk(_chunk(["A"], [datetime(2024, 3, 1, tzinfo=UTC)]))
        return Encrypted()

    with Prefills(budget_bytes=10, temp_dir=str(tmp_path), min_bytes=0) as prefills:
        with pytest.raises(_Interrupted):
            encrypt_with_prefill(prefills, "d1", 5, encrypt)
        monkeypatch.setattr(ScratchFeed, "finish", real_finish)
        assert prefills.start(10) is not None  # the interrupted feed's budget came back
    assert not _leftovers(tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "sales-load-prefill"]
