"""One owner per table, read by the lineage export and held to the definitions here.

The map is sales_platform/core/ownership.py; the definitions declare what each asset writes in its
``lineage/writes`` metadata (what the lineage export draws). A table the map does not know, an asset
writing a table it neither owns nor is listed for (with its reason) in ``also``, or an owner that is
no asset of the graph fails."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sales_platform.core.ownership import TABLE_OWNERS
from sales_platform.core.warehouse.tables import metadata

MACHINERY = {"artifact ledger", "migrations", "locks"}
ROOT = Path(__file__).resolve().parent.parent


def declared_writers() -> dict[str, set[str]]:
    from sales_platform.definitions import defs

    writers: dict[str, set[str]] = defaultdict(set)
    for spec in defs.resolve_all_asset_specs():
        for ref in (spec.metadata or {}).get("lineage/writes", []):
            if ref.startswith("table:"):
                writers[ref.removeprefix("table:")].add(spec.key.to_user_string())
    return writers


def test_every_table_has_exactly_one_owner():
    assert sorted(TABLE_OWNERS) == sorted(metadata.tables)


def test_no_asset_writes_a_table_it_does_not_own():
    strangers = {table: sorted(assets - {TABLE_OWNERS[table].owner, *TABLE_OWNERS[table].also})
                 for table, assets in declared_writers().items()}
    assert {t: a for t, a in strangers.items() if a} == {}


def test_owners_and_co_writers_are_assets_of_the_graph_and_say_why():
    from sales_platform.definitions import defs

    assets = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    for table, owner in TABLE_OWNERS.items():
        assert owner.owner in assets | MACHINERY, table
        assert set(owner.also) <= assets, table
        assert not owner.also or owner.why, f"{table}: co-writers without a reason"
        assert (ROOT / owner.writer).is_file(), f"{table}: writer module {owner.writer} does not exist"


def test_owning_assets_declare_their_tables():
    writers = declared_writers()
    undeclared = sorted(table for table, owner in TABLE_OWNERS.items()
                        if owner.owner not in MACHINERY and owner.owner not in writers.get(table, set())
                        # written as a side record of a stage, not drawn in the lineage graph
                        and table not in ("day_snapshots", "schema_history", "export_log"))
    assert undeclared == []


def test_the_lineage_export_carries_each_tables_owner():
    from sales_platform.definitions import defs
    from sales_platform.defs.governance.graph import lineage_nodes_from_defs
    from sales_platform.defs.governance.lineage import atlas_entities

    entities = atlas_entities(lineage_nodes_from_defs(defs))["entities"]
    owners = {e["attributes"]["name"]: e["attributes"].get("owner")
              for e in entities if e["typeName"] == "rdbms_table"}
    assert owners and all(owners[t] == TABLE_OWNERS[t].owner for t in owners)


def test_architecture_md_lists_the_owners_of_the_tree():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for table, owner in TABLE_OWNERS.items():
        assert f"| `{table}` | `{owner.owner}` | `{owner.writer.removeprefix('sales_platform/')}` |" in text
