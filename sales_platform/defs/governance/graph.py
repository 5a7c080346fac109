"""The Dagster asset graph as lineage nodes: every asset, its upstream assets, declared datasets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import dagster as dg

from sales_platform.defs.governance.lineage import READS, WRITES, Dataset, LineageNode

if TYPE_CHECKING:  # types only: what Definitions.resolve_asset_graph() returns has no public name
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph, AssetNode


def run_asset_graph(context: dg.AssetExecutionContext) -> AssetGraph:
    """The whole asset graph of the code location an asset runs in.

    ``context.repository_def`` is only set for runs launched from a code location (UI, daemon,
    ``dagster asset materialize``); ``dg.materialize`` and ``execute_in_process`` raise there.
    The run's job graph is the selected subset, built from the full graph it keeps as
    ``source_asset_graph`` - the same graph as ``repository_def.asset_graph`` in both cases.

    Adapter (the one private Dagster attribute the platform reads): it waits for a public way to
    reach the code location's asset graph from a step that works in process too, i.e.
    ``context.repository_def.asset_graph`` without the in-process restriction."""
    return context.job_def.asset_layer.asset_graph.source_asset_graph


def _asset_graph(source: dg.Definitions | dg.RepositoryDefinition | AssetGraph) -> AssetGraph:
    if isinstance(source, dg.Definitions):
        return source.resolve_asset_graph()
    if isinstance(source, dg.RepositoryDefinition):
        return source.asset_graph
    return source


def declared_datasets(metadata: Mapping[str, object], name: str, key: str) -> tuple[str, ...]:
    """``lineage/reads`` or ``lineage/writes`` of an asset's definition metadata, validated.

    Accepts a string, a list of strings, or either wrapped in a MetadataValue."""
    value = metadata.get(name)
    value = getattr(value, "value", value)  # dg.MetadataValue.json([...]) / .text("...")
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"asset {key}: metadata {name!r} must be a list of '<scheme>:<path>' "
                         f"strings, got {value!r}")
    for ref in values:
        try:
            Dataset.parse(ref)
        except ValueError as error:
            raise ValueError(f"asset {key}: metadata {name!r}: {error}") from None
    return tuple(values)


def _node(node: AssetNode) -> LineageNode:
    key = node.key.to_user_string()
    return LineageNode(
        key=key,
        group=node.group_name,
        description=node.description,
        kinds=tuple(sorted(node.kinds)),
        owners=tuple(node.owners),
        inputs=tuple(sorted(k.to_user_string() for k in node.parent_keys)),
        datasets_in=declared_datasets(node.metadata, READS, key),
        datasets_out=declared_datasets(node.metadata, WRITES, key),
    )


def lineage_nodes_from_defs(
    source: dg.Definitions | dg.RepositoryDefinition | AssetGraph,
) -> list[LineageNode]:
    """One node per asset key (external assets included), upstream before downstream."""
    graph = _asset_graph(source)
    return [_node(graph.get(key)) for key in graph.toposorted_asset_keys]
