"""The `rotate-keys` and `key-status` commands (wired into sales_platform.cli).

Both read the configuration the same way as the other commands: SALES_PLATFORM_ENCRYPTION_KEY is
the key everything ends under, SALES_PLATFORM_RETIRED_KEYS the old keys that still decrypt.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from sales_platform.core import settings
from sales_platform.core.crypto import Keyring
from sales_platform.core.rotation import (
    NOT_A_TOKEN,
    BatchDone,
    RotationError,
    rotate_keys,
    sealed_counts_by_key,
    staged_token_counts_by_key,
    token_counts_by_key,
)
from sales_platform.core.store import DataAreas


@dataclass
class KeyContext:
    engine: Engine
    keyring: Keyring
    areas: DataAreas
    archive_sink: Callable[[str, Path], str]
    database: str  # for display: password redacted
    sensitive: tuple[str, ...]  # the schema contract's sensitive columns (they hold tokens too)


def key_context() -> KeyContext:
    from sales_platform.resources.factory import (
        blob_resource,
        platform_resource,
        resolved,
        warehouse_resource,
    )

    platform = resolved(platform_resource())
    warehouse = resolved(warehouse_resource())
    blob = resolved(blob_resource())
    return KeyContext(warehouse.engine(), platform.keyring(), platform.areas, blob.put_file,
                      warehouse.display_url(), tuple(platform.contract().sensitive))


def _key_label(keyring: Keyring, key_id: str) -> str:
    if key_id == keyring.active.key_id:
        return f"{key_id} (active)"
    if key_id in keyring.others:
        return f"{key_id} (retired)"
    return key_id if key_id == NOT_A_TOKEN else f"{key_id} (NOT IN THE KEYRING: cannot decrypt)"


def _print_counts(title: str, counts: dict[str, dict[str, int]], keyring: Keyring) -> int:
    """Prints one line per table column or file area; returns how many are not under the active key."""
    print(title)
    stale = 0
    width = max((len(name) for name in counts), default=0)
    for name, per_key in counts.items():
        shown = ", ".join(f"{_key_label(keyring, k)}={n}" for k, n in per_key.items()) or "-"
        print(f"  {name:<{width}}  {shown}")
        stale += sum(n for k, n in per_key.items() if k != keyring.active.key_id)
    if not counts:
        print("  -")
    return stale


def print_status(context: KeyContext) -> int:
    """Token and sealed-file counts per key id; returns what is still under another key."""
    keyring = context.keyring
    retired = ", ".join(keyring.others) or "none"
    print(f"keyring: active {keyring.active.key_id}; retired {retired}")
    print(f"database: {context.database}; data dir: {context.areas.root}")
    values = _print_counts("token values per key id (warehouse):",
                           token_counts_by_key(context.engine, context.sensitive), keyring)
    values += _print_counts("token values per key id (staging Parquet files):",
                            staged_token_counts_by_key(context.areas, context.sensitive), keyring)
    files = _print_counts("sealed files per key id:", sealed_counts_by_key(context.areas), keyring)
    if values or files:
        print(f"not under the active key: {values} token value(s), {files} sealed file(s); "
              "run `sales-platform rotate-keys` before removing a retired key")
    else:
        print("everything is under the active key: retired keys can be removed")
    return values + files


def cmd_key_status(args: argparse.Namespace) -> int:
    """Exit status 0 when everything is under the active key, 1 otherwise."""
    return 0 if print_status(key_context()) == 0 else 1


def _print_batch(done: BatchDone) -> None:
    if done.target not in ("staged token files", "sealed files"):  # files are summed up in the report
        print(f"  {done.target}: batch of {done.items} row(s), {done.rotated} value(s) re-encrypted",
              flush=True)


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    if not os.environ.get(settings.ENCRYPTION_KEY):
        print(f"{settings.ENCRYPTION_KEY} is not set: set it to the new key and "
              f"{settings.RETIRED_KEYS} to the old key(s), then rerun", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("--batch-size must be at least 1", file=sys.stderr)
        return 2
    context = key_context()
    if args.dry_run:
        stale = print_status(context)
        print(f"dry run: nothing changed ({stale} value(s) and file(s) would be re-encrypted)")
        return 0
    print(f"rotating to key {context.keyring.active.key_id} in batches of {args.batch_size}", flush=True)
    try:
        report = rotate_keys(context.engine, context.keyring, context.areas, batch_size=args.batch_size,
                             progress=_print_batch, archive_sink=context.archive_sink,
                             sensitive=context.sensitive)
    except RotationError as exc:
        print(f"rotation stopped: {exc}\nwhat was committed stays rotated; fix the cause and rerun",
              file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0 if print_status(context) == 0 else 1
