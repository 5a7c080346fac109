"""SQL Server / Azure SQL without a server: ODBC strings, tokens, compiled T-SQL, retries.

What runs for real here: SQLAlchemy's mssql compiler, pyodbc with the unixODBC driver manager and
the FreeTDS driver (real connection errors from a closed port), SQLite and PostgreSQL (a backend
killed mid-work). Only a SQL Server is missing: test_mssql_integration.py needs one.
"""

from __future__ import annotations

import sqlite3
import struct
import time
import uuid
import warnings
from datetime import date, datetime
from urllib.parse import quote_plus

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import quoted_name

from sales_platform.core.warehouse import tables
from sales_platform.core.warehouse.engine import dispose_all, make_engine
from sales_platform.core.warehouse.loading import (
    STAGE_COLUMNS,
    SalesLoader,
    add_column_ddl,
    batch_rows_for_parameter_limit,
    mssql_merge_statement,
    rows_for_driver,
    staging_table,
)
from sales_platform.core.warehouse.mssql import (
    DEFAULT_DRIVER,
    SQL_COPT_SS_ACCESS_TOKEN,
    azure_ad_token_struct,
    install_access_token,
    odbc_connection_string,
    parse_odbc,
    redact_odbc,
    sqlalchemy_url_from_odbc,
    strip_credentials,
)
from sales_platform.core.warehouse.retry import (
    backoff_delay,
    describe_db_error,
    is_transient,
    run_with_retries,
)
from sales_platform.resources.mssql import AzureSqlWarehouse, SqlServerWarehouse
from sales_platform_tests.conftest import pg_dsn, pg_url, require_postgres, skip_or_fail
from sales_platform_tests.ports import closed_port

HOSTILE = ['x"; DROP TABLE sales; --', "a]b"]
SECRET = "S3cr;et}{@:/x+y"
DEADLOCK = ("[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 52) was "
            "deadlocked on lock resources with another process and has been chosen as the deadlock victim. "
            "Rerun the transaction. (1205) (SQLExecDirectW)")


def _norm(sql: object) -> str:
    return " ".join(str(sql).split())


@pytest.fixture
def pyodbc():
    try:
        import pyodbc
    except ImportError as exc:  # libodbc.so.2 missing
        skip_or_fail(f"pyodbc cannot load the ODBC driver manager ({exc}); apt-get install unixodbc")
    return pyodbc


@pytest.fixture
def freetds(pyodbc) -> str:
    names = [d for d in pyodbc.drivers() if "freetds" in d.lower()]
    if not names:
        skip_or_fail("no FreeTDS ODBC driver registered (apt-get install tdsodbc; odbcinst -i -d -f "
                     "/usr/share/tdsodbc/odbcinst.ini)")
    return names[0]


@pytest.fixture
def server_dialect() -> mssql.dialect:
    """The mssql dialect as after connecting to SQL Server 2022 (Azure SQL reports 12.x: same DDL).

    A never-connected ``mssql.dialect()`` assumes a pre-2008 server (DATE becomes DATETIME,
    Text becomes the deprecated TEXT), which is not what a real server gets.
    """
    dialect = mssql.dialect(deprecate_large_types=True)
    dialect.server_version_info = (16, 0, 1000)
    return dialect


# --- ODBC connection strings -------------------------------------------------------------------

def test_sql_login_string_is_encrypted_and_verifies_the_certificate_by_default():
    odbc = odbc_connection_string("db.example.com", 1433, "sales", DEFAULT_DRIVER, user="loader",
                                  password="pw")
    assert odbc == ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example.com,1433;DATABASE=sales;"
                    "UID=loader;PWD=pw;Encrypt=yes;TrustServerCertificate=no;ConnectTimeout=30")


def test_trust_server_certificate_and_no_encryption_only_when_asked():
    odbc = odbc_connection_string("localhost", 14330, "sales", "FreeTDS", user="sa", password="pw",
                                  encrypt=False, trust_server_certificate=True, timeout_s=5)
    assert odbc == ("DRIVER={FreeTDS};SERVER=localhost,14330;DATABASE=sales;UID=sa;PWD=pw;"
                    "Encrypt=no;TrustServerCertificate=yes;ConnectTimeout=5")


@pytest.mark.parametrize(("password", "quoted"), [
    ("p;w", "{p;w}"),
    ("p}w", "{p}}w}"),
    ("{pw", "{{pw}"),
    (" pw ", "{ pw }"),
    ("a;b}}c{", "{a;b}}}}c{}"),
    ("plain-Pa55", "plain-Pa55"),
])
def test_passwords_are_brace_quoted_by_the_odbc_rules(password: str, quoted: str):
    odbc = odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, user="u", password=password)
    assert f";PWD={quoted};Encrypt=yes;" in odbc
    assert dict(parse_odbc(odbc))["PWD"] == password  # the driver reads back the exact password


def test_trusted_connection_carries_no_login():
    odbc = odbc_connection_string("sql01", 1433, "sales", DEFAULT_DRIVER, trusted_connection=True)
    assert odbc == ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=sql01,1433;DATABASE=sales;"
                    "Trusted_Connection=yes;Encrypt=yes;TrustServerCertificate=no;ConnectTimeout=30")
    with pytest.raises(ValueError, match="trusted_connection"):
        odbc_connection_string("sql01", 1433, "sales", DEFAULT_DRIVER, user="u", trusted_connection=True)
    with pytest.raises(ValueError, match="needs a user"):
        odbc_connection_string("sql01", 1433, "sales", DEFAULT_DRIVER, password="pw")


def test_named_instance_without_port_and_braced_database():
    odbc = odbc_connection_string(r"sql01\REPORTING", None, "sales;prod", DEFAULT_DRIVER, user="u")
    assert r"SERVER=sql01\REPORTING;DATABASE={sales;prod};UID=u;Encrypt=yes" in odbc


def test_extra_options_are_added_but_cannot_override_security_or_identity():
    odbc = odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, user="u", password="p",
                                  extra={"ApplicationIntent": "ReadOnly", "APP": "sales;platform"})
    assert odbc.endswith(";ConnectTimeout=30;ApplicationIntent=ReadOnly;APP={sales;platform}")
    for key in ("Encrypt", "trustservercertificate", "PWD", "uid", "Database", "Authentication"):
        with pytest.raises(ValueError, match="cannot be set"):
            odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, extra={key: "x"})
    with pytest.raises(ValueError, match="invalid ODBC keyword"):
        odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, extra={"Encrypt=no;X": "1"})


def test_sqlalchemy_url_hands_the_odbc_string_to_pyodbc_unchanged():
    odbc = odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, user="u", password=SECRET)
    url = sqlalchemy_url_from_odbc(odbc)
    assert url.drivername == "mssql+pyodbc" and url.get_backend_name() == "mssql"
    assert url.query["odbc_connect"] == odbc
    args, kwargs = mssql_pyodbc.dialect().create_connect_args(url)
    assert list(args) == [odbc] and kwargs == {}


def test_strip_credentials_and_redact_handle_quoted_values_whole():
    odbc = odbc_connection_string("h", 1433, "d", DEFAULT_DRIVER, user="u", password=SECRET)
    assert strip_credentials(odbc) == ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=h,1433;DATABASE=d;"
                                       "Encrypt=yes;TrustServerCertificate=no;ConnectTimeout=30")
    redacted = redact_odbc(odbc)
    assert ";UID=u;PWD=***;Encrypt=yes;" in redacted
    assert not any(part in redacted for part in ("S3cr", "et}", "x+y"))
    legacy = "Driver={FreeTDS};Server=h;Uid=u;Pwd={a;b};Trusted_Connection=Yes;Authentication=X;Port=1"
    assert strip_credentials(legacy) == "Driver={FreeTDS};Server=h;Port=1"
    with pytest.raises(ValueError, match="unterminated"):
        parse_odbc("DRIVER={x;PWD=y")


# --- Azure AD access tokens --------------------------------------------------------------------

def test_token_struct_bytes_for_a_known_token():
    assert SQL_COPT_SS_ACCESS_TOKEN == 1256
    assert azure_ad_token_struct("abc") == b"\x06\x00\x00\x00a\x00b\x00c\x00"
    jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2RhdGFiYXNlLndpbmRvd3MubmV0LyJ9.c2ln-_"
    # Microsoft's documented construction: each ASCII byte followed by a zero, length prefixed.
    expanded = b"".join(bytes([c, 0]) for c in jwt.encode("ascii"))
    assert azure_ad_token_struct(jwt) == struct.pack("=i", len(expanded)) + expanded


def test_token_hook_logs_in_with_a_fresh_token_and_no_credentials(pyodbc):
    with closed_port() as port:
        _token_hook_against_a_closed_port(port)


def _token_hook_against_a_closed_port(port: int) -> None:
    odbc = odbc_connection_string("127.0.0.1", port, "sales", DEFAULT_DRIVER, user="u",
                                  password=SECRET, timeout_s=2)
    engine = sa.create_engine(sqlalchemy_url_from_odbc(odbc))
    tokens = iter(["token-one", "token-two"])
    install_access_token(engine, lambda: next(tokens))
    seen: list[tuple[str, dict]] = []

    @sa.event.listens_for(engine, "do_connect")
    def _record(_dialect, _record, cargs, cparams):  # runs after the hook, before pyodbc.connect
        seen.append((cargs[0], dict(cparams["attrs_before"])))

    for _ in range(2):  # every new connection asks for a token (they expire)
        with pytest.raises(sa_exc.DBAPIError):
            engine.connect()
    engine.dispose()
    assert [attrs for _, attrs in seen] == [{1256: azure_ad_token_struct("token-one")},
                                            {1256: azure_ad_token_struct("token-two")}]
    for connect_string, _ in seen:
        assert "UID" not in connect_string and "PWD" not in connect_string and SECRET not in connect_string
        assert ";Encrypt=yes;TrustServerCertificate=no;" in connect_string


def test_azure_ad_warehouse_engine_uses_the_token_hook(pyodbc, monkeypatch):
    calls: list[str | None] = []

    def provider_for(client_id: str | None):  # stands in for Azure AD, which cannot run here
        calls.append(client_id)
        return lambda: "token-from-azure-ad"

    monkeypatch.setattr("sales_platform.resources.mssql.azure_token_provider", provider_for)
    warehouse = AzureSqlWarehouse(server="127.0.0.1", database="sales", timeout_s=2,
                                  managed_identity_client_id="00000000-0000-0000-0000-000000000001")
    try:
        with pytest.raises(sa_exc.DBAPIError):
            warehouse.prepare()  # connects to migrate the schema: no server, but the token was used
    finally:
        dispose_all()
    assert calls == ["00000000-0000-0000-0000-000000000001"]


# --- Resources ---------------------------------------------------------------------------------

def test_sql_server_warehouse_url_and_display():
    warehouse = SqlServerWarehouse(host="sql01.corp", database="sales", user="loader", password=SECRET)
    assert warehouse.odbc() == odbc_connection_string("sql01.corp", 1433, "sales", DEFAULT_DRIVER,
                                                      user="loader", password=SECRET)
    assert warehouse.url().query["odbc_connect"] == warehouse.odbc()
    assert warehouse.kind == "mssql"
    assert warehouse.display_url() == "mssql+pyodbc://loader:***@sql01.corp:1433/sales"
    trusted = SqlServerWarehouse(host="sql01.corp", database="sales", trusted_connection=True)
    assert "Trusted_Connection=yes" in trusted.odbc()
    assert trusted.display_url() == "mssql+pyodbc://sql01.corp:1433/sales"


def test_azure_sql_cannot_turn_encryption_or_certificate_validation_off():
    assert not {"encrypt", "trust_server_certificate", "extra"} & set(AzureSqlWarehouse.model_fields)
    for auth in ("sql", "azure_ad"):
        login = {"user": "loader", "password": "pw"} if auth == "sql" else {}
        warehouse = AzureSqlWarehouse(server="myserver.database.windows.net", database="sales", auth=auth,
                                      encrypt=False, trust_server_certificate=True, **login)
        assert ";Encrypt=yes;TrustServerCertificate=no;" in warehouse.odbc()
        assert "SERVER=tcp:myserver.database.windows.net,1433;" in warehouse.odbc()


def test_azure_sql_auth_modes():
    ad = AzureSqlWarehouse(server="myserver.database.windows.net", database="sales")
    assert ad.odbc() == ("DRIVER={ODBC Driver 18 for SQL Server};"
                         "SERVER=tcp:myserver.database.windows.net,1433;DATABASE=sales;Encrypt=yes;TrustServerCertificate=no;ConnectTimeout=30")
    assert ad.display_url() == ("mssql+pyodbc://myserver.database.windows.net:1433/sales"
                                "?authentication=azure_ad_token")
    with pytest.raises(ValueError, match="takes no user/password"):
        AzureSqlWarehouse(server="s", database="d", password="pw").odbc()
    with pytest.raises(ValueError, match="needs user and password"):
        AzureSqlWarehouse(server="s", database="d", auth="sql", user="loader").odbc()


def test_display_url_repr_and_error_text_never_show_the_password():
    resources = [
        SqlServerWarehouse(host="sql01", database="sales", user="loader", password=SECRET),
        AzureSqlWarehouse(server="myserver.database.windows.net", database="sales", auth="sql",
                          user="loader", password=SECRET),
    ]
    for warehouse in resources:
        raw_url = warehouse.url().render_as_string(hide_password=False)
        assert "S3cr%3Bet" in raw_url  # the real URL has it (brace-quoted, percent-encoded)...
        shown = [warehouse.display_url(), repr(warehouse), str(warehouse),
                 describe_db_error(RuntimeError("boom"), raw_url, "2024-03-05")]
        for text in shown:  # ...nothing displayed does, in any encoding or fragment
            assert SECRET not in text and quote_plus(SECRET) not in text
            assert "S3cr" not in text and "x+y" not in text


# --- Compiled T-SQL (snapshots) ----------------------------------------------------------------

STAGING_DDL = (
    "CREATE TABLE [#stg_sales] ( transaction_id NVARCHAR(128) NOT NULL, customer_id VARCHAR(370) NOT NULL, "
    "product_id VARCHAR(370) NOT NULL, quantity BIGINT NOT NULL, sale_date DATE NOT NULL, "
    "sale_ts DATETIME NOT NULL, source_file NVARCHAR(255) NOT NULL, source_sha256 VARCHAR(64) NULL, "
    "source_row BIGINT NULL, PRIMARY KEY (transaction_id) )")
TABLE_DDL = {
    "sales": (
        "CREATE TABLE sales ( transaction_id NVARCHAR(128) NOT NULL, customer_id VARCHAR(370) NOT NULL, "
        "product_id VARCHAR(370) NOT NULL, quantity BIGINT NOT NULL, sale_date DATE NOT NULL, "
        "sale_ts DATETIME NOT NULL, source_file NVARCHAR(255) NOT NULL, loaded_at DATETIME NOT NULL, "
        "extras NVARCHAR(max) NULL, source_sha256 VARCHAR(64) NULL, source_row BIGINT NULL, "
        "PRIMARY KEY (transaction_id) )",
        ["CREATE INDEX ix_sales_sale_date ON sales (sale_date)"]),
    "sales_rejects": (
        "CREATE TABLE sales_rejects ( reject_id BIGINT NOT NULL IDENTITY, stage VARCHAR(16) NOT NULL, "
        "sale_date DATE NULL, source_file NVARCHAR(255) NOT NULL, source_sha256 VARCHAR(64) NULL, "
        "source_row BIGINT NULL, reason VARCHAR(40) NOT NULL, detail NVARCHAR(max) NULL, "
        "transaction_id NVARCHAR(max) NULL, customer_id VARCHAR(max) NULL, product_id VARCHAR(max) NULL, "
        "quantity NVARCHAR(max) NULL, timestamp NVARCHAR(max) NULL, raw_text VARCHAR(max) NULL, "
        "extras NVARCHAR(max) NULL, rejected_at DATETIME NOT NULL, PRIMARY KEY (reject_id) )",
        ["CREATE INDEX ix_sales_rejects_file ON sales_rejects (source_sha256)",
         "CREATE INDEX ix_sales_rejects_sale_date ON sales_rejects (sale_date)"]),
    "file_ledger": (
        "CREATE TABLE file_ledger ( file_id BIGINT NOT NULL IDENTITY, file_name NVARCHAR(818) NOT NULL, "
        "sha256 VARCHAR(64) NOT NULL, size_bytes BIGINT NOT NULL, status VARCHAR(24) NOT NULL, "
        "rows_read BIGINT NULL, rows_landed BIGINT NULL, rows_rejected BIGINT NULL, "
        "days_touched VARCHAR(max) NULL, error NVARCHAR(max) NULL, archive_path NVARCHAR(max) NULL, "
        "code_version VARCHAR(64) NULL, received_at DATETIME NOT NULL, processed_at DATETIME NULL, "
        "days_affected VARCHAR(max) NULL, PRIMARY KEY (file_id), "
        "CONSTRAINT uq_file_ledger_name_sha UNIQUE (file_name, sha256) )",
        ["CREATE INDEX ix_file_ledger_sha ON file_ledger (sha256)"]),
    "dim_products": (
        "CREATE TABLE dim_products ( product_token VARCHAR(370) NOT NULL, "
        "name NVARCHAR(510) NOT NULL, category NVARCHAR(200) NOT NULL, unit_price NUMERIC(12, 2) NOT NULL, "
        "updated_at DATETIME NOT NULL, PRIMARY KEY (product_token) )", []),
    "agg_sales_daily": (
        "CREATE TABLE agg_sales_daily ( sale_date DATE NOT NULL, transactions BIGINT NOT NULL, "
        "total_quantity BIGINT NOT NULL, total_revenue NUMERIC(38, 2) NOT NULL, "
        "refreshed_at DATETIME NOT NULL, PRIMARY KEY (sale_date) )", []),
}
MERGE_SQL = (
    "MERGE INTO [sales] WITH (HOLDLOCK) AS t USING [#stg_sales] AS s "
    "ON t.[transaction_id] = s.[transaction_id] WHEN MATCHED AND ("
    + " OR ".join(f"(t.[{c}] <> s.[{c}] OR (t.[{c}] IS NULL AND s.[{c}] IS NOT NULL) "
                  f"OR (t.[{c}] IS NOT NULL AND s.[{c}] IS NULL))"
                  for c in ("customer_id", "product_id", "quantity", "sale_date", "sale_ts", "source_file",
                            "source_sha256", "source_row"))
    + ") THEN UPDATE SET t.[customer_id] = s.[customer_id], t.[product_id] = s.[product_id], "
    "t.[quantity] = s.[quantity], t.[sale_date] = s.[sale_date], t.[sale_ts] = s.[sale_ts], "
    "t.[source_file] = s.[source_file], t.[source_sha256] = s.[source_sha256], "
    "t.[source_row] = s.[source_row], t.[loaded_at] = ? "
    "WHEN NOT MATCHED BY TARGET THEN INSERT ([transaction_id], [customer_id], [product_id], [quantity], "
    "[sale_date], [sale_ts], [source_file], [source_sha256], [source_row], [loaded_at]) VALUES "
    "(s.[transaction_id], s.[customer_id], s.[product_id], s.[quantity], s.[sale_date], s.[sale_ts], "
    "s.[source_file], s.[source_sha256], s.[source_row], ?);")


def test_staging_table_ddl(server_dialect):
    assert _norm(CreateTable(staging_table("mssql")).compile(dialect=server_dialect)) == STAGING_DDL
    azure = mssql.dialect(deprecate_large_types=True)
    azure.server_version_info = (12, 0, 2000, 8)  # what Azure SQL Database reports
    assert _norm(CreateTable(staging_table("mssql")).compile(dialect=azure)) == STAGING_DDL


@pytest.mark.parametrize("name", sorted(TABLE_DDL))
def test_warehouse_table_ddl(server_dialect, name: str):
    table = tables.metadata.tables[name]
    ddl, indexes = TABLE_DDL[name]
    assert _norm(CreateTable(table).compile(dialect=server_dialect)) == ddl
    assert sorted(_norm(CreateIndex(i).compile(dialect=server_dialect)) for i in table.indexes) == indexes


@pytest.mark.parametrize("table", [pytest.param(t, id=t.name) for t in tables.metadata.sorted_tables])
def test_no_table_gets_an_unintended_identity_or_deprecated_type(server_dialect, table: sa.Table):
    ddl = _norm(CreateTable(table).compile(dialect=server_dialect))
    assert " TEXT" not in ddl and " NTEXT" not in ddl and " IMAGE" not in ddl
    # IDENTITY only where a surrogate key is declared autoincrement=True: an IDENTITY column
    # rejects the explicit values an INSERT ... SELECT writes into a natural key.
    for column in table.columns:
        spec = server_dialect.ddl_compiler(server_dialect, None).get_column_specification(column)
        assert ("IDENTITY" in spec) == (column.autoincrement is True), spec


def test_merge_statement(server_dialect):
    loaded_at = datetime(2024, 3, 5, 6, 7, 8)
    stmt = mssql_merge_statement(loaded_at)
    named = _norm(stmt.compile(dialect=server_dialect))
    assert named == MERGE_SQL.replace("?", ":loaded_at")
    assert "WITH (HOLDLOCK)" in named and named.endswith(";")
    # pyodbc is qmark-positional: the one bound value is sent once per marker
    compiled = stmt.compile(dialect=mssql_pyodbc.dialect(paramstyle="qmark"))
    assert _norm(compiled) == MERGE_SQL
    assert [compiled.construct_params()[k] for k in compiled.positiontup] == [loaded_at, loaded_at]


def test_loader_statements_for_sql_server(server_dialect):
    engine = sa.create_mock_engine("mssql+pyodbc://", executor=lambda *a, **k: None)
    loader = SalesLoader(engine)
    assert loader.stage.name == "#stg_sales"
    assert _norm(loader.delete_vanished_statement(date(2024, 3, 5)).compile(dialect=server_dialect)) == (
        "DELETE FROM sales WHERE sales.sale_date = :sale_date_1 AND NOT (EXISTS (SELECT * "
        "FROM [#stg_sales] WHERE [#stg_sales].transaction_id = sales.transaction_id))")
    assert _norm(loader.stage.delete().compile(dialect=server_dialect)) == "DELETE FROM [#stg_sales]"
    changed = sa.select(sa.func.count()).select_from(loader.stage).where(loader._changed())
    # IS DISTINCT FROM needs SQL Server 2022; the dialect's INTERSECT form works on every version
    assert ("NOT EXISTS (SELECT sales.customer_id INTERSECT SELECT [#stg_sales].customer_id)"
            in _norm(changed.compile(dialect=server_dialect)))


def test_hostile_identifiers_are_bracket_quoted(server_dialect):
    select = sa.select(sa.Column(HOSTILE[1], sa.Integer), sa.column(quoted_name(HOSTILE[0], quote=True)))
    assert _norm(select.select_from(sa.table("sales")).compile(dialect=server_dialect)) == (
        'SELECT [a]]b], [x"; DROP TABLE sales; --] FROM sales')
    merge = _norm(mssql_merge_statement(datetime(2024, 3, 5), HOSTILE).compile(dialect=server_dialect))
    assert 't.[x"; DROP TABLE sales; --] = s.[x"; DROP TABLE sales; --], t.[a]]b] = s.[a]]b],' in merge
    assert '[source_file], [source_sha256], [source_row], [x"; DROP TABLE sales; --], [a]]b], [loaded_at]) ' \
        'VALUES' in merge
    assert add_column_ddl(server_dialect, "sales", HOSTILE[1]) == (
        "IF COL_LENGTH('sales', 'a]b') IS NULL ALTER TABLE [sales] ADD [a]]b] NVARCHAR(MAX) NULL")
    assert add_column_ddl(server_dialect, "sales", "o'brien") == (
        "IF COL_LENGTH('sales', 'o''brien') IS NULL ALTER TABLE [sales] ADD [o'brien] NVARCHAR(MAX) NULL")
    staging = _norm(CreateTable(staging_table("mssql", HOSTILE)).compile(dialect=server_dialect))
    assert '[x"; DROP TABLE sales; --] NVARCHAR(max) NULL, [a]]b] NVARCHAR(max) NULL' in staging


def test_batches_stay_under_the_sql_server_parameter_limit():
    assert batch_rows_for_parameter_limit(7) * 7 < 2100
    assert batch_rows_for_parameter_limit(len(STAGE_COLUMNS)) * len(STAGE_COLUMNS) < 2100
    for columns in range(1, 2200):
        assert batch_rows_for_parameter_limit(columns) * columns < 2100 or columns >= 2100


def test_rows_for_sql_server_are_types_pyodbc_binds():
    frame = pd.DataFrame({"transaction_id": ["t1"], "customer_id": ["c"], "product_id": ["p"],
                          "quantity": [3], "sale_ts": pd.to_datetime(["2024-03-05 10:11:12.700"]),
                          "source_file": ["f.csv"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas 2.x: Series.dt.to_pydatetime
        (row,) = rows_for_driver(frame, "mssql")
    tid, _, _, quantity, sale_date, sale_ts, _, _, _ = row
    assert type(quantity) is int  # not numpy.int64, which pyodbc refuses
    assert type(sale_date) is date and sale_date == date(2024, 3, 5)
    assert isinstance(sale_ts, datetime) and sale_ts == datetime(2024, 3, 5, 10, 11, 12)


# --- Transient-error classification ------------------------------------------------------------

@pytest.mark.parametrize("number", [1205, 40613, 40501, 40197, 49918, 49919, 49920, 4060, 4221, 10928,
                                    10929, 10053, 10054, 10060, 233, 64, -2])
def test_sql_server_transient_numbers(pyodbc, number: int):
    error = pyodbc.Error("42000", f"[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"
                                  f"Something went wrong. ({number}) (SQLExecDirectW)")
    assert is_transient(error)


def test_deadlock_from_pyodbc_and_wrapped_by_sqlalchemy(pyodbc):
    error = pyodbc.Error("40001", DEADLOCK)
    assert is_transient(error)
    wrapped = sa_exc.OperationalError("MERGE INTO [sales] ...", {"loaded_at": 1}, error)
    assert is_transient(wrapped)
    try:  # also when raised from inside another handler (implicit chaining)
        try:
            raise error
        except pyodbc.Error:
            raise RuntimeError("load failed") from error
    except RuntimeError as outer:
        assert is_transient(outer)


@pytest.mark.parametrize(("state", "message"), [
    ("08S01", "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x68 (104) "
              "(SQLExecDirectW)"),
    ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x2749 (10057) "
              "(SQLDriverConnect)"),
    ("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0) "
              "(SQLExecDirectW)"),
    ("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired (0) "
              "(SQLDriverConnect)"),
])
def test_sql_server_transient_sqlstates(pyodbc, state: str, message: str):
    assert is_transient(pyodbc.OperationalError(state, message))


@pytest.mark.parametrize(("cls", "state", "message"), [
    ("IntegrityError", "23000", "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of "
     "PRIMARY KEY constraint 'PK__sales'. Cannot insert duplicate key in object 'dbo.sales'. The duplicate "
     "key value is (t1). (2627) (SQLExecDirectW)"),
    ("ProgrammingError", "42S02", "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid "
     "object name 'salez'. (208) (SQLExecDirectW)"),
    ("InterfaceError", "28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed "
     "for user 'loader'. (18456) (SQLDriverConnect)"),
    ("DataError", "22001", "[22001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]String or binary "
     "data would be truncated in table 'sales', column 'transaction_id' (varchar(64)). (2628) "
     "(SQLExecDirectW)"),
    ("OperationalError", "08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: "
     "[error:0A000086:SSL routines::certificate verify failed:self-signed certificate] (-1) "
     "(SQLDriverConnect)"),
])
def test_sql_server_permanent_errors(pyodbc, cls: str, state: str, message: str):
    error = getattr(pyodbc, cls)(state, message)
    assert not is_transient(error)
    assert not is_transient(sa_exc.DBAPIError("INSERT ...", None, error))


def test_a_missing_odbc_driver_is_permanent(pyodbc):
    with pytest.raises(pyodbc.Error) as err:
        pyodbc.connect("DRIVER={No Such Driver 99};SERVER=x", timeout=2)
    assert not is_transient(err.value)


def test_real_freetds_connection_failure_is_transient_and_retried(freetds):
    attempts, sleeps = [], []
    with closed_port() as port:
        odbc = odbc_connection_string("127.0.0.1", port, "sales", freetds, user="loader",
                                      password=SECRET, timeout_s=2)
        engine = sa.create_engine(sqlalchemy_url_from_odbc(odbc))

        def connect():
            attempts.append(1)
            with engine.connect():
                pass

        with pytest.raises(sa_exc.OperationalError) as err:
            run_with_retries(connect, attempts=3, sleep=sleeps.append)
    engine.dispose()
    assert len(attempts) == 3 and len(sleeps) == 2
    assert is_transient(err.value) and err.value.orig.args[0] == "08S01"
    message = describe_db_error(err.value, engine.url.render_as_string(hide_password=False), "2024-03-05")
    assert message.startswith("Database error (transient) for partition 2024-03-05 on mssql+pyodbc://")
    assert "SQLSTATE 08S01" in message and "Unable to connect" in message
    assert "S3cr" not in message and quote_plus(SECRET) not in message


def test_sqlite_locked_database_is_transient(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as err:
        other.execute("BEGIN IMMEDIATE")
    assert "locked" in str(err.value) and is_transient(err.value)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with pytest.raises(sa_exc.OperationalError) as wrapped, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (2)"))
    assert is_transient(wrapped.value)
    assert is_transient(sqlite3.OperationalError("database is busy"))
    assert not is_transient(sqlite3.OperationalError("no such table: sales"))
    holder.rollback()
    holder.close()
    other.close()
    engine.dispose()


def test_postgres_errors():
    with closed_port() as port, pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/sp_nowhere_{uuid.uuid4().hex[:10]}",
                        connect_timeout=2)
    assert refused.value.sqlstate is None and is_transient(refused.value)
    for error in (psycopg.errors.SerializationFailure("could not serialize access"),
                  psycopg.errors.DeadlockDetected("deadlock detected"),
                  psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
                  psycopg.errors.CannotConnectNow("the database system is starting up")):
        assert is_transient(error), error.sqlstate
    for error in (psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
                  psycopg.errors.InvalidPassword("password authentication failed"),
                  psycopg.errors.UndefinedTable('relation "salez" does not exist')):
        assert not is_transient(error), error.sqlstate
    assert not is_transient(ValueError("bad partition key"))


# --- run_with_retries --------------------------------------------------------------------------

def _flaky(failures: list[BaseException], result: str = "done"):
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return fn, calls


def test_retries_transient_errors_then_succeeds(pyodbc):
    fn, calls = _flaky([pyodbc.Error("40001", DEADLOCK), sqlite3.OperationalError("database is locked")])
    sleeps: list[float] = []
    retried: list[tuple[int, str, float]] = []
    result = run_with_retries(fn, base_delay_s=1.0, sleep=sleeps.append,
                              on_retry=lambda n, e, d: retried.append((n, type(e).__name__, d)))
    assert result == "done" and len(calls) == 3
    assert [(n, name) for n, name, _ in retried] == [(1, "Error"), (2, "OperationalError")]
    assert sleeps == [d for _, _, d in retried]
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential, equal jitter


def test_gives_up_after_the_last_attempt_with_the_last_error(pyodbc):
    errors = [pyodbc.Error("40001", DEADLOCK) for _ in range(4)]
    fn, calls = _flaky(errors)
    sleeps: list[float] = []
    with pytest.raises(pyodbc.Error) as err:
        run_with_retries(fn, attempts=4, sleep=sleeps.append)
    assert err.value is errors[-1] and len(calls) == 4 and len(sleeps) == 3


def test_does_not_retry_permanent_errors(pyodbc):
    duplicate = pyodbc.IntegrityError("23000", "[23000] Violation of PRIMARY KEY constraint. (2627) "
                                               "(SQLExecDirectW)")
    fn, calls = _flaky([duplicate])
    sleeps: list[float] = []
    with pytest.raises(pyodbc.IntegrityError):
        run_with_retries(fn, sleep=sleeps.append)
    assert len(calls) == 1 and sleeps == []
    with pytest.raises(ValueError):
        run_with_retries(lambda: None, attempts=0)


def test_backoff_is_capped_and_jittered():
    assert backoff_delay(1, 0.5, 30, rand=lambda: 0.0) == 0.25
    assert backoff_delay(1, 0.5, 30, rand=lambda: 1.0) == 0.5
    assert backoff_delay(4, 0.5, 30, rand=lambda: 1.0) == 4.0
    assert backoff_delay(20, 0.5, 30, rand=lambda: 0.0) == 15.0
    assert backoff_delay(20, 0.5, 30, rand=lambda: 1.0) == 30.0


def test_describe_db_error_names_partition_database_and_codes(pyodbc):
    error = sa_exc.OperationalError("MERGE ...", None, pyodbc.Error("40001", DEADLOCK))
    url = "mssql+pyodbc://loader:hunter2@sql01:1433/sales"
    message = describe_db_error(error, url, "2024-03-05")
    assert message.startswith("Database error (transient) for partition 2024-03-05 on "
                              "mssql+pyodbc://loader:***@sql01:1433/sales: Error: [40001]")
    assert message.endswith("[SQLSTATE 40001, error 1205]")
    assert "hunter2" not in message and "MERGE" not in message
    assert "for no partition on" in describe_db_error(ValueError("x"), "sqlite:///w.db", None)
    assert "(permanent)" in describe_db_error(ValueError("x"), "sqlite:///w.db", None)


# --- Real PostgreSQL: a killed backend ---------------------------------------------------------

def _pg_admin() -> psycopg.Connection:
    """An autocommit connection to the configured admin database (SALES_PLATFORM_TEST_PG_URL)."""
    require_postgres()
    return psycopg.connect(pg_dsn(), autocommit=True, connect_timeout=3)


def _terminate(admin: psycopg.Connection, where: str, param: object) -> list[int]:
    """pg_terminate_backend, then wait until the backends are really gone (it only signals)."""
    pids = [r[0] for r in admin.execute(f"SELECT pid FROM pg_stat_activity WHERE {where}", (param,))]
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
        assert time.monotonic() < deadline, "backend did not exit"
        time.sleep(0.05)
    return pids


def test_retry_reconnects_after_postgres_backend_is_killed(pg_database: str):
    admin = _pg_admin()
    pids: list[int] = []
    errors: list[BaseException] = []

    def work() -> int:
        with psycopg.connect(pg_dsn(pg_database), connect_timeout=5) as conn:
            pids.append(conn.info.backend_pid)
            conn.execute("SELECT 1")
            if len(pids) == 1:
                _terminate(admin, "pid = %s", pids[0])
            return conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    try:
        result = run_with_retries(work, sleep=lambda _: None, on_retry=lambda n, e, d: errors.append(e))
    finally:
        admin.close()
    assert len(pids) == 2 and result == pids[1] != pids[0]
    assert len(errors) == 1 and isinstance(errors[0], psycopg.OperationalError) and is_transient(errors[0])


def _frame(ids: list[str], quantity: int = 1) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": ids, "customer_id": [f"cust-{i}" for i in ids], "product_id": ["prod-1"] * len(ids),
        "quantity": [quantity] * len(ids), "sale_ts": pd.to_datetime(["2024-03-05 10:00:00"] * len(ids)),
        "source_file": ["sales_20240305.csv"] * len(ids),
    })


@pytest.fixture
def pg_database():
    """A new, empty PostgreSQL database (dropped afterwards) for a full SalesLoader run."""
    admin = _pg_admin()
    name = f"sp_retry_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_sales_loader_retry_survives_a_backend_killed_mid_load(pg_database: str):
    app = f"sp-retry-{uuid.uuid4().hex[:8]}"
    engine = make_engine(f"{pg_database}?application_name={app}")
    loader = SalesLoader(engine)
    admin = _pg_admin()
    attempts: list[int] = []
    errors: list[BaseException] = []

    def batches():
        yield _frame(["t1", "t2"])
        if len(attempts) == 1:  # first attempt: the server drops us half-way through staging
            assert _terminate(admin, "application_name = %s", app)
        yield _frame(["t3", "t4"])

    def load():
        attempts.append(1)
        return loader.load_day(date(2024, 3, 5), batches(), datetime(2024, 3, 6))

    try:
        stats = run_with_retries(load, sleep=lambda _: None, on_retry=lambda n, e, d: errors.append(e))
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(tables.sales)).scalar_one()
    finally:
        admin.close()
        engine.dispose()
    assert len(attempts) == 2 and len(errors) == 1 and is_transient(errors[0])
    assert (stats.staged, stats.inserted, stats.updated) == (4, 4, 0) and rows == 4


# --- The CI machine's ODBC setup ---------------------------------------------------------------

def test_pyodbc_sees_a_freetds_driver(pyodbc, freetds: str):
    # Skips on a laptop without unixodbc/tdsodbc; fails in CI, where .ci/run installs both.
    assert freetds in pyodbc.drivers() and "freetds" in freetds.lower()
