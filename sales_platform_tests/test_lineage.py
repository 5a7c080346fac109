"""Lineage for governance: Atlas exports -> tables, our asset graph -> Atlas, the lineage_export asset.

Expected outputs are golden files, written once and reviewed by eye, never produced by the test:
``fixtures/lineage/atlas_export/`` holds the tables of ``fixtures/atlas_export.json``, and
``fixtures/lineage/platform/`` what lineage_export writes for this code location's asset graph
(``atlas_entities.json`` without the asset descriptions, which are checked against the asset specs).
When the asset graph or its lineage metadata changes on purpose, regenerate the platform files from a
lineage_export run, review the diff, and check them in.
"""

import json
import zipfile
from itertools import product
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from sales_platform.core.crypto import generate_key
from sales_platform.definitions import defs
from sales_platform.defs.governance.assets import BLOB_NAMES, lineage_export
from sales_platform.defs.governance.graph import lineage_nodes_from_defs
from sales_platform.defs.governance.lineage import (
    DATASET_COLUMNS,
    EDGE_COLUMNS,
    PROCESS_COLUMNS,
    READS,
    WRITES,
    LineageNode,
    atlas_entities,
    atlas_tables_command,
    consolidate,
)
from sales_platform.resources.blob import LocalBlobStorage
from sales_platform_tests.helpers import resources_for

FIXTURE = Path(__file__).parent / "fixtures" / "atlas_export.json"
GOLDEN = Path(__file__).parent / "fixtures" / "lineage"
GOLDEN_EXPORT, GOLDEN_PLATFORM = GOLDEN / "atlas_export", GOLDEN / "platform"
TABLE_NAMES = ("datasets.csv", "processes.csv", "lineage_edges.csv")
FILE_NAMES = (*TABLE_NAMES, "lineage_summary.md")
ORDERS, DAILY = "sales_db.orders@prod", "sales_db.orders_daily@prod"
LANDING, RETURNS = "hdfs://namenode:8020/landing/orders", "hdfs://namenode:8020/landing/returns"
ERP = "erp.public.orders_daily@erp-pg"
HIVE_QN = "sales_db.orders_daily@prod:1700000400000"
SPARK_QN = "application_1700000000000_0042@prod"
SQOOP_QN = "sqoop export --table orders_daily --hcatalog-table sales_db.orders_daily@prod"


def _export() -> dict:
    return json.loads(FIXTURE.read_text())


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.itertuples(index=False)]


def _edges(tables) -> set[tuple[str, str, str]]:
    return {(s, p, t) for s, p, t, _ in _rows(tables.edges)}


def _golden(folder: Path, name: str) -> pd.DataFrame:
    """A golden table, every value as the text in the file."""
    return pd.read_csv(folder / name, dtype=str, keep_default_na=False)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(str).reset_index(drop=True)


def _without_descriptions(entities: dict) -> dict:
    return {**entities, "entities": [
        {**e, "attributes": {k: v for k, v in e["attributes"].items() if k != "description"}}
        for e in entities["entities"]]}


# --- any Atlas export -> tables ----------------------------------------------------------------


def test_consolidate_atlas_export_with_guid_and_unique_attribute_refs():
    tables = consolidate(_export())
    hive_name = _export()["entities"][1]["attributes"]["name"]

    # Referred entities nothing points at (hive_db, hive_column) are not datasets; a dataset only
    # referenced by qualifiedName (landing/returns) is kept, without a guid.
    assert _rows(tables.datasets) == [
        ("b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d07", "rdbms_table", ERP, "orders_daily"),
        ("a8b9c0d1-e2f3-4a4b-9c5d-6e7f8a9b0c09", "fs_path", LANDING, "/landing/orders"),
        ("", "fs_path", RETURNS, RETURNS),
        ("3f1c9a2e-0b7d-4c1e-9a51-2d7f6b8e4a01", "hive_table", ORDERS, "orders"),
        ("d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e504", "hive_table", DAILY, "orders_daily"),
    ]
    assert _rows(tables.processes) == [
        ("5e8f1a2b-9c3d-4e7f-8a1b-2c3d4e5f6a03", "ingest_orders", SPARK_QN, 2, 1, "spark_process"),
        ("7a2d5e1c-4f3b-4a8e-b6d9-0c1e2f3a4b02", hive_name, HIVE_QN, 1, 1, "hive_process"),
        ("0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c05", "sqoop export orders_daily", SQOOP_QN, 1, 1,
         "sqoop_process"),
    ]
    assert _rows(tables.edges) == [
        (LANDING, "ingest_orders", ORDERS, SPARK_QN),
        (RETURNS, "ingest_orders", ORDERS, SPARK_QN),
        (ORDERS, hive_name, DAILY, HIVE_QN),
        (DAILY, "sqoop export orders_daily", ERP, SQOOP_QN),  # from relationshipAttributes
    ]
    assert list(tables.datasets.columns) == DATASET_COLUMNS
    assert list(tables.processes.columns) == PROCESS_COLUMNS
    assert list(tables.edges.columns) == EDGE_COLUMNS


def test_consolidate_accepts_bare_lists_and_entity_documents():
    export = _export()
    edges, processes = _golden(GOLDEN_EXPORT, "lineage_edges.csv"), _golden(GOLDEN_EXPORT, "processes.csv")
    referred = list(export["referredEntities"].values())

    bare = consolidate(export["entities"] + referred)
    assert _as_text(bare.edges).equals(edges)
    assert _as_text(bare.processes).equals(processes)
    # In a bare list every entity is primary, so the database and the column are listed too.
    assert set(bare.datasets["qualified_name"]) == (
        set(_golden(GOLDEN_EXPORT, "datasets.csv")["qualified_name"])
        | {"sales_db@prod", "sales_db.orders.amount@prod"})

    documents = [{"entity": e, "referredEntities": export["referredEntities"]}
                 for e in export["entities"]]
    assert _as_text(consolidate(documents).edges).equals(edges)


def test_consolidate_refuses_json_that_holds_no_entities():
    with pytest.raises(ValueError, match="not an Atlas entity export"):
        consolidate({"baseEntityGuid": "x", "guidEntityMap": {}, "relations": []})


def test_atlas_tables_command_writes_csvs_and_summary(tmp_path: Path):
    written = atlas_tables_command(FIXTURE, tmp_path / "out")
    assert [p.name for p in written] == list(FILE_NAMES)
    for path in written:
        assert path.read_bytes() == (GOLDEN_EXPORT / path.name).read_bytes(), path.name
    assert written[0].read_text().splitlines()[0] == ",".join(DATASET_COLUMNS)
    assert written[1].read_text().splitlines()[0] == ",".join(PROCESS_COLUMNS)
    assert written[2].read_text().splitlines()[0] == ",".join(EDGE_COLUMNS)
    summary = written[3].read_text()
    assert "- datasets: 5" in summary and "- processes: 3" in summary
    assert "- lineage edges: 4" in summary
    assert "| `ingest_orders` | `/landing/orders`, `hdfs://namenode:8020/landing/returns` | " \
           "`orders` |" in summary


def test_atlas_tables_command_reads_an_atlas_export_zip(tmp_path: Path):
    export = _export()
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("atlas-export-info.json", json.dumps({"operation": "EXPORT"}))
        z.writestr("atlas-typesdef.json", json.dumps({"entityDefs": []}))
        for entity in export["entities"] + list(export["referredEntities"].values()):
            z.writestr(f"{entity['guid']}.json", json.dumps({"entity": entity}))
    atlas_tables_command(archive, tmp_path / "out")
    # the same processes and edges as from the JSON export (every member is a primary entity here, so
    # the database and the column are datasets too)
    for name in ("processes.csv", "lineage_edges.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (GOLDEN_EXPORT / name).read_bytes(), name
    datasets = _golden(tmp_path / "out", "datasets.csv")["qualified_name"]
    assert set(datasets) == set(_golden(GOLDEN_EXPORT, "datasets.csv")["qualified_name"]) | {
        "sales_db@prod", "sales_db.orders.amount@prod"}


# --- our asset graph -> Atlas ------------------------------------------------------------------


def _asset_edges_of_specs(definitions: dg.Definitions) -> tuple[set[str], set[tuple[str, str]]]:
    """Asset keys and (upstream, downstream) pairs from the asset specs, not the asset graph."""
    specs = definitions.resolve_all_asset_specs()
    keys = {s.key.to_user_string() for s in specs}
    return keys, {(d.asset_key.to_user_string(), s.key.to_user_string())
                  for s in specs for d in s.deps}


def _asset_qns(entities: dict) -> dict[str, str]:
    """qualifiedName -> asset key, for the DataSets that stand for assets."""
    return {e["attributes"]["qualifiedName"]: e["customAttributes"]["dagster_asset_key"]
            for e in entities["entities"] if e["typeName"] == "DataSet"}


def test_entities_of_the_real_graph_hold_every_asset_and_dependency():
    keys, deps = _asset_edges_of_specs(defs)
    entities = atlas_entities(lineage_nodes_from_defs(defs))
    asset_qn = _asset_qns(entities)
    processes = {e["attributes"]["name"]: e for e in entities["entities"] if e["typeName"] == "Process"}
    assert set(asset_qn.values()) == keys
    assert set(processes) == keys

    found = set()
    for name, process in processes.items():
        ins = [asset_qn.get(r["uniqueAttributes"]["qualifiedName"]) for r in process["attributes"]["inputs"]]
        outs = [asset_qn.get(r["uniqueAttributes"]["qualifiedName"])
                for r in process["attributes"]["outputs"]]
        assert name in outs  # every asset's computation produces the asset
        found |= {(i, o) for i, o in product(ins, outs) if i and o}
    assert found == deps

    # ... and the same through the flat tables
    edges = {(asset_qn.get(s), p, asset_qn.get(t)) for s, p, t in _edges(consolidate(entities))}
    assert {(s, t) for s, _, t in edges if s and t} == deps
    assert all(p == t for s, p, t in edges if s and t)

    guids = [e["guid"] for e in entities["entities"]]
    assert guids == [str(-i) for i in range(1, len(guids) + 1)]


def _declared_defs() -> dg.Definitions:
    @dg.asset(metadata={READS: ["file:incoming/*.csv"], WRITES: dg.MetadataValue.json(["table:t"])})
    def landed() -> None: ...

    @dg.asset(deps=[landed], metadata={READS: "table:t", WRITES: ["blob:exports/t.csv"]})
    def exported() -> None: ...

    return dg.Definitions(assets=[landed, exported, dg.AssetSpec("external", group_name="outside")])


def test_lineage_metadata_is_read_from_the_asset_definitions():
    nodes = {n.key: n for n in lineage_nodes_from_defs(_declared_defs())}
    assert nodes["landed"].datasets_in == ("file:incoming/*.csv",)
    assert nodes["landed"].datasets_out == ("table:t",)
    assert nodes["exported"].inputs == ("landed",)
    assert nodes["exported"].datasets_in == ("table:t",)
    assert nodes["external"] == LineageNode(key="external", group="outside")

    types = {e["attributes"]["qualifiedName"]: e["typeName"]
             for e in atlas_entities(list(nodes.values()), namespace="prod")["entities"]}
    assert types["sales_platform.warehouse.t@prod"] == "rdbms_table"
    assert types["sales_platform.files/incoming/*.csv@prod"] == "fs_path"
    assert types["sales_platform.blob/exports/t.csv@prod"] == "fs_path"
    assert types["sales_platform.asset.landed@prod"] == "DataSet"


def test_malformed_lineage_metadata_fails_loudly():
    @dg.asset(metadata={READS: ["sales"]})
    def bad() -> None: ...

    with pytest.raises(ValueError, match="asset bad: metadata 'lineage/reads'"):
        lineage_nodes_from_defs(dg.Definitions(assets=[bad]))


# _declared_defs() in namespace "dev", worked out by hand: each asset's computation reads its upstream
# assets and declared reads, and writes its own materialization and declared writes.
DEV_LANDED, DEV_EXPORTED = "sales_platform.asset.landed@dev", "sales_platform.asset.exported@dev"
DEV_T, DEV_INCOMING = "sales_platform.warehouse.t@dev", "sales_platform.files/incoming/*.csv@dev"
DEV_BLOB, DEV_EXTERNAL = "sales_platform.blob/exports/t.csv@dev", "sales_platform.asset.external@dev"
DECLARED_EDGES = {
    (DEV_INCOMING, "landed", DEV_LANDED), (DEV_INCOMING, "landed", DEV_T),
    (DEV_LANDED, "exported", DEV_EXPORTED), (DEV_LANDED, "exported", DEV_BLOB),
    (DEV_T, "exported", DEV_EXPORTED), (DEV_T, "exported", DEV_BLOB),
    ("", "external", DEV_EXTERNAL),  # nothing upstream
}


def _in_namespace(qualified_name: str, namespace: str) -> str:
    """A golden qualified name (namespace sales_platform) in another namespace."""
    return qualified_name.removesuffix("@sales_platform") + f"@{namespace}" if qualified_name else ""


@pytest.mark.parametrize("source", ["real", "declared"])
def test_round_trip_our_atlas_json_gives_the_node_edges(source: str):
    nodes = lineage_nodes_from_defs(defs if source == "real" else _declared_defs())
    entities = json.loads(json.dumps(atlas_entities(nodes, namespace="dev")))
    if source == "declared":
        expected, processes = DECLARED_EDGES, 3
    else:
        golden = _golden(GOLDEN_PLATFORM, "lineage_edges.csv")
        expected = {(_in_namespace(s, "dev"), p, _in_namespace(t, "dev"))
                    for s, p, t, _ in _rows(golden)}
        processes = len(_golden(GOLDEN_PLATFORM, "processes.csv"))
    tables = consolidate(entities)
    assert _edges(tables) == expected
    assert len(tables.processes) == len(nodes) == processes
    assert set(tables.datasets["qualified_name"]) == {q for s, _, t in expected for q in (s, t) if q}


# --- the lineage_export asset ------------------------------------------------------------------


def test_lineage_export_materializes_the_whole_graph_to_blob_storage(tmp_path: Path):
    others = [a for a in defs.assets if lineage_export.key not in a.keys]
    assets = [*others, lineage_export]
    blob = tmp_path / "blob"
    storage = LocalBlobStorage(root=str(blob))
    resources = {**resources_for(tmp_path / "data", f"sqlite:///{tmp_path / 'w.db'}", generate_key()),
                 "blob": storage}
    result = dg.materialize(assets, selection=[lineage_export.key], resources=resources)
    assert result.success

    assert sorted(str(p.relative_to(blob)) for p in blob.rglob("*") if p.is_file()) == sorted(BLOB_NAMES)
    exported = json.loads((blob / "lineage" / "atlas_entities.json").read_text())
    golden = json.loads((GOLDEN_PLATFORM / "atlas_entities.json").read_text())
    assert _without_descriptions(exported) == golden
    # each asset's DataSet and Process carry the asset's own description, as its spec has it
    specs = dg.Definitions(assets=assets, resources=resources).resolve_all_asset_specs()
    descriptions = {s.key.to_user_string(): s.description for s in specs}
    for type_name in ("DataSet", "Process"):
        assert {e["customAttributes"]["dagster_asset_key"]: e["attributes"].get("description")
                for e in exported["entities"] if e["typeName"] == type_name} == descriptions, type_name
    assert set(_asset_qns(exported).values()) == (
        _asset_edges_of_specs(defs)[0] | {"lineage_export"})

    for name in FILE_NAMES:
        assert (blob / "lineage" / name).read_bytes() == (GOLDEN_PLATFORM / name).read_bytes(), name

    metadata = result.asset_materializations_for_node("lineage_export")[0].metadata
    assert metadata["processes"].value == len(_golden(GOLDEN_PLATFORM, "processes.csv"))
    assert metadata["datasets"].value == len(_golden(GOLDEN_PLATFORM, "datasets.csv"))
    assert metadata["lineage_edges"].value == len(_golden(GOLDEN_PLATFORM, "lineage_edges.csv"))
    assert metadata["atlas_entities"].value == len(golden["entities"])
    assert metadata["summary"].value == (GOLDEN_PLATFORM / "lineage_summary.md").read_text()


def test_lineage_export_is_a_standalone_governance_asset():
    graph = dg.Definitions(assets=[lineage_export],
                           resources={"blob": LocalBlobStorage(root="unused")}).resolve_asset_graph()
    node = graph.get(lineage_export.key)
    assert node.group_name == "governance" and node.kinds == {"json", "csv"}
    assert not node.parent_keys and node.partitions_def is None and node.description
