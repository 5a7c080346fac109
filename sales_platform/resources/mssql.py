"""SQL Server and Azure SQL warehouses (pyodbc + Microsoft ODBC Driver 18)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy import URL, Engine

from sales_platform.core.warehouse.mssql import (
    AZURE_SQL_PORT,
    DEFAULT_DRIVER,
    azure_token_provider,
    cached_token_engine,
    odbc_connection_string,
    sqlalchemy_url_from_odbc,
)
from sales_platform.resources.warehouse import WarehouseResource


def _display(host: str, port: int | None, database: str, user: str | None) -> str:
    # Built from the parts, not the ODBC string: a brace-quoted password never reaches the text.
    return URL.create("mssql+pyodbc", username=user, password="***" if user else None, host=host,
                      port=port, database=database).render_as_string(hide_password=True)


class SqlServerWarehouse(WarehouseResource):
    """SQL Server (on premises or VM); SQL login or Windows/Kerberos (trusted) authentication."""

    host: str = Field(description="Server host name or IP address.")
    port: int = 1433
    database: str
    user: str | None = Field(default=None, description="SQL login; leave empty with trusted_connection.")
    password: str | None = Field(default=None, repr=False, description="SQL login password (use EnvVar).")
    trusted_connection: bool = Field(default=False, description="Log in as the process identity.")
    driver: str = DEFAULT_DRIVER
    encrypt: bool = Field(default=True, description="TLS; leave on unless the server cannot do it.")
    trust_server_certificate: bool = Field(
        default=False, description="Skip certificate validation (self-signed test servers only).")
    timeout_s: int = Field(default=30, description="Login timeout in seconds.")

    def odbc(self) -> str:
        return odbc_connection_string(
            self.host, self.port, self.database, self.driver, user=self.user, password=self.password,
            trusted_connection=self.trusted_connection, encrypt=self.encrypt,
            trust_server_certificate=self.trust_server_certificate, timeout_s=self.timeout_s)

    def url(self) -> URL:
        return sqlalchemy_url_from_odbc(self.odbc())

    def display_url(self) -> str:
        return _display(self.host, self.port, self.database, self.user)


class AzureSqlWarehouse(WarehouseResource):
    """Azure SQL Database. Encrypted with a validated certificate, always: no field turns that off.

    ``auth="azure_ad"`` (default) logs in with an Azure AD token: a managed identity when
    ``managed_identity_client_id`` is set, else DefaultAzureCredential (environment, workload
    identity, managed identity, Azure CLI...). ``auth="sql"`` uses a SQL login.
    """

    server: str = Field(description="Server host, e.g. myserver.database.windows.net.")
    database: str
    auth: Literal["sql", "azure_ad"] = "azure_ad"
    user: str | None = Field(default=None, description="SQL login (auth='sql' only).")
    password: str | None = Field(default=None, repr=False, description="SQL login password (auth='sql').")
    managed_identity_client_id: str | None = Field(
        default=None, description="Client id of a user-assigned managed identity (auth='azure_ad').")
    driver: str = DEFAULT_DRIVER
    timeout_s: int = Field(default=30, description="Login timeout (serverless databases resume slowly).")

    def odbc(self) -> str:
        if self.auth == "sql" and not (self.user and self.password):
            raise ValueError("AzureSqlWarehouse auth='sql' needs user and password")
        if self.auth == "azure_ad" and (self.user or self.password):
            raise ValueError("AzureSqlWarehouse auth='azure_ad' takes no user/password")
        return odbc_connection_string(
            f"tcp:{self.server}", AZURE_SQL_PORT, self.database, self.driver,
            user=self.user, password=self.password, encrypt=True, trust_server_certificate=False,
            timeout_s=self.timeout_s)

    def url(self) -> URL:
        return sqlalchemy_url_from_odbc(self.odbc())

    def _cached_engine(self, migrate: bool) -> Engine:
        if self.auth == "sql":
            return super()._cached_engine(migrate)
        client_id = self.managed_identity_client_id
        return cached_token_engine(self.url(), f"azure_ad:{client_id or 'default'}",
                                   lambda: azure_token_provider(client_id), migrate=migrate)

    def display_url(self) -> str:
        user = self.user if self.auth == "sql" else None
        shown = _display(self.server, AZURE_SQL_PORT, self.database, user)
        return shown if self.auth == "sql" else f"{shown}?authentication=azure_ad_token"
