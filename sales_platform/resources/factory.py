"""Resources as configured by the environment (the only place that reads configuration)."""

from __future__ import annotations

import dagster as dg

from sales_platform.core import settings
from sales_platform.resources.blob import BlobStorageResource, LocalBlobStorage
from sales_platform.resources.platform import PlatformResource
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform.resources.warehouse import SqliteWarehouse, SqlUrlWarehouse, WarehouseResource

# Same settings as deploy/celery_run_config.yaml (which the workers read): a step is acknowledged once done
# and a busy worker reserves no other step, so a lost worker hands its step back and steps spread out.
CELERY_CONFIG = {"broker": {"env": "DAGSTER_CELERY_BROKER_URL"}, "backend": "rpc://",
                 "config_source": {"task_acks_late": True, "worker_prefetch_multiplier": 1}}


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    """An EnvVar when the variable is set (so the UI shows its name, never its value)."""
    return dg.EnvVar(name) if settings.value(name) else default


def platform_resource() -> PlatformResource:
    return PlatformResource(
        data_dir=_env_or(settings.DATA_DIR, str(settings.data_dir())),
        encryption_key=_env_or(settings.ENCRYPTION_KEY, None),
        retired_keys=_env_or(settings.RETIRED_KEYS, None),
        encryption_key_file=_env_or(settings.ENCRYPTION_KEY_FILE, None),
        keyset_file=_env_or(settings.KEYSET_FILE, None),
        demo=settings.demo_mode(),
        start_date=_env_or(settings.START_DATE, settings.DEFAULT_START_DATE),
        schema_contract=_env_or(settings.SCHEMA_CONTRACT, None),
        schema_policy=_env_or(settings.SCHEMA_POLICY, None),
        max_reject_rate=settings.env_number(settings.MAX_REJECT_RATE, 0.2, 0.0, 1.0),
        max_quantity=settings.env_number(settings.MAX_QUANTITY, 1000, 1, settings.MAX_QUANTITY_LIMIT,
                                         integer=True),
        source_timezone=settings.source_timezone(),
        settle_s=settings.env_number(settings.SETTLE_S, 2.0, 0.0),
        max_columns=settings.env_number(settings.MAX_COLUMNS, 200, 5, integer=True),
        max_file_bytes=settings.env_number(settings.MAX_FILE_BYTES, 20 << 30, 1, integer=True),
        day_workers=settings.env_number(settings.DAY_WORKERS, settings.DEFAULT_DAY_WORKERS, 1, 32,
                                        integer=True),
    )


def _flag(name: str) -> bool:
    return settings.flag(name)


def warehouse_resource() -> WarehouseResource:
    """SALES_PLATFORM_DB_URL, else Azure SQL, else SQL Server, else the embedded SQLite file."""
    if settings.value(settings.DB_URL):
        return SqlUrlWarehouse(database_url=dg.EnvVar(settings.DB_URL))
    if settings.value(settings.AZURE_SQL_SERVER):
        from sales_platform.resources.mssql import AzureSqlWarehouse

        return AzureSqlWarehouse(
            server=dg.EnvVar(settings.AZURE_SQL_SERVER),
            database=dg.EnvVar(settings.AZURE_SQL_DATABASE),
            auth=settings.value(settings.AZURE_SQL_AUTH, "azure_ad"),  # a Literal: plain str
            user=_env_or(settings.AZURE_SQL_USER, None),
            password=_env_or(settings.AZURE_SQL_PASSWORD, None),
            managed_identity_client_id=_env_or(settings.AZURE_SQL_CLIENT_ID, None),
        )
    if settings.value(settings.MSSQL_HOST):
        from sales_platform.resources.mssql import SqlServerWarehouse

        return SqlServerWarehouse(
            host=dg.EnvVar(settings.MSSQL_HOST),
            port=int(settings.value(settings.MSSQL_PORT, "1433")),
            database=dg.EnvVar(settings.MSSQL_DATABASE),
            user=_env_or(settings.MSSQL_USER, None),
            password=_env_or(settings.MSSQL_PASSWORD, None),
            trusted_connection=_flag(settings.MSSQL_TRUSTED_CONNECTION),
            driver=settings.value(settings.MSSQL_DRIVER, "ODBC Driver 18 for SQL Server"),
            trust_server_certificate=_flag(settings.MSSQL_TRUST_SERVER_CERTIFICATE),
        )
    return SqliteWarehouse(path=str(settings.data_dir() / "warehouse.db"))


def blob_resource() -> BlobStorageResource:
    """Azure Blob Storage when a container is configured; else a local folder (zero setup)."""
    if not settings.value(settings.BLOB_CONTAINER):
        return LocalBlobStorage(root=str(settings.data_dir() / "blob"))
    from sales_platform.resources.azure_blob import AzureBlobStorage

    return AzureBlobStorage(
        container=dg.EnvVar(settings.BLOB_CONTAINER),
        prefix=_env_or(settings.BLOB_PREFIX, ""),
        connection_string=_env_or(settings.BLOB_CONNECTION_STRING, None),
        account_url=_env_or(settings.BLOB_ACCOUNT_URL, None),
        account_key=_env_or(settings.BLOB_ACCOUNT_KEY, None),
        sas_token=_env_or(settings.BLOB_SAS_TOKEN, None),
        use_default_credential=settings.value(settings.BLOB_USE_DEFAULT_CREDENTIAL) == "1",
    )


def products_api_resource() -> ProductsApiResource:
    """Real HTTP when SALES_PLATFORM_API_URL is set; else the same app in-process (zero setup)."""
    return ProductsApiResource(
        base_url=_env_or(settings.API_URL, None),
        store_path=str(settings.data_dir() / "products_api.sqlite"),
        token=_env_or(settings.API_TOKEN, None),
        ca_bundle=_env_or(settings.API_CA_BUNDLE, None),
    )


def resources() -> dict[str, object]:
    return {"platform": platform_resource(), "warehouse": warehouse_resource(),
            "blob": blob_resource(), "products_api": products_api_resource()}


def executor() -> dg.ExecutorDefinition:
    """The executor of every job (chosen by SALES_PLATFORM_EXECUTOR, measured in docs/performance.md):

    - unset or ``in_process``: every step in the run's own process. On one machine the shortest
      run: no second import of the code location by a forkserver (~4 s) and no step processes; a
      100-row day 9.5 s against 20.6 s multiprocess, and a 1M-row day's steps form a chain anyway.
    - ``multiprocess``: steps in processes forked from a server that imported the code once, two
      at a time (step isolation; independent steps in parallel).
    - ``celery``: every step a Celery task (pip install dagster-celery) on the broker at
      $DAGSTER_CELERY_BROKER_URL: the scale-out path.
    """
    choice = settings.value(settings.EXECUTOR)
    if choice in ("", "in_process"):
        return dg.in_process_executor
    if choice == "celery":
        from dagster_celery import celery_executor

        # Configured here, not in run config: sensor, backfill and UI runs carry none.
        return celery_executor.configured(CELERY_CONFIG, name="celery")
    if choice != "multiprocess":
        raise ValueError(f"{settings.EXECUTOR}={choice!r}: expected 'in_process', 'multiprocess', "
                         "'celery' or nothing")
    return dg.multiprocess_executor.configured(
        {"max_concurrent": 2,
         "start_method": {"forkserver": {"preload_modules": ["sales_platform.definitions"]}}},
        name="multiprocess_forkserver")


def resolved(resource: dg.ConfigurableResource):
    """The resource with its EnvVar fields read (for use outside a Dagster run, e.g. the CLI)."""
    return resource.process_config_and_initialize()
