"""Assets whose ``code_version`` is derived from their code (core/codeversion.py), not hand-edited.

A changed stage (or a changed core function it calls) gets a new version at import, so the UI marks
what it produced as stale ("code version changed") until it runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from sales_platform.core.codeversion import code_version


def versioned_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset(**kwargs)`` with ``code_version`` = the hash of the decorated function's code."""
    if "code_version" in kwargs:
        raise TypeError("versioned_asset derives code_version from the code; do not pass one")

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(code_version=code_version(fn), **kwargs)(fn)

    return decorate


def stage_version(context: dg.AssetExecutionContext) -> str:
    """The running asset's code version (what the artifact ledger records)."""
    return context.assets_def.code_versions_by_key[context.asset_key] or "unversioned"
