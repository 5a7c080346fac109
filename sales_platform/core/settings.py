"""Environment variable names and defaults (the configuration contract, read in one place)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = "SALES_PLATFORM_DATA_DIR"
DB_URL = "SALES_PLATFORM_DB_URL"
ENCRYPTION_KEY = "SALES_PLATFORM_ENCRYPTION_KEY"
RETIRED_KEYS = "SALES_PLATFORM_RETIRED_KEYS"
START_DATE = "SALES_PLATFORM_START_DATE"
API_URL = "SALES_PLATFORM_API_URL"
BLOB_CONTAINER = "SALES_PLATFORM_BLOB_CONTAINER"
BLOB_PREFIX = "SALES_PLATFORM_BLOB_PREFIX"
BLOB_CONNECTION_STRING = "SALES_PLATFORM_BLOB_CONNECTION_STRING"
BLOB_ACCOUNT_URL = "SALES_PLATFORM_BLOB_ACCOUNT_URL"
BLOB_ACCOUNT_KEY = "SALES_PLATFORM_BLOB_ACCOUNT_KEY"
BLOB_SAS_TOKEN = "SALES_PLATFORM_BLOB_SAS_TOKEN"
BLOB_USE_DEFAULT_CREDENTIAL = "SALES_PLATFORM_BLOB_USE_DEFAULT_CREDENTIAL"
API_TOKEN = "SALES_PLATFORM_API_TOKEN"

DEFAULT_START_DATE = "2024-01-01"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR, "./data")).expanduser().resolve()


def start_date() -> str:
    return os.environ.get(START_DATE, DEFAULT_START_DATE)


def default_db_url(folder: Path | None = None) -> str:
    return f"sqlite:///{(folder or data_dir()) / 'warehouse.db'}"
