"""One URL policy for every outbound URL (products API, webhook, OpenLineage, Azure, PostgreSQL):
read as the HTTP library reads it, plain HTTP only to this machine; `check` reports each setting."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from sales_platform.cli import main
from sales_platform.core import preflight
from sales_platform.core.alerts import RunFailureAlert, post_alert
from sales_platform.core.urls import UrlPolicyError, connection_string_endpoint, require_secure
from sales_platform.resources.products_api import ProductsApiError, ProductsApiResource

KEY = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="


@pytest.mark.parametrize("url", [
    "https://api.example.com", "HTTPS://API.example.com:8443/v1", "hTTp://localhost:5050",
    "http://127.0.0.1:5050/x", "http://127.5.6.7", "http://[::1]:8080/", "http://LOCALHOST",
])
def test_https_anywhere_and_http_to_this_machine_are_taken(url: str) -> None:
    assert require_secure(url, "SETTING").url == url


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.2:5716\\@127.0.0.1:5710", "backslash"),  # urllib3: 127.0.0.2, urlsplit: 127.0.0.1
    ("https://api.example.com\\@127.0.0.1", "backslash"),
    ("http://example.com", "must be https://"),
    ("HTTP://example.com", "must be https://"),
    ("http://localhost.example.com", "must be https://"),
    ("http://127.0.0.1.nip.io", "must be https://"),
    ("http://[::2]:80", "must be https://"),
    ("http://[::ffff:10.0.0.1]", "must be https://"),
    ("http://10.0.0.5", "must be https://"),
    ("http://user@evil.example@127.0.0.1/", "credentials"),
    ("http://127.0.0.1:80@evil.example/", "credentials"),
    ("https://u:pw@api.example.com", "credentials"),
    ("ftp://localhost/x", r"not an http\(s\) URL"),
    ("//api.example.com", r"not an http\(s\) URL"),
    ("https://", "no host"),
    ("https://api.example.com /x", "whitespace"),
    ("https://api.example.com\t/x", "whitespace"),
    ("http://127.0.0.1:99999", "not a URL|differently"),
])
def test_tricks_and_plain_http_elsewhere_are_refused(url: str, why: str) -> None:
    with pytest.raises(UrlPolicyError, match=why) as info:
        require_secure(url, "SOME_SETTING")
    assert str(info.value).startswith("SOME_SETTING: ")
    assert "pw" not in str(info.value) or "***" in str(info.value)


def _listener(host: str) -> tuple[socket.socket, list[bytes]]:
    """A socket on ``host`` that records whatever a client sends it."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen()
    server.settimeout(3)
    received: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                received.append(conn.recv(65536))
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    return server, received


def test_products_client_sends_nothing_to_the_host_urllib3_would_pick() -> None:
    """The attack: urlsplit sees 127.0.0.1 (allowed), requests connects to 127.0.0.2 with the token."""
    decoy, received = _listener("127.0.0.2")
    try:
        port = decoy.getsockname()[1]
        api = ProductsApiResource(base_url=f"http://127.0.0.2:{port}\\@127.0.0.1:5710", token="s3cret-token",
                                  max_retries=0, timeout_s=2)
        with pytest.raises(ProductsApiError, match="backslash"):
            api.health()
    finally:
        decoy.close()
    assert received == []


@pytest.fixture
def check_env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("SALES_PLATFORM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SALES_PLATFORM_ENCRYPTION_KEY", KEY)
    return {}


def _check(capsys) -> tuple[int, str, str]:
    status = main(["check", "--offline"])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SALES_PLATFORM_ALERT_WEBHOOK", "http://hooks.example.com/alert", "must be https://"),
    ("SALES_PLATFORM_ALERT_WEBHOOK", "https://hooks.example.com\\@127.0.0.1/", "backslash"),
    ("SALES_PLATFORM_OPENLINEAGE_URL", "http://marquez.example.com:5000", "must be https://"),
    ("SALES_PLATFORM_API_URL", "http://127.0.0.2:5716\\@127.0.0.1:5710", "backslash"),
    ("SALES_PLATFORM_API_URL", "HTTP://api.example.com", "must be https://"),
    ("SALES_PLATFORM_BLOB_ACCOUNT_URL", "http://acct.blob.core.windows.net", "must be https://"),
])
def test_check_names_each_url_setting_the_policy_refuses(check_env, capsys, monkeypatch, variable, value,
                                                         message) -> None:
    monkeypatch.setenv(variable, value)
    if variable.startswith("SALES_PLATFORM_BLOB"):
        monkeypatch.setenv("SALES_PLATFORM_BLOB_CONTAINER", "c")
        monkeypatch.setenv("SALES_PLATFORM_BLOB_ACCOUNT_KEY", "k")
    status, out, err = _check(capsys)
    assert status == 2 and "configuration OK" not in out
    assert f"configuration: {variable}: " in err and message in err


@pytest.mark.parametrize("connection", [
    "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;blobendpoint=http://blobs.example/a",
    "defaultendpointsprotocol=http;accountname=a;accountkey=k",
    "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;BLOBENDPOINT=http://10.1.2.3:10000/a",
])
def test_azure_endpoints_are_read_in_any_case(check_env, capsys, monkeypatch, connection: str) -> None:
    from sales_platform.resources.azure_blob import AzureBlobStorage

    assert connection_string_endpoint(connection).startswith("http://")
    with pytest.raises(ValueError, match="must be https://"):
        AzureBlobStorage(container="c", connection_string=connection)._auth_mode()
    monkeypatch.setenv("SALES_PLATFORM_BLOB_CONTAINER", "c")
    monkeypatch.setenv("SALES_PLATFORM_BLOB_CONNECTION_STRING", connection)
    status, _, err = _check(capsys)
    assert status == 2 and "SALES_PLATFORM_BLOB_CONNECTION_STRING: its blob endpoint" in err
    assert "AccountKey=k" not in err and "accountkey=k" not in err


def test_webhook_and_openlineage_refuse_plain_http_when_sending(tmp_path: Path) -> None:
    from sales_platform.defs.governance.openlineage import client_for

    alert = RunFailureAlert(run_id="r", job_name="j", status="FAILURE", failed_at="now")
    with pytest.raises(UrlPolicyError, match="SALES_PLATFORM_ALERT_WEBHOOK: must be https://"):
        post_alert("http://hooks.example.com/x", alert)
    with pytest.raises(UrlPolicyError, match="SALES_PLATFORM_OPENLINEAGE_URL: must be https://"):
        client_for(tmp_path, "http://marquez.example.com:5000")


@pytest.mark.parametrize(("url", "outcome"), [
    ("postgresql+psycopg://u:pw@db.example.internal:5432/sales", "refused"),
    ("postgresql+psycopg://u:pw@db.example.internal/sales?sslmode=prefer", "refused"),
    ("postgresql+psycopg://u:pw@10.0.0.7/sales?sslmode=disable", "refused"),
    ("postgresql+psycopg://u:pw@db.example.internal/sales?sslmode=require", "warned"),
    ("postgresql+psycopg://u:pw@db.example.internal/sales?sslmode=verify-ca", "warned"),
    ("postgresql+psycopg://u:pw@db.example.internal/sales?sslmode=verify-full", "ok"),
    ("postgresql+psycopg://u:pw@127.0.0.1:5432/sales", "ok"),
    ("postgresql+psycopg://u:pw@[::1]:5432/sales", "ok"),
    ("postgresql+psycopg://u:pw@/sales?host=/var/run/postgresql", "ok"),
])
def test_postgresql_beyond_this_machine_needs_verified_tls(check_env, capsys, monkeypatch, url: str,
                                                           outcome: str) -> None:
    monkeypatch.setenv("SALES_PLATFORM_DB_URL", url)
    status, out, err = _check(capsys)
    assert "pw" not in out + err
    if outcome == "refused":
        assert status == 2 and "SALES_PLATFORM_DB_URL: " in err and "sslmode=verify-full" in err
        from sales_platform.resources.warehouse import SqlUrlWarehouse

        with pytest.raises(preflight.ConfigurationError, match="sslmode=verify-full"):
            SqlUrlWarehouse(database_url=url).url()
    elif outcome == "warned":
        assert status == 0 and "configuration OK, with 1 warning(s)" in out
        assert "warning: SALES_PLATFORM_DB_URL: sslmode=" in out and "use sslmode=verify-full" in out
    else:
        assert status == 0 and "configuration OK" in out and "warning" not in out
