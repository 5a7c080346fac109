"""The warehouse: one interface, one implementation per database."""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field
from sqlalchemy import URL, Engine

from sales_platform.core.preflight import ConfigurationError, parse_db_url
from sales_platform.core.redact import redact_url
from sales_platform.core.warehouse.engine import cached_engine


class WarehouseResource(dg.ConfigurableResource, ABC):
    """A SQL warehouse reached through SQLAlchemy.

    The schema is brought up to date at one point: ``setup_for_execution``, which Dagster calls
    when a run, step or sensor initialises the resource (and ``resources.factory.resolved`` for
    the CLI; the API's upload endpoints get the same engine without Dagster from
    ``core.warehouse.configured``). ``engine()`` only returns the process's cached engine.
    """

    @abstractmethod
    def url(self) -> URL:
        """The full SQLAlchemy URL (may hold a password: never display it; use ``display_url``)."""

    @property
    def kind(self) -> str:
        return self.url().get_backend_name()

    def engine(self) -> Engine:
        """The process's cached engine for this warehouse; no schema work (see ``prepare``)."""
        return self._cached_engine(migrate=False)

    def prepare(self) -> Engine:
        """Apply pending migrations (once per process and URL) and return the engine."""
        return self._cached_engine(migrate=True)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.prepare()

    def _cached_engine(self, migrate: bool) -> Engine:
        return cached_engine(self.url(), migrate=migrate)

    def display_url(self) -> str:
        return redact_url(self.url().render_as_string(hide_password=False))


class SqliteWarehouse(WarehouseResource):
    """Embedded default: one SQLite file."""

    path: str = Field(description="Path of the SQLite database file.")

    def url(self) -> URL:
        return URL.create("sqlite", database=self.path)


class SqlUrlWarehouse(WarehouseResource):
    """Any database SQLAlchemy reaches, from one URL (SALES_PLATFORM_DB_URL)."""

    database_url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://u:p@host/db")

    def url(self) -> URL:
        parsed, problems = parse_db_url(self.database_url)
        if problems or parsed is None:
            raise ConfigurationError(problems)
        return parsed

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # The pre-flight rules at init: a wrong URL fails the step with the CLI's one line
        # (naming SALES_PLATFORM_DB_URL) before anything runs, and a SQLite URL into a missing
        # folder is refused instead of creating an empty warehouse there.
        self.url()
        super().setup_for_execution(context)


class PostgresWarehouse(WarehouseResource):
    """PostgreSQL through psycopg 3 (loads use COPY)."""

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "postgres"
    user: str = "postgres"
    password: str | None = Field(default=None, repr=False)

    def url(self) -> URL:
        return URL.create("postgresql+psycopg", username=self.user, password=self.password,
                          host=self.host, port=self.port, database=self.database)
