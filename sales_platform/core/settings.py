"""Environment variable names and defaults (the configuration contract, read in one place)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = "SALES_PLATFORM_DATA_DIR"
DAGSTER_HOME = "DAGSTER_HOME"  # Dagster's own: where the CLI's runs are recorded
CELERY_BROKER_URL = "DAGSTER_CELERY_BROKER_URL"  # dagster-celery's own
DB_URL = "SALES_PLATFORM_DB_URL"
ENCRYPTION_KEY = "SALES_PLATFORM_ENCRYPTION_KEY"
RETIRED_KEYS = "SALES_PLATFORM_RETIRED_KEYS"  # previous-format keys, read for the migration only
ENCRYPTION_KEY_FILE = "SALES_PLATFORM_ENCRYPTION_KEY_FILE"  # a file holding the master key instead
KEYSET_FILE = "SALES_PLATFORM_KEYSET_FILE"  # the wrapped keyset (default <data dir>/keys/keyset.json)
DEMO = "SALES_PLATFORM_DEMO"  # 1: a demo or test deployment (demo key under the data dir, derived first key)
DEMO_KEY_FILE = "keys/demo.key"  # under the data dir, demo mode only
START_DATE = "SALES_PLATFORM_START_DATE"
API_URL = "SALES_PLATFORM_API_URL"
ALERT_WEBHOOK = "SALES_PLATFORM_ALERT_WEBHOOK"
OPENLINEAGE_URL = "SALES_PLATFORM_OPENLINEAGE_URL"  # OpenLineage API base URL (else events go to a file)
MSSQL_HOST = "SALES_PLATFORM_MSSQL_HOST"
MSSQL_PORT = "SALES_PLATFORM_MSSQL_PORT"
MSSQL_DATABASE = "SALES_PLATFORM_MSSQL_DATABASE"
MSSQL_USER = "SALES_PLATFORM_MSSQL_USER"
MSSQL_PASSWORD = "SALES_PLATFORM_MSSQL_PASSWORD"
MSSQL_TRUSTED_CONNECTION = "SALES_PLATFORM_MSSQL_TRUSTED_CONNECTION"
MSSQL_DRIVER = "SALES_PLATFORM_MSSQL_DRIVER"
MSSQL_TRUST_SERVER_CERTIFICATE = "SALES_PLATFORM_MSSQL_TRUST_SERVER_CERTIFICATE"
AZURE_SQL_SERVER = "SALES_PLATFORM_AZURE_SQL_SERVER"
AZURE_SQL_DATABASE = "SALES_PLATFORM_AZURE_SQL_DATABASE"
AZURE_SQL_AUTH = "SALES_PLATFORM_AZURE_SQL_AUTH"
AZURE_SQL_USER = "SALES_PLATFORM_AZURE_SQL_USER"
AZURE_SQL_PASSWORD = "SALES_PLATFORM_AZURE_SQL_PASSWORD"
AZURE_SQL_CLIENT_ID = "SALES_PLATFORM_AZURE_SQL_CLIENT_ID"
SCHEMA_CONTRACT = "SALES_PLATFORM_SCHEMA_CONTRACT"
SCHEMA_POLICY = "SALES_PLATFORM_SCHEMA_POLICY"
BLOB_CONTAINER = "SALES_PLATFORM_BLOB_CONTAINER"
BLOB_PREFIX = "SALES_PLATFORM_BLOB_PREFIX"
BLOB_INCOMING_PREFIX = "SALES_PLATFORM_BLOB_INCOMING_PREFIX"  # blob drop zone (unset: off)
BLOB_CONNECTION_STRING = "SALES_PLATFORM_BLOB_CONNECTION_STRING"
BLOB_ACCOUNT_URL = "SALES_PLATFORM_BLOB_ACCOUNT_URL"
BLOB_ACCOUNT_KEY = "SALES_PLATFORM_BLOB_ACCOUNT_KEY"
BLOB_SAS_TOKEN = "SALES_PLATFORM_BLOB_SAS_TOKEN"
BLOB_USE_DEFAULT_CREDENTIAL = "SALES_PLATFORM_BLOB_USE_DEFAULT_CREDENTIAL"
API_TOKEN = "SALES_PLATFORM_API_TOKEN"
API_DEV_NO_TOKEN = "SALES_PLATFORM_API_DEV_NO_TOKEN"  # 1: serve without a token, loopback only
API_HEADER_TIMEOUT_S = "SALES_PLATFORM_API_HEADER_TIMEOUT_S"  # a request head must arrive within
API_BODY_TIMEOUT_S = "SALES_PLATFORM_API_BODY_TIMEOUT_S"  # a body or response stalled this long fails
API_MAX_CONNECTIONS_PER_CLIENT = "SALES_PLATFORM_API_MAX_CONNECTIONS_PER_CLIENT"
API_CA_BUNDLE = "SALES_PLATFORM_API_CA_BUNDLE"
EXECUTOR = "SALES_PLATFORM_EXECUTOR"
EXECUTORS = ("", "in_process", "multiprocess", "celery")  # "" = in_process
MAX_REJECT_RATE = "SALES_PLATFORM_MAX_REJECT_RATE"
MAX_QUANTITY = "SALES_PLATFORM_MAX_QUANTITY"
MAX_QUANTITY_LIMIT = 10**15  # quantities are compared as float64: whole numbers exact up to 2**53
SOURCE_TIMEZONE = "SALES_PLATFORM_SOURCE_TIMEZONE"
SETTLE_S = "SALES_PLATFORM_SETTLE_S"
SENSOR_INTERVAL_S = "SALES_PLATFORM_SENSOR_INTERVAL_S"
LANDING_BATCH_FILES = "SALES_PLATFORM_LANDING_BATCH_FILES"  # settled files per landing run
DEFAULT_LANDING_BATCH_FILES = 500
MAX_COLUMNS = "SALES_PLATFORM_MAX_COLUMNS"
MAX_FILE_BYTES = "SALES_PLATFORM_MAX_FILE_BYTES"
UPLOAD_MAX_BYTES = "SALES_PLATFORM_UPLOAD_MAX_BYTES"  # POST /uploads size limit (413 beyond)
CATEGORY_BINS = "SALES_PLATFORM_CATEGORY_BINS"  # revenue bounds Low|Medium,Medium|High
DEFAULT_CATEGORY_BINS = "100,500"  # the Dagster ETL guide's pd.cut bins [0, 100, 500, inf]
REPORT_DAYS = "SALES_PLATFORM_REPORT_DAYS"  # days sales_report charts, ending at the newest sale day
DAY_WORKERS = "SALES_PLATFORM_DAY_WORKERS"  # days of a range cleaned / encrypted at once
DEFAULT_DAY_WORKERS = 2  # measured best on the 2-core reference machine (docs/performance.md)


def value(name: str, default: str = "") -> str:
    """A setting's raw text (stripped), or ``default`` when unset or blank: every module reads the
    environment through here, so this file is the configuration contract."""
    return os.environ.get(name, "").strip() or default


def flag(name: str) -> bool:
    """A yes/no setting: 1, true or yes (any case) is yes."""
    return value(name).lower() in ("1", "true", "yes")


def demo_mode() -> bool:
    """Explicit demo mode (``make run``, ``make ui``, ``sales-platform demo``, the tests)."""
    return flag(DEMO)


class SettingError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def env_number(name: str, default: float, minimum: float, maximum: float | None = None,
               integer: bool = False) -> float | int:
    """A number from the environment, checked against its range (errors name the variable)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SettingError(f"{name}={raw!r} is not {kind}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingError(f"{name}={raw!r} must be {bound}")
    return value


def source_timezone() -> str:
    """The zone naive timestamps in dropped files are read in (default UTC)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = os.environ.get(SOURCE_TIMEZONE, "").strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingError(f"{SOURCE_TIMEZONE}={name!r} is not an IANA time zone "
                           "(e.g. UTC, Europe/Paris, America/New_York)") from None
    return name

DEFAULT_START_DATE = "2024-01-01"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR, "./data")).expanduser().resolve()


def start_date() -> str:
    return os.environ.get(START_DATE, DEFAULT_START_DATE)


def default_db_url(folder: Path | None = None) -> str:
    return f"sqlite:///{(folder or data_dir()) / 'warehouse.db'}"


def warehouse_kind() -> str:
    """The configured warehouse as a Dagster kind (icon in the asset graph)."""
    url = os.environ.get(DB_URL, "")
    if url:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        return {"postgresql": "postgres", "mssql": "sqlserver"}.get(scheme, scheme)
    if os.environ.get(AZURE_SQL_SERVER):
        return "azuresql"
    if os.environ.get(MSSQL_HOST):
        return "sqlserver"
    return "sqlite"
