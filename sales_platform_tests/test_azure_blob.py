"""AzureBlobStorage against the real Azurite emulator (the ``azurite`` fixture)."""

from __future__ import annotations

import hashlib
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerClient,
    ContentSettings,
    ResourceTypes,
    generate_account_sas,
)

import sales_platform.resources.azure_blob as azure_blob
from sales_platform.resources.azure_blob import AzureBlobStorage, BlobNotFoundError, BlobStorageError
from sales_platform.resources.blob import BlobStorageResource
from sales_platform_tests.azurite import SKIP_VARIABLE, AzuriteServer, require_azurite_installed
from sales_platform_tests.eventually import call_within

MIB = 1024 * 1024
# Quick to give up while Azurite is down, so outage tests stay fast.
FAST_FAIL = {"max_retries": 2, "retry_backoff": 0.05, "retry_increment_base": 0.1,
             "connection_timeout": 2.0, "read_timeout": 5.0}

# "Fails fast" with FAST_FAIL against a stopped Azurite: the connection is refused at once, so three
# attempts and their sub-second backoffs take well under a second, also on a loaded 2-core machine.
# The bound is generous for that and still below what the resource's default retries alone wait
# (3 retries backing off ~4, 6 and 10 s): a configuration that is not applied fails the test.
FAIL_FAST_LIMIT_S = 12.0

Factory = Callable[..., AzureBlobStorage]


def _sas_token(azurite: AzuriteServer) -> str:
    return generate_account_sas(azurite.account_name, azurite.account_key,
                                resource_types=ResourceTypes(service=True, container=True, object=True),
                                permission=AccountSasPermissions(read=True, write=True, delete=True,
                                                                 list=True, create=True, add=True),
                                expiry=datetime.now(UTC) + timedelta(hours=1))


def _auth(azurite: AzuriteServer, mode: str) -> dict[str, str]:
    if mode == "connection string":
        return {"connection_string": azurite.connection_string}
    if mode == "account key":
        return {"account_url": azurite.account_url, "account_key": azurite.account_key}
    if mode == "sas token":
        return {"account_url": azurite.account_url, "sas_token": _sas_token(azurite)}
    assert mode == "sas connection string"  # the SDK puts this SAS into the client's URL
    sas = _sas_token(azurite)
    return {"connection_string": f"BlobEndpoint={azurite.account_url};SharedAccessSignature={sas}"}


AUTH_MODES = ["connection string", "account key", "sas token", "sas connection string"]


@pytest.fixture
def container() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def raw(azurite: AzuriteServer, container: str) -> ContainerClient:
    """The SDK's own view of the container, to check what the resource really stored."""
    return ContainerClient.from_connection_string(azurite.connection_string, container)


@pytest.fixture
def storage(azurite: AzuriteServer, container: str) -> Factory:
    def make(mode: str = "connection string", **config: object) -> AzureBlobStorage:
        return AzureBlobStorage(container=container, **_auth(azurite, mode), **config)
    return make


def _secrets(azurite: AzuriteServer, blob: AzureBlobStorage | None = None) -> list[str]:
    configured = (blob.connection_string, blob.sas_token) if blob else ()
    return [s for s in (azurite.account_key, azurite.connection_string, *configured) if s]


def _assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text
    assert "AccountKey" not in text and "sig=" not in text


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_round_trip_stores_content_md5(storage: Factory, raw: ContainerClient, mode: str) -> None:
    blob = storage(mode, prefix="exports/")
    data = os.urandom(1000)

    location = blob.put_bytes("2024/sales.parquet", data)

    assert blob.get_bytes("2024/sales.parquet") == data
    assert location.endswith("/exports/2024/sales.parquet")
    props = raw.get_blob_client("exports/2024/sales.parquet").get_blob_properties()
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()
    assert blob.exists("2024/sales.parquet") and not blob.exists("2024/other.parquet")


def test_overwrite_replaces_whole_blob(storage: Factory) -> None:
    blob = storage(block_size=64 * 1024)
    blob.put_bytes("a.bin", b"first version, longer than the second")
    blob.put_bytes("a.bin", b"second")
    assert blob.get_bytes("a.bin") == b"second"

    big = os.urandom(200 * 1024)  # staged blocks replacing a single-put blob, and back
    blob.put_bytes("a.bin", big)
    assert blob.get_bytes("a.bin") == big
    blob.put_bytes("a.bin", b"small again")
    assert blob.get_bytes("a.bin") == b"small again"
    assert blob.list_names() == ["a.bin"]


def test_list_names_relative_to_prefix(storage: Factory) -> None:
    blob = storage(prefix="exports")
    for name in ("2024/b.csv", "2024/a.csv", "2025/c.csv"):
        blob.put_bytes(name, name.encode())
    storage().put_bytes("elsewhere/2024/x.csv", b"outside the prefix")

    assert blob.list_names() == ["2024/a.csv", "2024/b.csv", "2025/c.csv"]
    assert blob.list_names("2024/") == ["2024/a.csv", "2024/b.csv"]
    assert blob.list_names("2026/") == []
    assert storage().list_names("elsewhere/") == ["elsewhere/2024/x.csv"]


def test_large_put_file_is_staged_in_blocks(storage: Factory, raw: ContainerClient, tmp_path: Path) -> None:
    blob = storage()
    path = tmp_path / "big.bin"
    data = os.urandom(9 * MIB + 123)
    path.write_bytes(data)

    blob.put_file("big.bin", path)

    committed, uncommitted = raw.get_blob_client("big.bin").get_block_list("all")
    assert len(committed) == 3 and not uncommitted  # 4 MiB + 4 MiB + the rest
    props = raw.get_blob_client("big.bin").get_blob_properties()
    assert props.size == len(data)
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()
    assert blob.get_bytes("big.bin") == data


def test_delete_and_missing_blob(storage: Factory) -> None:
    blob = storage()
    blob.put_bytes("gone.txt", b"x")
    assert blob.delete("gone.txt") is True
    assert blob.delete("gone.txt") is False
    with pytest.raises(FileNotFoundError) as raised:  # as LocalBlobStorage raises
        blob.get_bytes("gone.txt")
    assert isinstance(raised.value, BlobNotFoundError)
    assert raised.value.error_code == "BlobNotFound"


def test_download_detects_content_md5_mismatch(storage: Factory, raw: ContainerClient) -> None:
    blob = storage()
    blob.put_bytes("c.bin", b"payload")
    wrong = ContentSettings(content_md5=bytearray(hashlib.md5(b"something else").digest()))
    raw.get_blob_client("c.bin").set_http_headers(content_settings=wrong)
    with pytest.raises(BlobStorageError, match="MD5 mismatch"):
        blob.get_bytes("c.bin")


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_describe_shows_location_without_secrets(azurite: AzuriteServer, storage: Factory, container: str,
                                                 mode: str) -> None:
    blob = storage(mode, prefix="exports/")
    text = blob.describe()
    assert text.startswith(f"{azurite.account_url}/{container}/exports/")
    _assert_no_secret(text + repr(blob), _secrets(azurite, blob))


def test_auth_failure_names_blob_but_not_key(azurite: AzuriteServer, container: str) -> None:
    wrong_key = "A" * 86 + "=="
    blob = AzureBlobStorage(container=container, account_url=azurite.account_url, account_key=wrong_key,
                            **FAST_FAIL)
    with pytest.raises(BlobStorageError) as raised:
        blob.put_bytes("x.bin", b"data")
    error = raised.value
    assert str(error).startswith("Azure blob storage: create container failed") and container in str(error)
    assert error.error_code == "AuthorizationFailure"
    _assert_no_secret("".join(traceback.format_exception(error)), [wrong_key, azurite.account_key])


def test_config_errors_are_plain_and_secret_free(azurite: AzuriteServer) -> None:
    both = AzureBlobStorage(container="data", connection_string=azurite.connection_string,
                            account_url=azurite.account_url, account_key=azurite.account_key)
    with pytest.raises(ValueError, match="connection_string excludes") as raised:
        both.get_bytes("x")
    _assert_no_secret(str(raised.value), _secrets(azurite))
    with pytest.raises(ValueError, match="exactly one"):
        AzureBlobStorage(container="data", account_url=azurite.account_url).get_bytes("x")
    with pytest.raises(ValueError, match="invalid container name"):
        AzureBlobStorage(container="Bad_Name", connection_string=azurite.connection_string).get_bytes("x")
    with pytest.raises(ValueError, match="invalid blob name"):
        AzureBlobStorage(container="data", connection_string=azurite.connection_string).get_bytes("../x")


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_upload_during_outage_fails_fast_then_succeeds(azurite: AzuriteServer, storage: Factory,
                                                       mode: str) -> None:
    blob = storage(mode, **FAST_FAIL)
    blob.put_bytes("before.txt", b"written before the outage")

    with azurite.outage(), pytest.raises(BlobStorageError) as raised:
        call_within(f"an upload to a stopped Azurite with {FAST_FAIL}",
                    lambda: blob.put_bytes("during.txt", b"payload"), FAIL_FAST_LIMIT_S)

    error = raised.value
    where = f"container {blob.container!r}, blob 'during.txt'"
    assert str(error) == f"Azure blob storage: upload failed ({where})"
    assert error.cause_type == "ServiceRequestError"
    assert error.__cause__ is None and error.__context__ is None  # the SDK's text (with the URL) is dropped
    _assert_no_secret("".join(traceback.format_exception(error)), _secrets(azurite, blob))

    assert not blob.exists("during.txt")  # nothing under the final name
    assert blob.get_bytes("before.txt") == b"written before the outage"  # same data folder after restart
    blob.put_bytes("during.txt", b"payload")
    assert blob.get_bytes("during.txt") == b"payload"


def test_outage_between_blocks_keeps_old_blob(azurite: AzuriteServer, storage: Factory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    blob = storage(block_size=64 * 1024, **FAST_FAIL)
    blob.put_bytes("report.bin", b"old complete version")
    path = tmp_path / "new.bin"
    path.write_bytes(os.urandom(5 * 64 * 1024))
    read_chunks = azure_blob._read_chunks

    def chunks_then_outage(handle: BinaryIO, size: int) -> Iterator[bytes]:
        # The first block is staged, then the service goes away before the second.
        chunks = read_chunks(handle, size)
        yield next(chunks)
        azurite.stop()
        yield from chunks

    monkeypatch.setattr(azure_blob, "_read_chunks", chunks_then_outage)
    try:
        with pytest.raises(BlobStorageError, match="upload block failed"):
            blob.put_file("report.bin", path)
    finally:
        azurite.start()
    assert blob.get_bytes("report.bin") == b"old complete version"

    monkeypatch.undo()
    blob.put_file("report.bin", path)
    assert blob.get_bytes("report.bin") == path.read_bytes()


def test_works_as_dagster_resource_with_env_secret(azurite: AzuriteServer, container: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZURE_BLOB_CONNECTION", azurite.connection_string)

    @dg.asset
    def exported(blob: BlobStorageResource) -> str:
        return blob.put_bytes("exported.csv", b"id,total\n1,9.5\n")

    secret = dg.EnvVar("TEST_AZURE_BLOB_CONNECTION")
    result = dg.materialize([exported], resources={"blob": AzureBlobStorage(container=container,
                                                                            connection_string=secret)})

    assert result.success
    assert result.output_for_node("exported").endswith(f"/{container}/exported.csv")
    check = AzureBlobStorage(container=container, connection_string=azurite.connection_string)
    assert check.get_bytes("exported.csv") == b"id,total\n1,9.5\n"


@pytest.mark.parametrize("opt_out", ["", "0"])
def test_missing_azurite_fails_the_azure_tests_without_the_opt_out(opt_out, monkeypatch):
    monkeypatch.setenv(SKIP_VARIABLE, opt_out)
    with pytest.raises(pytest.fail.Exception, match=f"make install-dev.*{SKIP_VARIABLE}=1"):
        require_azurite_installed()


def test_missing_azurite_skips_with_the_opt_out_outside_ci(monkeypatch):
    monkeypatch.setenv(SKIP_VARIABLE, "1")
    monkeypatch.setattr("sales_platform_tests.conftest.IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=f"{SKIP_VARIABLE} is set"):
        require_azurite_installed()
    monkeypatch.setattr("sales_platform_tests.conftest.IN_CI", True)  # in CI the opt-out is no excuse
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        require_azurite_installed()
