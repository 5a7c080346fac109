"""Lineage for governance: our asset graph as Apache Atlas v2 entities, and any Atlas export as tables.

Pure (no Dagster): ``graph.py`` turns the Dagster asset graph into ``LineageNode``s; this module
turns nodes into Atlas JSON and Atlas JSON into three flat tables (datasets, processes, edges)
that Power BI reads directly.

Datasets an asset reads or writes are declared as ``"<scheme>:<path>"`` strings:
``table:sales`` (a warehouse table), ``file:incoming/*.csv`` (a path under DATA_DIR),
``blob:lineage/datasets.csv`` (a blob), ``asset:sales`` (another asset's materialization).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sales_platform.core.csvsafe import safe_cell
from sales_platform.core.ownership import owner_of

READS = "lineage/reads"
WRITES = "lineage/writes"
PLATFORM = "sales_platform"

ATLAS_FILE = "atlas_entities.json"
DATASETS_FILE = "datasets.csv"
PROCESSES_FILE = "processes.csv"
EDGES_FILE = "lineage_edges.csv"
SUMMARY_FILE = "lineage_summary.md"
TABLE_FILES = (DATASETS_FILE, PROCESSES_FILE, EDGES_FILE, SUMMARY_FILE)

DATASET_COLUMNS = ["guid", "type", "qualified_name", "name"]
PROCESS_COLUMNS = ["guid", "name", "qualified_name", "inputs", "outputs", "type"]
EDGE_COLUMNS = ["source_qualified_name", "process_name", "target_qualified_name",
                "process_qualified_name"]

# scheme -> (Atlas typeName, qualifiedName prefix before the path). Assets use the generic
# DataSet type, so every Atlas accepts them without a custom typedef.
SCHEMES: dict[str, tuple[str, str]] = {
    "asset": ("DataSet", f"{PLATFORM}.asset."),
    "table": ("rdbms_table", f"{PLATFORM}.warehouse."),
    "file": ("fs_path", f"{PLATFORM}.files/"),
    "blob": ("fs_path", f"{PLATFORM}.blob/"),
}


@dataclass(frozen=True)
class LineageNode:
    """One asset: its upstream assets and the datasets it reads and writes besides them."""

    key: str
    group: str | None = None
    description: str | None = None
    kinds: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    datasets_in: tuple[str, ...] = ()
    datasets_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    scheme: str
    path: str

    @classmethod
    def parse(cls, ref: str) -> Dataset:
        scheme, sep, path = ref.partition(":")
        if not sep or not path or scheme not in SCHEMES:
            raise ValueError(f"dataset {ref!r} is not '<scheme>:<path>' with scheme in "
                             f"{sorted(SCHEMES)}")
        return cls(scheme, path)

    def type_name(self) -> str:
        return SCHEMES[self.scheme][0]

    def qualified_name(self, namespace: str) -> str:
        return f"{SCHEMES[self.scheme][1]}{self.path}@{namespace}"


@dataclass(frozen=True)
class LineageTables:
    datasets: pd.DataFrame
    processes: pd.DataFrame
    edges: pd.DataFrame


# --- our graph -> Atlas ------------------------------------------------------------------------


def _asset(key: str) -> Dataset:
    return Dataset("asset", key)


def process_io(node: LineageNode) -> tuple[list[Dataset], list[Dataset]]:
    """Inputs and outputs of an asset's computation; its own materialization is always an output."""
    inputs = [_asset(k) for k in node.inputs] + [Dataset.parse(r) for r in node.datasets_in]
    outputs = [_asset(node.key)] + [Dataset.parse(r) for r in node.datasets_out]
    return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))


def _ref(dataset: Dataset, namespace: str) -> dict:
    return {"typeName": dataset.type_name(),
            "uniqueAttributes": {"qualifiedName": dataset.qualified_name(namespace)}}


def _dataset_entity(dataset: Dataset, guid: str, namespace: str,
                    node: LineageNode | None) -> dict:
    attributes = {"qualifiedName": dataset.qualified_name(namespace), "name": dataset.path}
    entity: dict = {"typeName": dataset.type_name(), "guid": guid, "attributes": attributes}
    if dataset.scheme in ("file", "blob"):
        attributes["path"] = dataset.path
    if dataset.scheme == "table" and owner_of(dataset.path):  # one owning asset per table
        attributes["owner"] = owner_of(dataset.path)
    if node is not None:  # an asset of the graph: carry what the catalogue shows about it
        attributes["description"] = node.description or ""
        attributes["owner"] = ", ".join(node.owners)
        entity["labels"] = sorted(node.kinds)
        entity["customAttributes"] = {"dagster_asset_key": node.key,
                                      "dagster_group": node.group or ""}
    return entity


def _process_entity(node: LineageNode, guid: str, namespace: str) -> dict:
    inputs, outputs = process_io(node)
    return {
        "typeName": "Process",
        "guid": guid,
        "attributes": {
            "qualifiedName": f"{PLATFORM}.process.{node.key}@{namespace}",
            "name": node.key,
            "description": node.description or "",
            "owner": ", ".join(node.owners),
            "inputs": [_ref(d, namespace) for d in inputs],
            "outputs": [_ref(d, namespace) for d in outputs],
        },
        "labels": sorted(node.kinds),
        "customAttributes": {"dagster_asset_key": node.key, "dagster_group": node.group or ""},
    }


def atlas_entities(nodes: Sequence[LineageNode], namespace: str = PLATFORM) -> dict:
    """Atlas v2 ``{"entities": [...]}``: DataSets (assets first, then declared datasets), then one
    Process per asset. GUIDs are Atlas's negative placeholders for new entities, in that order."""
    by_key = {n.key: n for n in nodes}
    datasets = [_asset(n.key) for n in nodes]
    for node in nodes:
        inputs, outputs = process_io(node)
        datasets += inputs + outputs
    datasets = list(dict.fromkeys(datasets))
    entities = [_dataset_entity(d, str(-i), namespace,
                                by_key.get(d.path) if d.scheme == "asset" else None)
                for i, d in enumerate(datasets, start=1)]
    entities += [_process_entity(n, str(-i), namespace)
                 for i, n in enumerate(nodes, start=len(datasets) + 1)]
    return {"entities": entities}


# --- any Atlas export -> tables ----------------------------------------------------------------


def _walk(export: object) -> Iterator[tuple[dict, bool]]:
    """Every entity of an export with whether it is primary (True) or only referred to (False).

    Accepts ``{"entities": [...], "referredEntities": {...}}`` (bulk GET, search), ``{"entity":
    ...}`` (GET by guid, export ZIP members), a bare entity, and lists of any of these."""
    if isinstance(export, list):
        for item in export:
            yield from _walk(item)
        return
    if not isinstance(export, Mapping):
        raise ValueError(f"not an Atlas export: {type(export).__name__}")
    if "typeName" in export:
        yield dict(export), True
        return
    if not {"entities", "entity", "referredEntities"} & export.keys():
        raise ValueError(f"not an Atlas entity export (keys: {sorted(export)[:5]})")
    primary = export.get("entities") or ([export["entity"]] if export.get("entity") else [])
    for entity in primary:
        yield from _walk(entity)
    referred = export.get("referredEntities") or {}
    for entity in referred.values() if isinstance(referred, Mapping) else referred:
        yield dict(entity), False


def _attrs(entity: Mapping) -> Mapping:
    return entity.get("attributes") or {}


def _io(entity: Mapping, name: str) -> list | None:
    """A process's inputs/outputs: attributes first, relationshipAttributes as newer Atlas puts them."""
    for section in ("attributes", "relationshipAttributes"):
        value = (entity.get(section) or {}).get(name)
        if value is not None:
            return value if isinstance(value, list) else [value]
    return None


def _is_process(entity: Mapping) -> bool:
    has_io = _io(entity, "inputs") is not None or _io(entity, "outputs") is not None
    return has_io or str(entity.get("typeName", "")).lower().endswith("process")


class _Catalogue:
    """Entities by guid and qualifiedName, resolving both kinds of Atlas object references."""

    def __init__(self, entities: Iterable[dict]):
        self.by_guid: dict[str, dict] = {}
        self.by_qn: dict[str, dict] = {}
        for entity in entities:
            if entity.get("guid"):
                self.by_guid.setdefault(str(entity["guid"]), entity)
            qn = _attrs(entity).get("qualifiedName")
            if qn:
                self.by_qn.setdefault(qn, entity)

    def resolve(self, ref: object) -> dict:
        """A dataset row for a reference: ``"guid"``, ``{"guid": ..}``, ``{"typeName": ..,
        "uniqueAttributes": {"qualifiedName": ..}}`` or an embedded entity."""
        ref = {"guid": ref} if isinstance(ref, str) else dict(ref or {})
        guid = str(ref.get("guid") or "")
        qn = ((ref.get("uniqueAttributes") or {}).get("qualifiedName")
              or _attrs(ref).get("qualifiedName"))
        entity = self.by_guid.get(guid) or (self.by_qn.get(qn) if qn else None) or ref
        if entity is not ref:
            return _dataset_row(entity)
        # Not in the export: keep what the reference itself says so the edge is not lost.
        qn = qn or f"guid:{guid}"
        return {"guid": guid, "type": ref.get("typeName", ""), "qualified_name": qn,
                "name": _attrs(ref).get("name") or ref.get("displayText") or qn.split("@")[0]}


def _dataset_row(entity: Mapping) -> dict:
    qn = _attrs(entity).get("qualifiedName") or f"guid:{entity.get('guid', '')}"
    return {"guid": str(entity.get("guid") or ""), "type": entity.get("typeName", ""),
            "qualified_name": qn,
            "name": _attrs(entity).get("name") or entity.get("displayText") or qn.split("@")[0]}


def consolidate(entities_json: object) -> LineageTables:
    """Datasets, processes and dataset -> process -> dataset edges of an Atlas v2 export.

    Datasets are the export's primary non-process entities plus everything a process reads or
    writes; referred entities nothing points at (columns, databases, storage descriptors) are
    supporting detail and left out. Edges are input x output per process, with a blank source
    (target) for a process without inputs (outputs). Every table is sorted, so re-exports diff
    cleanly."""
    walked = list(_walk(entities_json))
    catalogue = _Catalogue(e for e, _ in walked)
    datasets: dict[str, dict] = {}
    processes: list[dict] = []
    edges: list[dict] = []
    seen_processes: set[tuple[str, str]] = set()
    for entity, primary in walked:
        if not _is_process(entity):
            if primary:
                row = _dataset_row(entity)
                datasets.setdefault(row["qualified_name"], row)
            continue
        row = _dataset_row(entity)
        if (row["guid"], row["qualified_name"]) in seen_processes:
            continue  # the same process as a primary and a referred entity
        seen_processes.add((row["guid"], row["qualified_name"]))
        inputs = [catalogue.resolve(r) for r in _io(entity, "inputs") or []]
        outputs = [catalogue.resolve(r) for r in _io(entity, "outputs") or []]
        for d in inputs + outputs:
            datasets.setdefault(d["qualified_name"], d)
        processes.append({**row, "inputs": len(inputs), "outputs": len(outputs)})
        edges += _edges(row, [d["qualified_name"] for d in inputs],
                        [d["qualified_name"] for d in outputs])
    return LineageTables(
        datasets=_frame(datasets.values(), DATASET_COLUMNS, ["qualified_name", "type"]),
        processes=_frame(processes, PROCESS_COLUMNS, ["qualified_name", "guid"]),
        edges=_frame(edges, EDGE_COLUMNS, ["process_qualified_name", "source_qualified_name",
                                            "target_qualified_name"]).drop_duplicates(
            ignore_index=True),
    )


def _edges(process: Mapping, sources: list[str], targets: list[str]) -> list[dict]:
    """Every input x output pair. A side with no datasets is one blank, so a process that only
    writes (a root) or only reads still shows in the edges table with what it touches."""
    return [{"source_qualified_name": s, "process_name": process["name"],
             "target_qualified_name": t, "process_qualified_name": process["qualified_name"]}
            for s in sources or [""] for t in targets or [""] if s or t]


def _frame(rows: Iterable[dict], columns: list[str], order: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=columns)
    return frame.sort_values(order, kind="stable", ignore_index=True)


# --- tables -> files ---------------------------------------------------------------------------


def _md(text: object) -> str:
    """A Markdown table cell: code-formatted (so `*` and `_` stay literal), pipes escaped."""
    escaped = str(text).replace("|", "\\|")
    return f"`{escaped}`"


def summary_markdown(tables: LineageTables) -> str:
    """Counts and, per process, what it reads and writes (dataset names) for Power BI users."""
    names = _display_names(tables.datasets)
    lines = ["# Lineage summary", "",
             f"- datasets: {len(tables.datasets)}", f"- processes: {len(tables.processes)}",
             f"- lineage edges: {len(tables.edges)}", "",
             "## Datasets by type", "", "| type | datasets |", "|---|---:|"]
    counts = tables.datasets["type"].value_counts().sort_index()
    lines += [f"| {_md(t)} | {n} |" for t, n in counts.items()]
    lines += ["", "## Processes", "", "| process | inputs | outputs |", "|---|---|---|"]
    edges = tables.edges.groupby("process_qualified_name", sort=False)
    io = {qn: (_names(g["source_qualified_name"], names), _names(g["target_qualified_name"], names))
          for qn, g in edges}
    for process in tables.processes.itertuples(index=False):
        sources, targets = io.get(process.qualified_name, ("_none_", "_none_"))
        lines.append(f"| {_md(process.name)} | {sources} | {targets} |")
    return "\n".join(lines) + "\n"


def _display_names(datasets: pd.DataFrame) -> dict[str, str]:
    """qualifiedName -> name, with the type added where a name is shared (asset `sales` and
    table `sales`), so the summary stays unambiguous without showing qualified names."""
    shared = datasets["name"].duplicated(keep=False)
    return {qn: f"{name} ({kind})" if dup else name for qn, name, kind, dup in
            zip(datasets["qualified_name"], datasets["name"], datasets["type"], shared, strict=True)}


def _names(qualified_names: Iterable[str], names: Mapping[str, str]) -> str:
    shown = [_md(names.get(qn, qn)) for qn in dict.fromkeys(qualified_names) if qn]
    return ", ".join(shown) or "_none_"


def table_files(tables: LineageTables) -> dict[str, bytes]:
    """File name -> content for the three CSVs and the Markdown summary."""
    def csv(frame: pd.DataFrame) -> bytes:
        text = frame.select_dtypes(include=["object", "string"]).columns  # numbers stay numbers
        inert = frame.assign(**{c: frame[c].map(safe_cell) for c in text})
        return inert.to_csv(index=False, lineterminator="\n").encode("utf-8")

    return {DATASETS_FILE: csv(tables.datasets), PROCESSES_FILE: csv(tables.processes),
            EDGES_FILE: csv(tables.edges), SUMMARY_FILE: summary_markdown(tables).encode("utf-8")}


def write_tables(tables: LineageTables, folder: Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in table_files(tables).items():
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


def load_export(path: Path) -> object:
    """An Atlas export file: JSON, or the ZIP of Atlas's export API (one JSON per entity)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return json.loads(path.read_text(encoding="utf-8"))
    with zipfile.ZipFile(path) as archive:
        members = [json.loads(archive.read(n)) for n in sorted(archive.namelist())
                   if n.endswith(".json")]
    # Keep the entity documents; skip export-info, export-order and typedef members.
    return [m for m in members if isinstance(m, Mapping) and ("entity" in m or "entities" in m)]


def atlas_tables_command(export_path: Path, out_dir: Path) -> list[Path]:
    """`sales-platform atlas-tables <export.json> --out DIR`: the tables of an Atlas export."""
    return write_tables(consolidate(load_export(export_path)), out_dir)
