"""lineage_export: the asset graph as Apache Atlas entities and flat tables, in blob storage."""

import json

import dagster as dg

from sales_platform.defs.governance.graph import lineage_nodes_from_defs, run_asset_graph
from sales_platform.defs.governance.lineage import (
    ATLAS_FILE,
    TABLE_FILES,
    WRITES,
    atlas_entities,
    consolidate,
    summary_markdown,
    table_files,
)
from sales_platform.resources.blob import BlobStorageResource
from sales_platform.versioning import versioned_asset

BLOB_FOLDER = "lineage"
BLOB_NAMES = [f"{BLOB_FOLDER}/{name}" for name in (ATLAS_FILE, *TABLE_FILES)]


@versioned_asset(
    group_name="governance",
    kinds={"json", "csv"},
    owners=["team:data-platform"],
    tags={"layer": "governance"},
    metadata={WRITES: [f"blob:{name}" for name in BLOB_NAMES]},
    description="Lineage of every asset of this code location, derived from the Dagster asset "
    "graph plus the datasets assets declare in lineage/reads and lineage/writes metadata: "
    "lineage/atlas_entities.json (Apache Atlas v2 entities in the entity/bulk shape) and "
    "datasets.csv, processes.csv, lineage_edges.csv, lineage_summary.md for Power BI.",
)
def lineage_export(context: dg.AssetExecutionContext, blob: BlobStorageResource) -> dg.MaterializeResult:
    nodes = lineage_nodes_from_defs(run_asset_graph(context))
    entities = atlas_entities(nodes)
    tables = consolidate(entities)
    files = {ATLAS_FILE: json.dumps(entities, indent=2).encode("utf-8"), **table_files(tables)}
    locations = {f"{BLOB_FOLDER}/{name}": blob.put_bytes(f"{BLOB_FOLDER}/{name}", data)
                 for name, data in files.items()}
    return dg.MaterializeResult(metadata={
        "assets": len(nodes),
        "atlas_entities": len(entities["entities"]),
        "datasets": len(tables.datasets),
        "processes": len(tables.processes),
        "lineage_edges": len(tables.edges),
        "blobs": dg.MetadataValue.json(locations),
        "summary": dg.MetadataValue.md(summary_markdown(tables)),
    })
