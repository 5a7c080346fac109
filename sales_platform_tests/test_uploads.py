"""The upload stage over real HTTP (the products API on a werkzeug server) and a real landing:
POST /uploads -> the drop zone -> the intake -> GET /uploads/<sha256> shows the ledger state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sales_platform.api.products import TOKEN_HEADER, create_app
from sales_platform.core import settings
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import Drop, csv_bytes, sha256_hex
from sales_platform_tests.test_products_api import serving

TOKEN = "upload-test-token"
LIMIT = 4096
AUTH = {TOKEN_HEADER: TOKEN}


@pytest.fixture
def harness(data_dir: Path, key: str, tmp_path: Path) -> Harness:
    return Harness(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)


@pytest.fixture
def api(harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The API configured like the platform: same data folder and warehouse as the harness."""
    monkeypatch.setenv(settings.DATA_DIR, str(harness.data_dir))
    monkeypatch.setenv(settings.DB_URL, harness.db_url)
    monkeypatch.setenv(settings.UPLOAD_MAX_BYTES, str(LIMIT))
    with serving(create_app(tmp_path / "products.sqlite", TOKEN)) as url:
        yield url


def post(api: str, name: str, body, token: str | None = TOKEN) -> requests.Response:
    headers = {"Content-Type": "text/csv", **({TOKEN_HEADER: token} if token else {})}
    return requests.post(f"{api}/uploads", params={"name": name}, data=body, headers=headers,
                         timeout=30)


def rows(n: int, day: str = "2024-03-01") -> list[list[str]]:
    return [[f"T{i}", f"C{i % 3}", f"P{i % 4}", str(1 + i % 5), f"{day}T09:{i:02d}:00"] for i in range(n)]


def drop_zone(harness: Harness) -> list[str]:
    """What waits in the uploads folder (the upload service's own drop folder) and the drop zone."""
    folders = (harness.data_dir / "uploads", harness.incoming)
    return sorted(p.name for f in folders if f.exists() for p in f.iterdir())


def test_upload_lands_and_its_ledger_entry_follows(api, harness):
    content = csv_bytes(rows(12) + [["BAD", "C1", "P1", "-3", "2024-03-01T10:00:00"]])
    answer = post(api, "shop 1.csv", content)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    sha = sha256_hex(content)
    assert (body["sha256"], body["size_bytes"], body["file_name"]) == (sha, len(content), "shop 1.csv")
    assert body["ledger"] == f"/uploads/{sha}" and answer.headers["Location"].endswith(body["ledger"])
    assert (harness.data_dir / "uploads" / "shop 1.csv").read_bytes() == content
    assert drop_zone(harness) == ["shop 1.csv"]  # no temporary left behind
    harness.drops.append(Drop("shop 1.csv", content))

    before = requests.get(f"{api}{body['ledger']}", headers=AUTH, timeout=30)
    assert before.status_code == 200 and before.json()["status"] == "received"

    harness.land()  # the intake (landed_files) takes it like any drop
    landed = requests.get(f"{api}{body['ledger']}", headers=AUTH, timeout=30).json()
    assert landed["status"] == "landed"
    assert [(v["file_name"], v["rows_read"]) for v in landed["versions"]] == [("shop 1.csv", 13)]
    assert drop_zone(harness) == []

    harness.load_requested()
    assert_matches_oracle(harness)
    assert requests.get(f"{api}{body['ledger']}", headers=AUTH, timeout=30).json()["status"] == "loaded"


def test_writes_need_the_token(api, harness):
    content = csv_bytes(rows(2))
    for token in (None, "wrong"):
        answer = post(api, "a.csv", content, token=token)
        assert answer.status_code == 401 and TOKEN_HEADER in answer.json()["error"]
    assert drop_zone(harness) == []


def test_size_limit_answers_413_and_leaves_nothing(api, harness):
    big = csv_bytes(rows(60) * 3)
    assert len(big) > LIMIT
    answer = post(api, "big.csv", big)
    assert answer.status_code == 413 and str(LIMIT) in answer.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    streamed = post(api, "big.csv", chunks())
    assert streamed.status_code == 413, streamed.text
    assert drop_zone(harness) == []
    small = csv_bytes(rows(3))
    assert post(api, "big.csv", small).status_code == 201  # within the limit: taken


SECRET = "CUST-SECRET-7781"


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("latin1.csv", b"transaction_id,customer_id,product_id,quantity,timestamp\n"
                   b"T1,Jos\xe9,P1,1,2024-03-01T10:00:00\n", "not UTF-8 text"),
    ("noheader.csv", f"T1,{SECRET},P1,1,2024-03-01T10:00:00\n".encode(),
     "missing required column(s)"),
    ("semi.csv", f"transaction_id;customer_id\nT1;{SECRET}\n".encode(), "wrong delimiter"),
    ("nul.csv", b"transaction_id,customer_id\x00\n", "binary"),
    ("empty.csv", b"", "empty"),
    ("notes.txt", csv_bytes(rows(1)), "not a .csv file"),
    ("../up.csv", csv_bytes(rows(1)), "plain name"),
    ("part.csv.tmp", csv_bytes(rows(1)), "temporary"),
])
def test_content_checks_answer_400_with_a_reason_not_the_data(api, harness, name, content, reason):
    answer = post(api, name, content)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]
    assert SECRET not in answer.text and "Jos" not in answer.text
    assert drop_zone(harness) == []


def test_same_name_waiting_is_not_replaced(api, harness):
    first, second = csv_bytes(rows(2)), csv_bytes(rows(3))
    assert post(api, "s.csv", first).status_code == 201
    answer = post(api, "s.csv", second)
    assert answer.status_code == 409 and "waiting" in answer.json()["error"]
    assert (harness.data_dir / "uploads" / "s.csv").read_bytes() == first
    harness.land()
    assert post(api, "s.csv", second).status_code == 201  # landed: a new version may come


def test_unknown_and_malformed_sha(api):
    assert requests.get(f"{api}/uploads/{'a' * 64}", headers=AUTH, timeout=30).status_code == 404
    assert requests.get(f"{api}/uploads/not-a-sha", headers=AUTH, timeout=30).status_code == 400


def test_a_stream_longer_or_shorter_than_declared_is_refused(tmp_path):
    """The core rule, whatever the server: only exactly the declared bytes make a drop."""
    import io

    from sales_platform.core.schema import SchemaContract
    from sales_platform.core.uploads import UploadRefused, receive

    content = csv_bytes(rows(3))
    for declared in (len(content) - 3, len(content) + 3):
        with pytest.raises(UploadRefused) as refused:
            receive(io.BytesIO(content), tmp_path, "x.csv", SchemaContract(), declared_size=declared)
        assert refused.value.status == 400 and "declared" in refused.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def any_harness(data_dir: Path, key: str, backend) -> Harness:
    return Harness(data_dir, backend.url, key)


@pytest.fixture
def any_api(any_harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv(settings.DATA_DIR, str(any_harness.data_dir))
    monkeypatch.setenv(settings.DB_URL, any_harness.db_url)
    with serving(create_app(tmp_path / "products.sqlite", TOKEN)) as url:
        yield url


def test_a_folder_sender_cannot_replace_an_upload(any_api, any_harness):
    """An upload, then a folder sender renames an older copy of the same name into the drop zone
    before the intake runs: both versions land, in the order they arrived (the sender's last)."""
    harness = any_harness
    uploaded = csv_bytes(rows(4) + [["U9", "C1", "P1", "0", "2024-03-01T11:00:00"]])
    older = csv_bytes(rows(2, day="2024-03-02"))
    assert post(any_api, "shop.csv", uploaded).status_code == 201
    harness.drops.append(Drop("shop.csv", uploaded))
    harness.drop("shop.csv", older)  # temp name + rename, as senders do: over the same name
    waiting = requests.get(f"{any_api}/uploads/{sha256_hex(uploaded)}", headers=AUTH, timeout=30)
    assert waiting.json()["status"] == "received"

    harness.land()
    ledger = harness.ledger()
    assert {(name, sha): row["status"] for (name, sha), row in ledger.items()} == {
        ("shop.csv", sha256_hex(uploaded)): "superseded", ("shop.csv", sha256_hex(older)): "landed"}
    answer = requests.get(f"{any_api}/uploads/{sha256_hex(uploaded)}", headers=AUTH, timeout=30)
    assert answer.json()["status"] == "superseded"
    assert drop_zone(harness) == []
    harness.load_requested()
    assert_matches_oracle(harness)


def test_an_upload_gone_before_the_intake_is_lost_not_received_forever(api, harness):
    content = csv_bytes(rows(3))
    body = post(api, "gone.csv", content).json()
    (harness.data_dir / "uploads" / "gone.csv").unlink()  # removed before the intake took it
    answer = requests.get(f"{api}{body['ledger']}", headers=AUTH, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "lost"
    assert "upload it again" in answer.json()["detail"]
    assert post(api, "gone.csv", content).status_code == 201  # uploaded again: waiting
    assert requests.get(f"{api}{body['ledger']}", headers=AUTH, timeout=30).json()["status"] \
        == "received"


# The upload endpoints find the warehouse without Dagster (core/warehouse/configured.py): the one
# the Dagster resources find (resources/factory.py), setting for setting.
WAREHOUSE_SETTINGS = (settings.DB_URL, settings.MSSQL_HOST, settings.MSSQL_PORT, settings.MSSQL_DATABASE,
                      settings.MSSQL_USER, settings.MSSQL_PASSWORD, settings.MSSQL_TRUSTED_CONNECTION,
                      settings.MSSQL_DRIVER, settings.MSSQL_TRUST_SERVER_CERTIFICATE,
                      settings.AZURE_SQL_SERVER, settings.AZURE_SQL_DATABASE, settings.AZURE_SQL_AUTH,
                      settings.AZURE_SQL_USER, settings.AZURE_SQL_PASSWORD, settings.AZURE_SQL_CLIENT_ID)
AZURE = {settings.AZURE_SQL_SERVER: "myserver.database.windows.net", settings.AZURE_SQL_DATABASE: "sales"}
MSSQL = {settings.MSSQL_HOST: "sql01.corp", settings.MSSQL_DATABASE: "sales"}


@pytest.mark.parametrize("env", [
    {},  # the embedded SQLite file under the data dir
    {settings.DB_URL: "postgresql+psycopg://loader:s3cret@db.internal:5433/sales?sslmode=verify-full"},
    {**MSSQL, settings.MSSQL_USER: "loader", settings.MSSQL_PASSWORD: "pa;ss}word",
     settings.MSSQL_PORT: "14330", settings.MSSQL_TRUST_SERVER_CERTIFICATE: "yes"},
    {**MSSQL, settings.MSSQL_TRUSTED_CONNECTION: "1", settings.MSSQL_DRIVER: "FreeTDS"},
    AZURE,
    {**AZURE, settings.AZURE_SQL_CLIENT_ID: "5f0c0f2a-client", settings.MSSQL_DRIVER: "FreeTDS"},
    {**AZURE, settings.AZURE_SQL_AUTH: "sql", settings.AZURE_SQL_USER: "loader",
     settings.AZURE_SQL_PASSWORD: "pw", settings.AZURE_SQL_CLIENT_ID: "ignored-with-sql"},
], ids=["sqlite", "db_url", "sqlserver_login", "sqlserver_trusted", "azure_ad", "azure_ad_identity",
        "azure_sql_login"])
def test_the_upload_service_finds_the_warehouse_the_resources_find(env, monkeypatch, tmp_path):
    from sales_platform.core.warehouse.configured import configured_warehouse
    from sales_platform.resources.factory import resolved, warehouse_resource
    from sales_platform.resources.mssql import AzureSqlWarehouse
    from sales_platform.resources.warehouse import WarehouseResource

    for name in WAREHOUSE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(settings.DATA_DIR, str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(WarehouseResource, "setup_for_execution", lambda self, context: None)  # no login
    resource = resolved(warehouse_resource())
    url, azure_client = configured_warehouse()
    assert url.render_as_string(hide_password=False) == resource.url().render_as_string(hide_password=False)
    ad_login = isinstance(resource, AzureSqlWarehouse) and resource.auth == "azure_ad"
    assert azure_client == ((resource.managed_identity_client_id or "") if ad_login else None)


def test_the_upload_service_uses_the_resources_engine(monkeypatch, tmp_path):
    """The same cached engine object, migrated: no second pool, no second schema pass."""
    from sales_platform.core.warehouse.configured import configured_engine
    from sales_platform.resources.factory import resolved, warehouse_resource

    for name in WAREHOUSE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for env in ({settings.DATA_DIR: str(tmp_path / "a")},
                {settings.DATA_DIR: str(tmp_path / "b"), settings.DB_URL: f"sqlite:///{tmp_path / 'w.db'}"}):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        engine = configured_engine()
        assert engine is resolved(warehouse_resource()).engine()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM file_ledger").scalar() == 0
