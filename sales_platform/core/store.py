"""The platform's own file areas under the data dir, and atomic, sealed Parquet files in them.

    <data_dir>/incoming/     drop zone (the user's files)
    <data_dir>/uploads/      files received over HTTP (written only by the upload service)
    <data_dir>/archive/      originals after landing, sealed (encrypted at rest)
    <data_dir>/quarantine/   files that could not be read, each with a .reason.txt beside it
    <data_dir>/staging/      per-day fragments of the pipeline layers
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sales_platform.core.crypto import (
    DataKey,
    Keyring,
    file_binding,
    open_platform_bytes,
    seal_bytes,
    sealed_identity,
)
from sales_platform.core.private_files import create_private, private_folder

SEALED_SUFFIX = ".parquet.sealed"
PLAIN_SUFFIX = ".parquet"


def safe_name(name: str) -> str:
    """A file name safe for paths, partition and run keys (no commas, slashes or spaces)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned[:120] or "unnamed"


def _writer_id() -> str:
    """Unique per process, thread and call: concurrent runs of one day never share a temp name."""
    import threading
    import uuid

    return f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: Path, data: bytes, sync: SyncBatch | None = None) -> None:
    """Write beside the target and rename: readers see the old file or the whole new one. With
    ``sync``, the bytes wait under their temp name until the batch is synced (``SyncBatch``)."""
    if not path.parent.is_dir():  # a stat: cheaper than a mkdir that fails, file after file
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_writer_id()}.partial")
    try:
        with os.fdopen(create_private(tmp), "wb") as handle:
            handle.write(data)
            if sync is not None:
                sync.written(tmp, final=path)
                return
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if sync is None:
            tmp.unlink(missing_ok=True)


class SyncBatch:
    """Files of a batch written without an fsync each, made durable together before anything
    relies on them (``commit``): fsyncs of files already written cost about one journal commit,
    where an fsync per file as it is written costs one each. A file given a ``final`` name gets it
    only once synced; until then it is a temp file no reader takes."""

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path | None]] = []
        self._finals: set[Path] = set()

    def written(self, path: Path, final: Path | None = None) -> None:
        self._files.append((path, final))
        if final is not None:
            self._finals.add(final)

    def will_hold(self, final: Path) -> bool:
        """True when a file of the batch is to get the name ``final``."""
        return final in self._finals

    def commit(self) -> None:
        for path, _ in self._files:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for path, final in self._files:
            if final is not None:
                os.replace(path, final)
        self._files, self._finals = [], set()

    def abandon(self) -> None:
        """The batch failed: its temp files go (files written under their own name stay for the
        caller's clean-up)."""
        for path, final in self._files:
            if final is not None:
                path.unlink(missing_ok=True)
        self._files, self._finals = [], set()


# one value per row: a dictionary page per column chunk would be built and then abandoned
UNIQUE_PER_ROW = frozenset({"transaction_id", "source_row", "timestamp", "sale_ts"})


def _table_bytes(table: pa.Table) -> bytes:
    """zstd Parquet, dictionary-encoding only the columns that repeat (unique columns gain nothing
    from a dictionary and cost time and space to build one)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd",
                   use_dictionary=[n for n in table.column_names if n not in UNIQUE_PER_ROW])
    return sink.getvalue().to_pybytes()


def write_sealed_table(path: Path, table: pa.Table, key: DataKey, identity: str,
                       sync: SyncBatch | None = None) -> None:
    """Sealed as ``identity`` (crypto.fragment_identity: where it is published), so it opens only
    there. With ``sync``, written in place (a private work folder nobody reads) and synced with
    its batch, before it is published."""
    data = seal_bytes(key, _table_bytes(table), file_binding(identity))
    if sync is None:
        atomic_write_bytes(path, data)
        return
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(create_private(path), "wb") as handle:
        handle.write(data)
    sync.written(path)


def read_sealed_table(path: Path, keyring: Keyring, identity: str | None = None) -> pa.Table:
    """``identity`` defaults to the one the file's place gives (a published fragment)."""
    plain = open_platform_bytes(keyring, path.read_bytes(), identity or sealed_identity(path))
    return pq.read_table(pa.BufferReader(plain))


def write_plain_table(path: Path, table: pa.Table) -> None:
    atomic_write_bytes(path, _table_bytes(table))


def fragment_files(folder: Path) -> list[Path]:
    """The data files of a layer folder (published or being written), in order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith((SEALED_SUFFIX, PLAIN_SUFFIX))
                  and not p.name.startswith("."))


@dataclass(frozen=True)
class DataAreas:
    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def uploads(self) -> Path:
        """Where the upload service publishes: no folder sender writes here, so an upload cannot be
        replaced by a sender's file of the same name before the intake takes it."""
        return self.root / "uploads"

    @property
    def drop_folders(self) -> tuple[Path, Path]:
        """Every folder the intake takes files from."""
        return self.incoming, self.uploads

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def layer_dir(self, layer: str, day: str) -> Path:
        return self.staging / layer / day

    def ensure(self) -> None:
        for folder in (self.incoming, self.uploads, self.archive, self.quarantine, self.staging):
            private_folder(folder)

    def fragments(self, layer: str, day: str) -> list[Path]:
        return fragment_files(self.layer_dir(layer, day))

    def replace_layer(self, layer: str, day: str) -> Path:
        """A fresh temp folder to write a day's layer into; publish it with ``publish_layer``."""
        tmp = self.staging / layer / f".{day}.{_writer_id()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def publish_layer(self, layer: str, day: str, tmp: Path,
                      version: Callable[[Path], int] | None = None) -> bool:
        """Swap the day's layer folder for ``tmp`` under the layer's lock: readers holding it
        shared (``reading_layer``) see the old folder or the new one, never none or half. With
        ``version``, a folder older than the published one is discarded instead (False)."""
        final = self.layer_dir(layer, day)
        old = final.with_name(f".{day}.{_writer_id()}.old")
        with self.lock(f"layer-{layer}-{day}"):
            if version is not None and final.exists() and version(final) > version(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return True

    def reading_layer(self, layer: str, day: str):
        """Held while a day's layer is read, so a concurrent publish waits."""
        return self.lock(f"layer-{layer}-{day}", shared=True)

    @contextmanager
    def lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """An inter-process lock (flock) under staging/: exclusive for writers, shared for readers."""
        import fcntl

        self.staging.mkdir(parents=True, exist_ok=True)
        with open(self.staging / f".{name}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def lease_path(self, holder: str) -> Path:
        return self.staging / ".leases" / f"{safe_name(holder)}.lock"

    @contextmanager
    def lease(self, holder: str) -> Iterator[None]:
        """Held (flock) while ``holder`` works; the OS releases it when the process dies."""
        import fcntl

        path = self.lease_path(holder)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                path.unlink(missing_ok=True)

    def lease_abandoned(self, holder: str) -> bool:
        """True when ``holder`` took its lease and no live process holds it any more."""
        import fcntl

        path = self.lease_path(holder)
        try:
            handle = open(path)
        except FileNotFoundError:
            return False  # never taken (or released cleanly and removed)
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
