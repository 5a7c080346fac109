"""Assets whose ``code_version`` is derived from their code (core/codeversion.py), not hand-edited.

A changed stage (or a changed core function it calls) gets a new version at import, so the UI marks
what it produced as stale ("code version changed") until it runs again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import dagster as dg

from sales_platform.core.codeversion import PREFIX, code_version


def stage_code_version(fn: Callable[..., Any], covers: tuple[Any, ...] = ()) -> str:
    """The version of ``fn``'s code, and of ``covers``: platform code the stage runs that its
    source does not name (e.g. a class it reaches only through a resource's method)."""
    if not covers:
        return code_version(fn)
    parts = [code_version(fn), *(code_version(obj) for obj in covers)]
    return PREFIX + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def versioned_asset(*, covers: tuple[Any, ...] = (),
                    **kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset(**kwargs)`` with ``code_version`` = the hash of the decorated function's code
    (and of ``covers``, see ``stage_code_version``)."""
    if "code_version" in kwargs:
        raise TypeError("versioned_asset derives code_version from the code; do not pass one")

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(code_version=stage_code_version(fn, covers), **kwargs)(fn)

    return decorate


def stage_version(context: dg.AssetExecutionContext, asset_key: dg.AssetKey | None = None) -> str:
    """The running asset's code version (what the artifact ledger records); ``asset_key`` names
    which of a multi-asset step's assets."""
    key = asset_key or context.asset_key
    return context.assets_def.code_versions_by_key[key] or "unversioned"
