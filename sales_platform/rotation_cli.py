"""The `rotate-keys` and `key-status` commands (wired into sales_platform.cli).

Both read the configuration the same way as the other commands: the keyset (wrapped under the master
key of SALES_PLATFORM_ENCRYPTION_KEY or SALES_PLATFORM_ENCRYPTION_KEY_FILE) holds the primary key and
the older keys that still decrypt. ``rotate-keys`` adds a key and makes it primary (unless a rotation is
already under way: then it resumes it), re-encrypts everything, then retires the older keys.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from tqdm import tqdm

from sales_platform.core import settings
from sales_platform.core.crypto import UNBOUND, UNKNOWN_KEY, Keyring
from sales_platform.core.keyset import LEGACY, Keyset, save_keyset
from sales_platform.core.rotation import (
    NOT_A_TOKEN,
    BatchDone,
    RotationError,
    rotate_keys,
    sealed_counts_by_key,
    staged_token_counts_by_key,
    stale_rows,
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
    if key_id in (NOT_A_TOKEN, UNKNOWN_KEY, UNBOUND):
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


FILE_TARGETS = ("staged token files", "sealed files")


class RotationProgress:
    """Progress of ``rotate-keys`` on stderr (stdout keeps the report): one tqdm bar per table on a
    terminal, otherwise (logs, CI, cron) one line per committed batch with rows done of the total."""

    def __init__(self, totals: dict[str, int], stream: TextIO | None = None,
                 bars: bool | None = None) -> None:
        self.totals = totals
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.done: Counter[str] = Counter()
        self.rotated: Counter[str] = Counter()
        self._target: str | None = None
        self._bar: tqdm | None = None

    def __call__(self, batch: BatchDone) -> None:
        if batch.target != self._target:
            self.close()
            self._target = batch.target
            if self.bars:
                files = batch.target in FILE_TARGETS
                self._bar = tqdm(total=None if files else self.totals.get(batch.target), desc=batch.target,
                                 unit="file" if files else "row", file=self.stream, leave=True)
        self.done[batch.target] += batch.items
        self.rotated[batch.target] += batch.rotated
        if self._bar is not None:
            self._bar.update(batch.items)
            self._bar.set_postfix(re_encrypted=self.rotated[batch.target], refresh=False)
        else:
            print(self._line(batch), file=self.stream, flush=True)

    def _line(self, batch: BatchDone) -> str:
        target, done = batch.target, self.done[batch.target]
        if target in FILE_TARGETS:
            return f"  {target}: {done} rewritten"
        total = self.totals.get(target)
        of = f"/{total}" if total is not None and total >= done else ""
        return (f"  {target}: {done}{of} row(s); batch of {batch.items} row(s), "
                f"{batch.rotated} value(s) re-encrypted")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    if not (settings.value(settings.ENCRYPTION_KEY) or settings.value(settings.ENCRYPTION_KEY_FILE)):
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
    progress = RotationProgress(stale_rows(context.engine, context.keyring.active.key_id, context.sensitive))
    try:
        report = rotate_keys(context.engine, context.keyring, context.areas, batch_size=args.batch_size,
                             progress=progress, archive_sink=context.archive_sink,
                             sensitive=context.sensitive, accept_unbound=not keyset.files_bound)
    except RotationError as exc:
        progress.close()
        print(f"rotation stopped: {exc}\nwhat was committed stays rotated; fix the cause and rerun",
              file=sys.stderr)
        return 1
    progress.close()
    print("\n".join(report.lines()))
    if print_status(context) != 0:
        return 1
    keyset = context.keyset()
    for entry in keyset.retiring:
        keyset.retire(entry.key_id)
        print(f"key {entry.key_id} retired (disabled in the keyset)")
    keyset.files_bound = True  # every sealed file is bound now: none sealed without its name is opened
    context.save(keyset)
    _warn_derived(keyset, context.master)
    return 0


def _warn_derived(keyset: Keyset, master: bytes) -> None:
    """A keyset made in demo mode (or before first keys were random) holds a key derived from the
    master key: retired, but Dagster's run history keeps tokens under it (previews)."""
    from sales_platform.core.keyset import derived_entries

    for entry in derived_entries(keyset, master):
        print(f"warning: key {entry.key_id} is derived from the master key: tokens under it kept in "
              "Dagster's run history (metadata previews) stay readable with the master key alone. "
              "Delete the runs from before this rotation, or accept it (docs/security.md, "
              "'Where each key lives')", file=sys.stderr)
