"""Asset check verdicts per day for runs that cover a range of days (backfills, sensor loads)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

import dagster as dg


def per_day_evaluations(context: dg.AssetExecutionContext, check_name: str, failing: Collection[str] = (),
                        *, blocking: bool = False,
                        severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                        metadata: Mapping[str, Mapping[str, Any]] | None = None,
                        asset_key: dg.AssetKey | None = None,
                        ) -> Iterator[dg.AssetCheckEvaluation]:
    """One evaluation per day of a range run, to yield next to the check's AssetCheckResult.

    Dagster 1.13 gives an AssetCheckResult its partition only in a single-partition run. In a range run
    (every backfill chunk and sensor load here) the result is stored without a partition and each day's
    planned execution ends as SKIPPED in the UI and in GraphQL. The AssetCheckResult is still needed:
    it produces the check's output. ``asset_key``: which asset, in a step that materializes several.
    """
    if context.has_partition_key:  # single partition: the AssetCheckResult already carries it
        return
    for day in context.partition_keys:
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key or context.asset_key, check_name=check_name, passed=day not in failing,
            partition=day, blocking=blocking, severity=severity, metadata=(metadata or {}).get(day))
