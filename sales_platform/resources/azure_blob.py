"""Blob storage on Azure (or Azurite): the BlobStorageResource interface on azure-storage-blob."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    ContainerClient,
    ContentSettings,
    ExponentialRetry,
)
from pydantic import Field, PrivateAttr

from sales_platform.core import settings
from sales_platform.core.blob_dropzone import BlobChangedError, BlobInfo
from sales_platform.core.urls import connection_string_endpoint, require_secure
from sales_platform.resources.blob import BlobStorageResource

T = TypeVar("T")

MIB = 1024 * 1024
# Azure commits at most 50,000 blocks per blob; checked up front rather than failing at the last block.
MAX_BLOCKS = 50_000
# Azure's container naming rule; checked locally because the service's error does not say which rule.
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class BlobStorageError(OSError):
    """A storage call failed. The message names the operation, container and blob only: never a secret.

    The SDK's own exception is deliberately not chained (its text can hold a SAS URL); the safe parts
    of it are kept as ``error_code`` (the service's code, e.g. "BlobNotFound") and ``cause_type``.
    """

    def __init__(self, operation: str, container: str, name: str | None = None, *,
                 error_code: str | None = None, cause_type: str | None = None) -> None:
        where = f"container {container!r}" + (f", blob {name!r}" if name is not None else "")
        super().__init__(f"Azure blob storage: {operation} failed ({where})")
        self.operation = operation
        self.container = container
        self.blob_name = name
        self.error_code = error_code
        self.cause_type = cause_type

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (e.g. across processes) despite the keyword-only constructor.
        return (type(self), (self.operation, self.container, self.blob_name),
                {"error_code": self.error_code, "cause_type": self.cause_type})


class BlobNotFoundError(BlobStorageError, FileNotFoundError):
    """The blob does not exist (also a FileNotFoundError, as LocalBlobStorage raises)."""


class BlobModifiedError(BlobStorageError, BlobChangedError):
    """A condition on the blob's etag failed: it was written again (HTTP 412)."""


CONDITION_FAILED = {"ConditionNotMet", "SourceConditionNotMet", "TargetConditionNotMet"}
COPY_WAIT_S = 60.0


def _strip_secrets(url: str) -> str:
    """The URL without query (a SAS), fragment or user info."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _read_chunks(handle: BinaryIO, size: int) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def _block_id(upload_id: str, index: int) -> str:
    # Same length for every block of a blob (Azure requires it); the per-upload id keeps two concurrent
    # writers of one name from overwriting each other's uncommitted blocks.
    return f"{upload_id}-{index:08d}"


def _require_https(url: str, setting: str) -> None:
    """Blob traffic (sealed files, exports, keys in headers) only over TLS; plain HTTP is for
    the local emulator (Azurite) alone: the platform's one URL policy (core/urls.py)."""
    require_secure(url, setting)


class AzureBlobStorage(BlobStorageResource):
    """A container (and optional prefix) in an Azure storage account.

    Auth, exactly one of: ``connection_string``; ``account_url`` with ``account_key``, ``sas_token``
    or ``use_default_credential``. Pass secrets as ``dg.EnvVar`` so the UI shows names, not values.
    """

    container: str = Field(description="Container name; created on first use if missing.")
    prefix: str = Field(default="", description="Folder-like prefix for every blob name, e.g. 'sales/'.")
    connection_string: str | None = Field(default=None, repr=False, description="Storage connection string.")
    account_url: str | None = Field(default=None, description="e.g. https://<account>.blob.core.windows.net")
    account_key: str | None = Field(default=None, repr=False, description="Shared key (with account_url).")
    sas_token: str | None = Field(default=None, repr=False, description="SAS token (with account_url).")
    use_default_credential: bool = Field(
        default=False, description="Use azure-identity DefaultAzureCredential (with an https account_url).")
    max_retries: int = Field(default=3, ge=0, description="Retries per HTTP request (exponential backoff).")
    retry_backoff: float = Field(default=2.0, ge=0, description="Seconds added to every retry wait.")
    retry_increment_base: float = Field(
        default=2.0, ge=0, description="Retry n waits about retry_backoff + retry_increment_base**n seconds.")
    connection_timeout: float = Field(default=20.0, gt=0, description="Seconds to establish a connection.")
    read_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for data on a connection.")
    block_size: int = Field(default=4 * MIB, ge=64 * 1024, le=64 * MIB,
                            description="Larger uploads are staged in blocks of this size, then committed.")

    _container_client: ContainerClient | None = PrivateAttr(default=None)
    _container_ready: bool = PrivateAttr(default=False)

    # ----- configuration -------------------------------------------------------------------------

    def _auth_mode(self) -> str:
        account_modes = [mode for mode, on in (("account key", self.account_key),
                                               ("SAS token", self.sas_token),
                                               ("default credential", self.use_default_credential)) if on]
        if self.connection_string:
            if self.account_url or account_modes:
                raise ValueError("AzureBlobStorage: connection_string excludes account_url, account_key, "
                                 "sas_token and use_default_credential")
            _require_https(connection_string_endpoint(self.connection_string),
                           f"{settings.BLOB_CONNECTION_STRING} (its blob endpoint)")
            return "connection string"
        if not self.account_url:
            raise ValueError("AzureBlobStorage: set connection_string, or account_url with one of "
                             "account_key, sas_token, use_default_credential")
        if len(account_modes) != 1:
            raise ValueError("AzureBlobStorage: with account_url set exactly one of account_key, sas_token, "
                             f"use_default_credential (got {len(account_modes)})")
        if account_modes[0] == "default credential" and not self.account_url.lower().startswith("https://"):
            raise ValueError("AzureBlobStorage: use_default_credential needs an https:// account_url")
        _require_https(self.account_url, settings.BLOB_ACCOUNT_URL)
        return account_modes[0]

    def _credential(self, mode: str) -> Any:
        if mode == "account key":
            return self.account_key  # the SDK pairs it with the account name in account_url
        if mode == "SAS token":
            from azure.core.credentials import AzureSasCredential

            # A credential object, not a URL query: keeps the SAS out of client.url.
            return AzureSasCredential((self.sas_token or "").lstrip("?"))
        from azure.identity import DefaultAzureCredential  # imported only when used: it is slow

        return DefaultAzureCredential()

    def _client_options(self) -> dict[str, Any]:
        retry = ExponentialRetry(initial_backoff=self.retry_backoff, increment_base=self.retry_increment_base,
                                 retry_total=self.max_retries, random_jitter_range=self.retry_backoff / 2)
        # max_single_put_size = block_size: an upload_blob of at most one block is one Put Blob request.
        return {"retry_policy": retry, "connection_timeout": self.connection_timeout,
                "read_timeout": self.read_timeout, "max_single_put_size": self.block_size,
                "max_block_size": self.block_size,
                # downloads in ranges of one block too: bounded memory per request
                "max_single_get_size": self.block_size, "max_chunk_get_size": self.block_size}

    def _new_client(self) -> ContainerClient:
        mode = self._auth_mode()
        options = self._client_options()
        # A ContainerClient of its own (not one from a BlobServiceClient): close() then really closes it.
        if mode == "connection string":
            return ContainerClient.from_connection_string(self.connection_string or "", self.container,
                                                          **options)
        return ContainerClient(self.account_url or "", self.container, credential=self._credential(mode),
                               **options)

    def _client(self) -> ContainerClient:
        """The container client, built on first use (no network call)."""
        if self._container_client is None:
            # Configuration errors are ours and safe to show as they are.
            if not CONTAINER_NAME.match(self.container):
                raise ValueError(f"invalid container name {self.container!r}: 3-63 of a-z, 0-9 and single "
                                 "hyphens, starting and ending with a letter or digit")
            self._auth_mode()
            self._container_client = self._guard("connect", None, self._new_client)
        return self._container_client

    def _ready(self) -> ContainerClient:
        """The container client, after making sure the container exists (once per resource)."""
        client = self._client()
        if not self._container_ready:
            self._guard("create container", None, lambda: self._create_container(client))
            self._container_ready = True
        return client

    @staticmethod
    def _create_container(client: ContainerClient) -> None:
        try:
            client.create_container()
        except ResourceExistsError:
            pass  # created by someone else (or by us before): what we wanted

    # ----- errors and names ----------------------------------------------------------------------

    def _guard(self, operation: str, name: str | None, call: Callable[[], T]) -> T:
        """Run ``call``; SDK errors become a BlobStorageError that carries no secret."""
        try:
            return call()
        except (AzureError, ValueError) as exc:
            code = getattr(exc, "error_code", None)
            kind = BlobNotFoundError if isinstance(exc, ResourceNotFoundError) and name else \
                BlobModifiedError if (code in CONDITION_FAILED or getattr(exc, "status_code", None)
                                      == 412) and name else BlobStorageError
            error = kind(operation, self.container, name,
                         error_code=getattr(exc, "error_code", None), cause_type=type(exc).__name__)
        # Raised outside the except block so the SDK error is not even attached as __context__.
        raise error

    def _full_name(self, name: str) -> str:
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or any(p in (".", "..") for p in parts):
            raise ValueError(f"invalid blob name {name!r}: use relative names like 'dir/file.parquet'")
        return self._prefix() + name

    def _prefix(self) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    # ----- the interface -------------------------------------------------------------------------

    def describe(self) -> str:
        """Where blobs go, for display: account URL, container and prefix; never a credential."""
        try:
            mode = self._auth_mode()
            url = _strip_secrets(self._client().url)
        except (ValueError, BlobStorageError):
            return f"azure blob container {self.container!r} (not configured)"
        return f"{url}/{self._prefix()} (auth: {mode})"

    def put_bytes(self, name: str, data: bytes) -> str:
        full = self._full_name(name)
        if len(data) > self.block_size:
            view = memoryview(data)
            return self._upload_blocks(full, (view[i:i + self.block_size]
                                              for i in range(0, len(data), self.block_size)))
        blob = self._ready().get_blob_client(full)
        settings = ContentSettings(content_md5=bytearray(hashlib.md5(data).digest()))
        # One Put Blob request: readers see the old blob or the whole new one.
        self._guard("upload", full, lambda: blob.upload_blob(
            data, overwrite=True, content_settings=settings, validate_content=True))
        return _strip_secrets(blob.url)

    def put_file(self, name: str, path: Path) -> str:
        """Upload a file of any size with memory bounded by ``block_size``."""
        path = Path(path)
        size = path.stat().st_size
        if size <= self.block_size:
            return self.put_bytes(name, path.read_bytes())
        if size > MAX_BLOCKS * self.block_size:
            raise ValueError(f"{path.name}: {size} bytes exceeds {MAX_BLOCKS} blocks of {self.block_size}")
        full = self._full_name(name)
        with open(path, "rb") as handle:
            return self._upload_blocks(full, _read_chunks(handle, self.block_size))

    def _upload_blocks(self, full: str, chunks: Iterator[bytes] | Iterator[memoryview]) -> str:
        """Stage every chunk as an uncommitted block, then commit: the blob changes only at the commit."""
        blob = self._ready().get_blob_client(full)
        upload_id = uuid.uuid4().hex
        digest = hashlib.md5()  # of the whole content, for the blob's Content-MD5, without a second read
        block_ids: list[str] = []
        for index, chunk in enumerate(chunks):
            block = bytes(chunk)
            digest.update(block)
            block_id = _block_id(upload_id, index)
            stage = partial(blob.stage_block, block_id, block, validate_content=True)
            self._guard("upload block", full, stage)
            block_ids.append(block_id)
        settings = ContentSettings(content_md5=bytearray(digest.digest()))
        # Put Block List does not check this MD5 (each block's was checked on staging); it is stored.
        self._guard("commit", full, lambda: blob.commit_block_list(
            [BlobBlock(block_id=b) for b in block_ids], content_settings=settings))
        return _strip_secrets(blob.url)

    def get_bytes(self, name: str) -> bytes:
        full = self._full_name(name)
        blob = self._ready().get_blob_client(full)
        download = self._guard("download", full, blob.download_blob)
        data = self._guard("download", full, download.readall)
        stored = download.properties.content_settings.content_md5
        # End-to-end check against the MD5 stored at upload (absent on blobs written by other tools).
        if stored and bytes(stored) != hashlib.md5(data).digest():
            raise BlobStorageError("download (content MD5 mismatch)", self.container, full)
        return data

    def list_names(self, prefix: str = "") -> list[str]:
        """Names (relative to the resource prefix) that start with ``prefix``, sorted."""
        root = self._prefix()
        client = self._ready()
        names = self._guard(f"list {root + prefix!r}", None,
                            lambda: list(client.list_blob_names(name_starts_with=root + prefix)))
        return sorted(n[len(root):] for n in names)

    def exists(self, name: str) -> bool:
        full = self._full_name(name)
        blob = self._ready().get_blob_client(full)
        return self._guard("exists", full, blob.exists)

    def delete(self, name: str) -> bool:
        """Delete the blob (and its snapshots); False when it was not there."""
        full = self._full_name(name)
        blob = self._ready().get_blob_client(full)
        try:
            self._guard("delete", full, lambda: blob.delete_blob(delete_snapshots="include"))
        except BlobNotFoundError:
            return False
        return True

    # ----- the blob drop zone (core.blob_dropzone.DropContainer) ---------------------------------

    def drop_container(self) -> AzureBlobStorage:
        return self

    def list_blobs(self, prefix: str = "") -> list[BlobInfo]:
        """Blobs under ``prefix`` (names relative to the resource prefix) with etag, time, size."""
        root = self._prefix()
        client = self._ready()
        found = self._guard(f"list {root + prefix!r}", None,
                            lambda: list(client.list_blobs(name_starts_with=root + prefix)))
        return sorted((BlobInfo(b.name[len(root):], b.etag, b.last_modified, b.size) for b in found),
                      key=lambda b: b.name)

    def download_to(self, name: str, etag: str, target: Path) -> None:
        """Stream the blob into ``target`` only while its etag is ``etag`` (every range request
        carries the condition): an overwrite before or during the download raises
        BlobModifiedError, never a mix of two versions."""
        full = self._full_name(name)
        blob = self._ready().get_blob_client(full)

        def stream() -> None:
            download = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
            with open(target, "wb") as handle:
                for chunk in download.chunks():
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())

        self._guard("download", full, stream)

    def etag_of(self, name: str) -> str | None:
        full = self._full_name(name)
        blob = self._ready().get_blob_client(full)
        try:
            return self._guard("properties", full, blob.get_blob_properties).etag
        except BlobNotFoundError:
            return None

    def move_if_unchanged(self, name: str, etag: str, target: str) -> bool:
        """Server-side copy to ``target`` and delete, both conditioned on the source's etag;
        False when the blob was written again (it is then left in place: a new version)."""
        full, dest = self._full_name(name), self._full_name(target)
        client = self._ready()
        source, copy = client.get_blob_client(full), client.get_blob_client(dest)
        url = source.url
        if self.sas_token and "?" not in url:  # a credential object: the copy source needs it too
            url = f"{url}?{self.sas_token.lstrip('?')}"
        try:
            self._guard("copy", dest, lambda: copy.start_copy_from_url(
                url, source_etag=etag, source_match_condition=MatchConditions.IfNotModified))
            self._await_copy(copy, dest)
            self._guard("delete", full, lambda: source.delete_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified))
        except BlobModifiedError:
            return False
        except BlobNotFoundError:
            return False  # removed meanwhile: nothing left to move
        return True

    def _await_copy(self, copy: Any, dest: str) -> None:
        """Same-account copies are usually done at once; otherwise poll until they are."""
        deadline = time.monotonic() + COPY_WAIT_S
        while True:
            status = self._guard("copy status", dest, copy.get_blob_properties).copy.status
            if status in (None, "success"):
                return
            if status != "pending" or time.monotonic() > deadline:
                raise BlobStorageError(f"copy ({status})", self.container, dest)
            time.sleep(0.2)

    def close(self) -> None:
        """Close the HTTP connections (the resource reconnects if used again)."""
        if self._container_client is not None:
            self._container_client.close()
            self._container_client = None
            self._container_ready = False

    def teardown_after_execution(self, context: Any) -> None:
        self.close()

