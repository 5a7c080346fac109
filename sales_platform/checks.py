"""One materialization and one check verdict per day, in runs that cover a range of days.

A range run (a backfill chunk, a sensor load, ``sales-platform run``) is one step for all its days.
Dagster 1.13 gives a ``MaterializeResult`` every day of the range (with the range's metadata) and an
``AssetCheckResult`` no partition at all. So the day steps yield, for each day they finished,
runtime events scoped to that day:

- ``AssetMaterialization(partition=day)`` with that day's own numbers; a day not finished (blocked,
  failed) gets none, so it keeps its previous state in the UI;
- ``AssetCheckEvaluation(partition=day)`` that names the materialization it checked: Dagster counts
  a partition's verdict only when it targets that partition's latest materialization, which an
  evaluation yielded by hand does not do by itself.

A failed blocking verdict is yielded with ``blocking=False``: the step enforces the block for its
own day (the day is not encrypted or loaded), and Dagster would otherwise fail the whole step, and
with it every other day of the range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

CODE_VERSION_TAG = "dagster/code_version"


def day_materialization(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, day: str,
                        metadata: Mapping[str, Any]) -> dg.AssetMaterialization:
    """The day's materialization of ``asset_key``, tagged with the asset's code version as an
    output's materialization would be."""
    version = context.assets_def.code_versions_by_key.get(asset_key)
    return dg.AssetMaterialization(asset_key=asset_key, partition=day, metadata=dict(metadata),
                                   tags={CODE_VERSION_TAG: version} if version else None)


def latest_materialization(context: dg.AssetExecutionContext, asset_key: dg.AssetKey,
                            day: str) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day]), limit=5).records
    ours = [r for r in records if r.run_id == context.run.run_id]  # not a concurrent run's
    if not (ours or records):
        return None
    latest = (ours or records)[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp)


def day_verdict(context: dg.AssetExecutionContext, spec: dg.AssetCheckSpec, day: str,
                passed: bool, metadata: Mapping[str, Any] | None = None,
                severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                description: str | None = None,
                target: AssetCheckEvaluationTargetMaterializationData | None = None,
                ) -> dg.AssetCheckEvaluation:
    """The verdict of ``spec`` on ``day``, targeting the day's latest materialization of its asset
    (yield it after that materialization; ``target``: that materialization, when already looked
    up for another check of the same asset and day)."""
    return dg.AssetCheckEvaluation(
        asset_key=spec.asset_key, check_name=spec.name, passed=passed, partition=day,
        metadata=dict(metadata or {}), severity=severity, description=description,
        blocking=spec.blocking and passed,
        target_materialization_data=target or latest_materialization(context, spec.asset_key, day))
