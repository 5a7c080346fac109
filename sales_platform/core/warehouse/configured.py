"""The warehouse the environment configures, without Dagster: for the services that run outside the
Dagster definitions (the upload endpoints of the products API), which import no resource.

The same choice, settings and defaults as ``resources.factory.warehouse_resource`` (the Dagster
resources): SALES_PLATFORM_DB_URL, else Azure SQL, else SQL Server, else the embedded SQLite file
under the data dir; and the same engine as that resource resolved and set up (the process's cached
engine, its schema brought up to date once). test_uploads.py holds the two equal.
"""

from __future__ import annotations

from sqlalchemy import URL, Engine

from sales_platform.core import settings
from sales_platform.core.preflight import ConfigurationError, parse_db_url
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.mssql import (
    AZURE_SQL_PORT,
    DEFAULT_DRIVER,
    azure_token_provider,
    cached_token_engine,
    odbc_connection_string,
    sqlalchemy_url_from_odbc,
)

LOGIN_TIMEOUT_S = 30  # the warehouse resources' timeout_s default
AZURE_AUTHS = ("sql", "azure_ad")


def _required(name: str) -> str:
    found = settings.value(name)
    if not found:
        raise settings.SettingError(f"{name} is not set")
    return found


def configured_warehouse() -> tuple[URL, str | None]:
    """The configured warehouse's URL and, for an Azure AD login, the managed identity's client id
    ("" for DefaultAzureCredential); None when the URL logs in by itself."""
    if settings.value(settings.DB_URL):
        url, problems = parse_db_url(settings.value(settings.DB_URL))
        if problems or url is None:
            raise ConfigurationError(problems)
        return url, None
    if settings.value(settings.AZURE_SQL_SERVER):
        auth = settings.value(settings.AZURE_SQL_AUTH, "azure_ad")
        user = settings.value(settings.AZURE_SQL_USER) or None
        password = settings.value(settings.AZURE_SQL_PASSWORD) or None
        if auth not in AZURE_AUTHS:
            raise settings.SettingError(f"{settings.AZURE_SQL_AUTH}={auth!r}: expected 'sql' or 'azure_ad'")
        if auth == "sql" and not (user and password):
            raise ValueError("AzureSqlWarehouse auth='sql' needs user and password")
        if auth == "azure_ad" and (user or password):
            raise ValueError("AzureSqlWarehouse auth='azure_ad' takes no user/password")
        odbc = odbc_connection_string(
            f"tcp:{_required(settings.AZURE_SQL_SERVER)}", AZURE_SQL_PORT,
            _required(settings.AZURE_SQL_DATABASE), DEFAULT_DRIVER, user=user, password=password,
            encrypt=True, trust_server_certificate=False, timeout_s=LOGIN_TIMEOUT_S)
        client = settings.value(settings.AZURE_SQL_CLIENT_ID) if auth == "azure_ad" else None
        return sqlalchemy_url_from_odbc(odbc), client
    if settings.value(settings.MSSQL_HOST):
        odbc = odbc_connection_string(
            _required(settings.MSSQL_HOST), int(settings.value(settings.MSSQL_PORT, "1433")),
            _required(settings.MSSQL_DATABASE),
            settings.value(settings.MSSQL_DRIVER, "ODBC Driver 18 for SQL Server"),
            user=settings.value(settings.MSSQL_USER) or None,
            password=settings.value(settings.MSSQL_PASSWORD) or None,
            trusted_connection=settings.flag(settings.MSSQL_TRUSTED_CONNECTION), encrypt=True,
            trust_server_certificate=settings.flag(settings.MSSQL_TRUST_SERVER_CERTIFICATE),
            timeout_s=LOGIN_TIMEOUT_S)
        return sqlalchemy_url_from_odbc(odbc), None
    return URL.create("sqlite", database=str(settings.data_dir() / "warehouse.db")), None


def configured_engine() -> Engine:
    """The process's engine for the configured warehouse, migrated (once per process and URL)."""
    url, azure_client = configured_warehouse()
    if azure_client is None:
        return cached_engine(url, migrate=True)
    client_id = azure_client or None
    return cached_token_engine(url, f"azure_ad:{client_id or 'default'}",
                               lambda: azure_token_provider(client_id), migrate=True)
