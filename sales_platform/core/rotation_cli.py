"""The `rotate-keys` and `key-status` commands (wired into sales_platform.cli).

Both read the configuration the same way as the other commands: the keyset (wrapped under the master
key of SALES_PLATFORM_ENCRYPTION_KEY or SALES_PLATFORM_ENCRYPTION_KEY_FILE) holds the primary key and
the older keys that still decrypt. ``rotate-keys`` adds a key and makes it primary (unless a rotation is
already under way: then it resumes it), re-encrypts everything, then retires the older keys.
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
from sales_platform.core.crypto import UNKNOWN_KEY, Keyring
from sales_platform.core.keyset import LEGACY, Keyset, save_keyset
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
    keyset_path: Path | None = None
    master: bytes = b""

    def keyset(self) -> Keyset:
        from sales_platform.core.keyset import load_keyset

        assert self.keyset_path is not None
        return load_keyset(self.keyset_path, self.master)

    def save(self, keyset: Keyset) -> None:
        assert self.keyset_path is not None
        save_keyset(self.keyset_path, keyset, self.master)
        self.keyring = keyset.keyring()


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
                      warehouse.display_url(), tuple(platform.contract().sensitive),
                      platform.keyset_path, platform.master_key())


def _key_label(keyring: Keyring, key_id: str) -> str:
    if key_id == keyring.active.key_id:
        return f"{key_id} (active)"
    if key_id in keyring.others:
        return f"{key_id} (retired)"
    if key_id in (NOT_A_TOKEN, UNKNOWN_KEY):
        return key_id
    return f"{key_id} (NOT IN THE KEYRING: cannot decrypt)"


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
    files = _print_counts("sealed files per key id:", sealed_counts_by_key(context.areas, keyring), keyring)
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
    if not (os.environ.get(settings.ENCRYPTION_KEY) or os.environ.get(settings.ENCRYPTION_KEY_FILE)):
        print(f"{settings.ENCRYPTION_KEY} (or {settings.ENCRYPTION_KEY_FILE}) is not set: rotation needs "
              "the master key that wraps the keyset", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("--batch-size must be at least 1", file=sys.stderr)
        return 2
    context = key_context()
    if args.dry_run:
        stale = print_status(context)
        print(f"dry run: nothing changed ({stale} value(s) and file(s) would be re-encrypted)")
        return 0
    keyset = context.keyset()
    if any(e.kind != LEGACY for e in keyset.retiring):  # legacy keys alone: migration, a new key too
        print(f"resuming the rotation to key {context.keyring.active.key_id} (older keys still enabled: "
              f"{', '.join(e.key_id for e in keyset.retiring)})", flush=True)
    else:
        keyset.add_key()  # a new primary: from now on every writer encrypts under it
        context.save(keyset)
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
    if print_status(context) != 0:
        return 1
    keyset = context.keyset()
    for entry in keyset.retiring:
        keyset.retire(entry.key_id)
        print(f"key {entry.key_id} retired (disabled in the keyset)")
    context.save(keyset)
    return 0
