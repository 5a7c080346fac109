"""TLS in transit, verified: the products API over HTTPS (gunicorn) and PostgreSQL with
sslmode=verify-full on a throwaway cluster this module starts, both with a CA made here.

A certificate signed by another CA is refused in both cases.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from sales_platform.core.warehouse.engine import dispose_all
from sales_platform.core.warehouse.tables import sales
from sales_platform.resources.products_api import ProductsApiError, ProductsApiResource
from sales_platform_tests.api_server import gunicorn_api
from sales_platform_tests.conftest import skip_or_fail
from sales_platform_tests.eventually import eventually
from sales_platform_tests.helpers import SALES_CHAIN, materialize, resources_for, write_csv
from sales_platform_tests.ports import PortInUse, start_on_free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TOKEN = "tls-token-8b2e41"


# --- a CA and a server certificate, made with cryptography's x509 --------------------------------

@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate clients trust
    other_ca: Path  # a CA that did not sign the server certificate
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(folder: Path) -> Pki:
    ca_key, ca_cert = _ca("sales-platform test CA")
    _, other = _ca("sales-platform other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(IPv4Address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(_pem(ca_cert))
    pki.other_ca.write_bytes(_pem(other))
    pki.cert.write_bytes(_pem(cert))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    pki.key.chmod(0o600)
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- the products API over HTTPS ------------------------------------------------------------------

def test_products_api_over_https_verifies_the_server_certificate(pki: Pki, tmp_path: Path) -> None:
    product = {"product_id": "P1", "name": "Widget", "category": "toys", "unit_price": 2.5,
               "updated_at": "2024-03-01T12:00:00"}
    with gunicorn_api(tmp_path / "store.sqlite", TOKEN, pki.cert, pki.key) as base_url:
        assert base_url.startswith("https://localhost:")
        client = ProductsApiResource(base_url=base_url, token=TOKEN, ca_bundle=str(pki.ca))
        assert client.put_products([product])["inserted"] == 1
        assert list(client.iter_products()) == [product]

        for refused in (ProductsApiResource(base_url=base_url, ca_bundle=str(pki.other_ca)),
                        ProductsApiResource(base_url=base_url)):  # the system store: not our CA
            with pytest.raises(ProductsApiError, match="TLS verification failed"):
                refused.health()
        # The certificate names localhost and 127.0.0.1, not this name.
        elsewhere = base_url.replace("localhost", "127.0.0.2")
        with pytest.raises(ProductsApiError, match="TLS verification failed|no response"):
            ProductsApiResource(base_url=elsewhere, ca_bundle=str(pki.ca), max_retries=0).health()


@pytest.mark.parametrize("url", ["http://api.example.com:5050", "ftp://localhost/x", "http://10.0.0.5"])
def test_plain_http_is_refused_outside_this_machine(url: str) -> None:
    with pytest.raises(ProductsApiError, match="must be https://"):
        ProductsApiResource(base_url=url, max_retries=0).health()


# --- PostgreSQL with sslmode=verify-full -----------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    port: int
    pki: Pki

    def url(self, ca: Path, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://postgres@localhost:{self.port}/{database}"
                f"?sslmode=verify-full&sslrootcert={quote(str(ca))}")


def _as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                          capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def cluster(pki: Pki) -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster in a temp dir, TLS only (hostssl), trust auth on 127.0.0.1."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        skip_or_fail(f"PostgreSQL server binaries not found in {PG_BIN} (or runuser missing)")
    root = Path(tempfile.mkdtemp(prefix="sp-tls-pg-"))
    data, tls = root / "data", root / "tls"
    tls.mkdir()
    for source, target in ((pki.cert, "server.pem"), (pki.key, "server.key")):
        shutil.copy(source, tls / target)
    shutil.chown(root, "postgres")
    for path in (tls, tls / "server.pem", tls / "server.key"):
        shutil.chown(path, "postgres")
    (tls / "server.key").chmod(0o600)
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                 "--no-sync")
    (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
                                      "hostssl all all ::1/128 trust\n")
    log = root / "server.log"

    def start(port: int) -> tuple[subprocess.Popen, int]:
        process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data),
             "-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
             "-c", "ssl=on", "-c", f"ssl_cert_file={tls / 'server.pem'}",
             "-c", f"ssl_key_file={tls / 'server.key'}", "-c", "fsync=off"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        ready = eventually("the throwaway PostgreSQL to accept connections",
                           lambda: _ready(process, port, log), timeout=60, interval=0.2,
                           diagnose=lambda: log.read_text(errors="replace")[-2000:])
        if ready == "in use":
            process.wait(timeout=10)
            raise PortInUse(f"port {port}")
        return process, port

    process = None
    try:
        process, port = start_on_free_port(start)
        yield Cluster(port, pki)
    finally:
        dispose_all()
        if process is not None and process.poll() is None:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "stop",
                            "-D", str(data), "-m", "immediate"], capture_output=True)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _ready(process: subprocess.Popen, port: int, log: Path) -> str | None:
    if process.poll() is not None:
        text_ = log.read_text(errors="replace")
        if "Address already in use" in text_ or "could not bind" in text_:
            return "in use"
        raise AssertionError(f"postgres exited with {process.returncode}: {text_[-2000:]}")
    probe = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                           capture_output=True)
    return "ready" if probe.returncode == 0 else None


def test_platform_loads_a_day_over_verified_tls(cluster: Cluster, data_dir: Path, key: str) -> None:
    rows = [[f"T{i}", f"C{i}", "P1", "1", "2024-03-01T10:00:00"] for i in range(7)]
    write_csv(data_dir / "incoming" / "day.csv", rows)
    url = cluster.url(cluster.pki.ca)
    resources = resources_for(data_dir, url, key)
    assert materialize(resources, SALES_CHAIN, "2024-03-01").success
    dispose_all()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(sales)).scalar_one() == len(rows)
            # this very connection is encrypted, and only TLS connections are accepted at all
            assert conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                                ).scalar_one() is True
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", ["wrong CA", "no TLS"])
def test_connections_without_the_right_ca_are_refused(cluster: Cluster, mode: str) -> None:
    url = (cluster.url(cluster.pki.other_ca) if mode == "wrong CA"
           else f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=disable")
    engine = create_engine(url)
    try:
        with pytest.raises(OperationalError) as caught:
            engine.connect().close()
    finally:
        engine.dispose()
    expected = "certificate verify failed" if mode == "wrong CA" else "no pg_hba.conf entry"
    assert expected in str(caught.value)



# --- Azure Blob: HTTPS only, plain HTTP for Azurite on this machine -------------------------------

KEY = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"


@pytest.mark.parametrize(("settings", "allowed"), [
    ({"account_url": "https://acct.blob.core.windows.net", "account_key": KEY}, True),
    ({"account_url": "http://127.0.0.1:10000/devstoreaccount1", "account_key": KEY}, True),
    ({"account_url": "http://acct.blob.core.windows.net", "account_key": KEY}, False),
    ({"account_url": "HTTP://10.1.2.3:10000/acct", "sas_token": "sv=x&sig=y"}, False),
    ({"connection_string": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}"}, True),
    ({"connection_string": f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={KEY}"}, False),
    ({"connection_string": f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={KEY};"
                           "BlobEndpoint=http://localhost:10000/a;"}, True),
    ({"connection_string": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={KEY};"
                           "BlobEndpoint=http://blobs.internal/a;"}, False),
])
def test_azure_blob_refuses_plain_http_outside_azurite(settings: dict, allowed: bool) -> None:
    from sales_platform.resources.azure_blob import AzureBlobStorage

    storage = AzureBlobStorage(container="c", **settings)
    if allowed:
        assert storage._auth_mode()
    else:
        with pytest.raises(ValueError, match="must be https://"):
            storage._auth_mode()
