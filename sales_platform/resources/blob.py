"""Blob storage: one interface; a local folder by default."""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
from pydantic import Field

from sales_platform.core.blob_dropzone import DropContainer
from sales_platform.core.store import atomic_write_bytes


class BlobStorageResource(dg.ConfigurableResource, ABC):
    """Named blobs under a container/prefix. Writes are atomic: a reader sees all or nothing."""

    @abstractmethod
    def put_bytes(self, name: str, data: bytes) -> str:
        """Store ``data`` under ``name``; returns the blob's location for display."""

    @abstractmethod
    def get_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def list_names(self, prefix: str = "") -> list[str]: ...

    def put_file(self, name: str, path: Path) -> str:
        return self.put_bytes(name, path.read_bytes())

    def drop_container(self) -> DropContainer:
        """This storage as a blob drop zone (listing with etags, conditional download and move)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot be a blob drop zone: configure Azure Blob Storage "
            "(SALES_PLATFORM_BLOB_CONTAINER) or drop files into <DATA_DIR>/incoming")


class LocalBlobStorage(BlobStorageResource):
    """A folder on disk standing in for a container (zero-setup default)."""

    root: str = Field(description="Folder that plays the container.")

    def _path(self, name: str) -> Path:
        root = Path(self.root).resolve()
        path = (root / name).resolve()
        if root not in path.parents:
            raise ValueError(f"blob name {name!r} escapes the container folder")
        return path

    def put_bytes(self, name: str, data: bytes) -> str:
        path = self._path(name)
        atomic_write_bytes(path, data)
        return str(path)

    def put_file(self, name: str, path: Path) -> str:
        """Copy in blocks beside the target, then rename: atomic, bounded memory."""
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return str(target)

    def get_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def list_names(self, prefix: str = "") -> list[str]:
        root = Path(self.root).resolve()
        if not root.exists():
            return []
        names = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not os.path.basename(n)
                      .startswith("."))
