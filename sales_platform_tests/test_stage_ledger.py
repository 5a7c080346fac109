"""The hot-path stages in the data-object ledger, and their versions from code (issue 17 item 5).

Real materializations of raw_sales -> cleaned_sales -> encrypted_sales on SQLite and PostgreSQL.
Expected ledger rows come from the files on disk (paths, sizes, sha256 recomputed here) and from the
CSV rows this file writes (rows per day, in plain Python), never from the platform's own counts.
"""

import hashlib
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import event, select

from sales_platform.core import codeversion
from sales_platform.core.codeversion import code_version
from sales_platform.core.intake import Intake
from sales_platform.core.pipeline import clean_day, encrypt_day
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import data_models, data_objects, file_ledger
from sales_platform.definitions import defs
from sales_platform.versioning import stage_code_version
from sales_platform_tests.helpers import (
    PRODUCTS,
    all_assets,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)

FIRST, LAST = "2024-03-01", "2024-03-02"
CATALOGUE = ["P1", "P2"]
# (transaction, customer, product, quantity, timestamp)
ROWS = [
    ["T1", "C1", "P1", "2", "2024-03-01T09:00:00"],
    ["T2", "C2", "P2", "1", "2024-03-01T10:00:00"],
    ["T3", "C3", "P9", "1", "2024-03-01T11:00:00"],  # unknown product: rejected by cleaning
    ["T4", "C1", "P2", "5", "2024-03-02T08:00:00"],
    ["T5", "C4", "P1", "1", "2024-03-02T09:30:00"],
    ["T6", "C5", "P1", "1", "not a time"],  # no sale day: rejected at landing, in no fragment
]
STAGES = ["raw_sales", "cleaned_sales", "encrypted_sales"]


def per_day(rows: list[list[str]]) -> Counter[str]:
    return Counter(r[4][:10] for r in rows if r[4][:4].isdigit())


LANDED = per_day(ROWS)
CLEAN = per_day([r for r in ROWS if r[2] in CATALOGUE])
REJECTED_BY_CLEANING = per_day([r for r in ROWS if r[2] not in CATALOGUE])


def on_disk(folder: Path) -> dict[str, tuple[str, int, str]]:
    """location -> (sha256, bytes, day) of the published data files under ``folder``/<day>/."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.parent.name)
            for p in sorted(folder.glob("*/*")) if p.is_file() and not p.name.startswith(".")
            and p.name.endswith((".parquet", ".parquet.sealed"))}


def ledger(engine, stage: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(data_objects).where(data_objects.c.stage == stage)).all()


def rows_by_day(rows: list, under: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in rows:
        if r.location.startswith(str(under)):
            out[r.partition_key] += r.rows
    return out


def test_hot_path_artifacts_are_the_files_on_disk_with_their_hashes(backend, data_dir, key):
    write_catalogue(data_dir, CATALOGUE)
    write_csv(data_dir / "incoming" / "sales.csv", ROWS)
    resources = resources_for(data_dir, backend.url, key, max_reject_rate=0.5)
    materialize(resources, PRODUCTS)
    engine = cached_engine(resources["warehouse"].url())
    inserts: Counter[str] = Counter()

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DATA_OBJECTS"):
            inserts[statement] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        result = dg.materialize(all_assets(), selection=STAGES, resources=resources, tags={
            "dagster/asset_partition_range_start": FIRST,
            "dagster/asset_partition_range_end": LAST})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert result.success
    run_id = result.run_id
    graph = defs.resolve_asset_graph()
    version = {s: graph.get(dg.AssetKey(s)).code_version for s in STAGES}
    staging = data_dir / "staging"

    # landed fragments: one row per file on disk, hashes recomputed, rows per day from the CSV
    fragments = ledger(engine, "raw_sales")
    disk = on_disk(staging / "landed")
    assert len(disk) >= 2
    assert {r.location: (r.sha256, r.bytes, r.partition_key) for r in fragments} == disk
    assert len(fragments) == len(disk)
    assert rows_by_day(fragments, staging / "landed") == LANDED
    assert {(r.kind, r.code_version, r.run_id) for r in fragments} == {
        ("fragment", version["raw_sales"], run_id)}
    with engine.connect() as conn:  # the file_ledger row names the same stage version
        assert conn.execute(select(file_ledger.c.code_version)).scalars().all() == [version["raw_sales"]]

    # cleaned (sealed) and rejects layers of cleaned_sales, encrypted layer of encrypted_sales
    cleaned = ledger(engine, "cleaned_sales")
    disk = {**on_disk(staging / "cleaned"), **on_disk(staging / "rejects")}
    assert {r.location: (r.sha256, r.bytes, r.partition_key) for r in cleaned} == disk
    assert rows_by_day(cleaned, staging / "cleaned") == CLEAN
    assert rows_by_day(cleaned, staging / "rejects") == REJECTED_BY_CLEANING
    encrypted = ledger(engine, "encrypted_sales")
    assert {r.location: (r.sha256, r.bytes, r.partition_key) for r in encrypted} == \
        on_disk(staging / "encrypted")
    assert rows_by_day(encrypted, staging / "encrypted") == CLEAN
    for stage, rows in (("cleaned_sales", cleaned), ("encrypted_sales", encrypted)):
        assert {(r.kind, r.code_version, r.run_id) for r in rows} == {("layer", version[stage], run_id)}

    # one batched insert per stage run (landing: one per landed file, here one file)
    assert sum(inserts.values()) == len(STAGES)
    with engine.connect() as conn:
        models = set(conn.execute(select(data_models.c.stage, data_models.c.code_version)).all())
    assert {(s, version[s]) for s in STAGES} <= models


# --- versions from code ---------------------------------------------------------------------------

def stage_fn(name: str):
    """The code an asset's version is taken from: its stage in the sales_pipeline step, else its op."""
    from sales_platform.defs.sales.assets import STAGES

    if name in STAGES:
        return STAGES[name]
    return defs.resolve_asset_graph().assets_def_for_key(dg.AssetKey(name)).op.compute_fn.decorated_fn


def versions(monkeypatch, edited: object | None) -> dict[str, str]:
    """Each hot-path stage's version with ``edited``'s source text changed (None: as it is)."""
    original = codeversion._source

    def source(obj):
        text = original(obj)
        return text + "\n# an edit" if obj is edited else text

    monkeypatch.setattr(codeversion, "_source", source)
    try:
        covers = {"raw_sales": (Intake,)}
        return {s: stage_code_version(stage_fn(s), covers.get(s, ()))
                for s in ("raw_sales", "cleaned_sales", "encrypted_sales", "sales", "lineage_export")}
    finally:
        monkeypatch.setattr(codeversion, "_source", original)


def test_hot_path_versions_come_from_code_and_follow_an_edit_of_what_each_stage_runs(monkeypatch):
    graph = defs.resolve_asset_graph()
    base = versions(monkeypatch, None)
    for stage, value in base.items():
        assert value == graph.get(dg.AssetKey(stage)).code_version, stage
        assert value.startswith(codeversion.PREFIX), stage  # no hand-edited string left
    assert base["cleaned_sales"] == code_version(stage_fn("cleaned_sales"))

    from sales_platform.core import landing, report
    from sales_platform.core.warehouse.loading import SalesLoader

    # (what is edited, the stages whose version must change); every other stage keeps its own
    cases = [
        (clean_day, {"cleaned_sales"}),
        (encrypt_day, {"encrypted_sales"}),
        (landing.Lander, {"raw_sales"}),  # reached through platform.intake(): the covers
        (SalesLoader, {"sales"}),
        (stage_fn("lineage_export"), {"lineage_export"}),
        (report.render_charts, set()),  # sales_report's code: no hot-path stage changes
    ]
    for edited, changed in cases:
        after = versions(monkeypatch, edited)
        assert {s for s in base if after[s] != base[s]} == changed, edited


@pytest.mark.parametrize("stage", ["raw_sales", "landed_files"])
def test_landing_stages_cover_the_intake(stage):
    graph = defs.resolve_asset_graph()
    fn = stage_fn(stage)
    assert graph.get(dg.AssetKey(stage)).code_version == stage_code_version(fn, (Intake,))
    assert graph.get(dg.AssetKey(stage)).code_version != code_version(fn)


PROBE = '''
from collections import namedtuple

import dagster as dg

Limits = namedtuple("Limits", "low high")
LIMITS = Limits({low}, 10)
KEY = dg.AssetKey("sales")  # a tuple-like record that refuses iteration


def stage():
    return LIMITS.low, KEY
'''


def test_a_stage_version_hashes_a_constant_record_and_skips_one_that_refuses_iteration(tmp_path):
    import importlib.util
    import sys

    name = "sales_platform._probe_code_version"
    versions = []
    try:
        for low in (1, 2):
            path = tmp_path / f"v{low}" / "probe.py"
            path.parent.mkdir()
            path.write_text(PROBE.format(low=low))
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            versions.append(code_version(module.stage))
    finally:
        sys.modules.pop(name, None)
    assert versions[0] != versions[1]  # the namedtuple constant's value is part of the version
