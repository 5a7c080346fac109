"""Pre-flight configuration check: every setting parsed and validated once, up front.

Each problem is one line that names the variable, says what is wrong and how to fix it, with secrets
redacted. The CLI runs it before writing anything (``sales-platform check``, ``run``, ``demo``);
resources call the same functions at init so a daemon run fails with the same line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from sales_platform.core import settings
from sales_platform.core.redact import redact_text, redact_url

CONNECT_TIMEOUT_S = 5
KNOWN_BACKENDS = ("sqlite", "postgresql", "mssql")
# Drivers whose DBAPI module we know, with the one-line fix when it is missing.
DRIVER_FIXES = {
    "psycopg2": "pip install psycopg2-binary, or spell the URL postgresql+psycopg:// (psycopg 3, installed)",
    "psycopg": "pip install 'psycopg[binary]'",
    "pyodbc": "pip install pyodbc and an ODBC driver for SQL Server",
}


@dataclass(frozen=True)
class Problem:
    """One configuration problem: the variable, what is wrong, how to fix it."""

    variable: str
    message: str

    def line(self) -> str:
        return f"{self.variable}: {self.message}"


class ConfigurationError(ValueError):
    """One or more configuration problems (each a line that names its variable)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.line() for p in problems))


def _first_line(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__, secrets)


# --- numbers, names, files -------------------------------------------------------------------------

NUMBER_SETTINGS: tuple[tuple[str, float, float, float | None, bool], ...] = (
    (settings.MAX_REJECT_RATE, 0.2, 0.0, 1.0, False),
    (settings.MAX_QUANTITY, 1000, 1, settings.MAX_QUANTITY_LIMIT, True),
    (settings.SETTLE_S, 2.0, 0.0, None, False),
    (settings.SENSOR_INTERVAL_S, 30, 1, None, True),
    (settings.LANDING_BATCH_FILES, settings.DEFAULT_LANDING_BATCH_FILES, 1, 100_000, True),
    (settings.MAX_COLUMNS, 200, 5, None, True),
    (settings.MAX_FILE_BYTES, 20 << 30, 1, None, True),
    (settings.MSSQL_PORT, 1433, 1, 65535, True),
    (settings.DAY_WORKERS, settings.DEFAULT_DAY_WORKERS, 1, 32, True),
)


def check_numbers() -> list[Problem]:
    problems = []
    for name, default, minimum, maximum, integer in NUMBER_SETTINGS:
        try:
            settings.env_number(name, default, minimum, maximum, integer=integer)
        except settings.SettingError as exc:
            problems.append(Problem(name, str(exc).removeprefix(f"{name}=")))
    return problems


# Settings whose values the warehouse stores: (setting, default, table, column, factor): the
# setting times ``factor`` must fit the column (a sale's revenue: quantity x the largest
# dim_products.unit_price).
STORED_LIMITS: tuple[tuple[str, int, str, str, str | None], ...] = (
    (settings.MAX_QUANTITY, 1000, "sales", "quantity", None),
    (settings.MAX_QUANTITY, 1000, "agg_sales_daily", "total_quantity", None),
    (settings.MAX_QUANTITY, 1000, "agg_sales_daily", "total_revenue", "unit_price"),
    (settings.MAX_FILE_BYTES, 20 << 30, "file_ledger", "size_bytes", None),
)
DIALECTS = {"postgres": "postgresql", "sqlserver": "mssql", "azuresql": "mssql"}


def check_stored_limits() -> list[Problem]:
    """A limit the configured backend's column cannot store is refused before anything runs (a
    value under the limit would otherwise fail at the insert and stop the day)."""
    from sales_platform.core.limits import integer_capacity
    from sales_platform.core.warehouse.tables import metadata

    dialect = DIALECTS.get(settings.warehouse_kind(), settings.warehouse_kind())
    problems = []
    for name, default, table, column, factor in STORED_LIMITS:
        try:
            value = settings.env_number(name, default, 1, integer=True)
        except settings.SettingError:
            continue  # check_numbers names it
        target = metadata.tables[table].c[column]
        capacity = integer_capacity(target.type, dialect)
        times = integer_capacity(metadata.tables["dim_products"].c[factor].type, dialect) \
            if factor else 1
        if capacity is not None and times is not None and value * times > capacity:
            what = f"{value} x the largest {factor} ({times})" if factor else str(value)
            problems.append(Problem(name, f"{what} is more than {dialect}'s {table}.{column} "
                                          f"({target.type.compile(_dialect(dialect))}) stores "
                                          f"({capacity}): lower it"))
    return problems


def _dialect(name: str):
    from sqlalchemy.dialects import mssql, postgresql, sqlite

    return {"postgresql": postgresql, "mssql": mssql}.get(name, sqlite).dialect()


def check_timezone() -> list[Problem]:
    try:
        settings.source_timezone()
    except settings.SettingError as exc:
        return [Problem(settings.SOURCE_TIMEZONE, str(exc).removeprefix(f"{settings.SOURCE_TIMEZONE}="))]
    return []


def check_start_date(today: date | None = None) -> list[Problem]:
    raw = settings.start_date()
    try:
        first = date.fromisoformat(raw)
    except ValueError:
        return [Problem(settings.START_DATE, f"{raw!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-01")]
    today = today or datetime.now(UTC).date()
    if first > today:
        return [Problem(settings.START_DATE, f"{raw} is after today ({today}): no partition would exist")]
    return []


def check_data_dir() -> list[Problem]:
    root = settings.data_dir()
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return [Problem(settings.DATA_DIR, f"{root}: {existing} is not a folder")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Problem(settings.DATA_DIR, f"{root}: {existing} is not writable by this user")]
    from sales_platform.core.private_files import link_message, linked_folders

    return [Problem(settings.DATA_DIR, link_message(folder)) for folder in linked_folders(root)]


def check_schema_settings() -> list[Problem]:
    problems = []
    policy = settings.value(settings.SCHEMA_POLICY)
    if policy and policy not in ("evolve", "freeze", "rescue"):
        problems.append(Problem(settings.SCHEMA_POLICY, f"{policy!r}: expected evolve, freeze or rescue"))
    contract = settings.value(settings.SCHEMA_CONTRACT)
    if contract:
        path = Path(contract).expanduser()
        if not path.is_file():
            problems.append(Problem(settings.SCHEMA_CONTRACT, f"{path} does not exist or is not a file"))
        else:
            try:
                json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(Problem(settings.SCHEMA_CONTRACT, f"{path} is not valid JSON: {exc}"))
    return problems


def check_category_bins() -> list[Problem]:
    from sales_platform.core.categories import category_bins

    try:
        category_bins()
    except settings.SettingError as exc:
        return [Problem(settings.CATEGORY_BINS, str(exc).removeprefix(f"{settings.CATEGORY_BINS}="))]
    return []


def check_executor() -> list[Problem]:
    choice = settings.value(settings.EXECUTOR)
    if choice not in settings.EXECUTORS:
        return [Problem(settings.EXECUTOR, f"{choice!r}: expected 'in_process', 'multiprocess', "
                                           "'celery' or unset (in_process)")]
    if choice == "celery" and not settings.value(settings.CELERY_BROKER_URL):
        return [Problem(settings.EXECUTOR, "celery needs DAGSTER_CELERY_BROKER_URL "
                                           "(e.g. pyamqp://guest@127.0.0.1:5672//)")]
    return []


# --- keys ------------------------------------------------------------------------------------------

def check_keys() -> list[Problem]:
    from sales_platform.core.crypto import parse_master_key

    problems = []
    active = settings.value(settings.ENCRYPTION_KEY)
    retired = [k.strip() for k in settings.value(settings.RETIRED_KEYS, "").split(",") if k.strip()]
    for name, values in ((settings.ENCRYPTION_KEY, [active] if active else []),
                         (settings.RETIRED_KEYS, retired)):
        for value in values:
            try:
                parse_master_key(value)
            except Exception as exc:  # noqa: BLE001 - any decoding failure is the same problem
                problems.append(Problem(name, f"cannot be used as a key ({_first_line(exc, (value,))}); "
                                              "make one with: python -c 'from sales_platform.core.crypto "
                                              "import generate_key; print(generate_key())'"))
    return problems + _key_source_problems(active)


def _key_source_problems(active: str) -> list[Problem]:
    """Where the master key comes from: the variable, a readable key file, or (demo mode only) a
    demo key file that this account alone owns and reads."""
    from sales_platform.core.keyset import demo_key_problem

    key_file = settings.value(settings.ENCRYPTION_KEY_FILE)
    if active:
        return []
    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file() or not os.access(path, os.R_OK):
            return [Problem(settings.ENCRYPTION_KEY_FILE, f"{path} does not exist or is not readable "
                                                          "(a file holding the base64 master key)")]
        return []
    if not settings.demo_mode():
        return [Problem(settings.ENCRYPTION_KEY,
                        "not set: production needs the master key here (or a file holding it in "
                        f"{settings.ENCRYPTION_KEY_FILE}); make one with: python -c 'from "
                        "sales_platform.core.crypto import generate_key; print(generate_key())'. For a "
                        f"demo, {settings.DEMO}=1 keeps a demo key under the data dir")]
    problem = demo_key_problem(settings.data_dir() / settings.DEMO_KEY_FILE)
    return [Problem(settings.DEMO, f"the demo key {problem}")] if problem else []


def demo_warnings() -> list[Problem]:
    if not settings.demo_mode():
        return []
    where = ("the master key set" if settings.value(settings.ENCRYPTION_KEY)
             or settings.value(settings.ENCRYPTION_KEY_FILE)
             else f"the demo key {settings.data_dir() / settings.DEMO_KEY_FILE}, beside the data it protects")
    return [Problem(settings.DEMO, f"demo mode: {where}; a new keyset's first key is derived from the "
                                   "master key. Not for production: unset it and set "
                                   f"{settings.ENCRYPTION_KEY}")]


# --- database --------------------------------------------------------------------------------------

def parse_db_url(raw: str) -> tuple[URL | None, list[Problem]]:
    """The URL in SALES_PLATFORM_DB_URL, or the problems that stop it being used."""
    var = settings.DB_URL
    shown = redact_url(raw)
    try:
        url = make_url(raw)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError
        return None, [Problem(var, f"{shown!r} is not a database URL; expected e.g. "
                                   "postgresql+psycopg://user:password@host:5432/sales or "
                                   "sqlite:////absolute/path/warehouse.db")]
    backend = url.get_backend_name()
    if backend == "postgres":
        return None, [Problem(var, f"scheme 'postgres://' is not understood; write "
                                   f"postgresql+psycopg://{shown.split('://', 1)[-1]}")]
    if backend not in KNOWN_BACKENDS:
        return None, [Problem(var, f"backend {backend!r} is not supported; use sqlite, "
                                   "postgresql+psycopg or mssql+pyodbc")]
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    problem = _driver_problem(url)
    if problem:
        return None, [problem]
    if backend == "sqlite":
        return url, _sqlite_path_problems(url)
    if backend == "postgresql" and not url.database:
        return None, [Problem(var, "no database name in the URL (…/<database> at the end)")]
    if backend == "postgresql" and pg_tls(url) == "clear":
        return None, [Problem(var, f"{_pg_host(url)} is not this machine and the URL asks for no "
                                   "verified TLS: add ?sslmode=verify-full (with sslrootcert=<CA file> "
                                   "unless the system store signs the server), or sslmode=require "
                                   "to encrypt without checking the server (warned)")]
    return url, []


STRONG_SSLMODES = ("verify-full",)
WEAK_SSLMODES = ("require", "verify-ca")  # encrypted, but the server's name is not checked


def _pg_host(url: URL) -> str:
    host = url.host or url.query.get("host") or ""
    return host if isinstance(host, str) else ",".join(host)


def pg_tls(url: URL) -> str:
    """How a PostgreSQL URL protects its traffic: ``local`` (loopback or a Unix socket), ``verified``
    (sslmode=verify-full), ``unverified`` (require, verify-ca) or ``clear`` (anything else)."""
    from sales_platform.core.urls import is_loopback

    hosts = [h.strip("[]") for h in _pg_host(url).split(",") if h]
    if all(h.startswith("/") or is_loopback(h.lower()) for h in hosts):  # no host: the local socket
        return "local"
    mode = url.query.get("sslmode")
    mode = mode if isinstance(mode, str) else ""
    return "verified" if mode in STRONG_SSLMODES else "unverified" if mode in WEAK_SSLMODES else "clear"


def _driver_problem(url: URL) -> Problem | None:
    try:
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or url.get_driver_name()
        fix = DRIVER_FIXES.get(module, f"install the {module} package")
        return Problem(settings.DB_URL, f"driver {url.get_driver_name()!r} is not installed: {fix}")
    except Exception as exc:  # noqa: BLE001 - unknown driver names raise NoSuchModuleError
        return Problem(settings.DB_URL, f"driver {url.drivername!r} is unknown ({_first_line(exc)})")
    return None


def _sqlite_path_problems(url: URL) -> list[Problem]:
    if not url.database or url.database == ":memory:":
        return [Problem(settings.DB_URL, "an in-memory SQLite database keeps nothing; give a file path "
                                         "(sqlite:////absolute/path/warehouse.db)")]
    parent = Path(url.database).expanduser().resolve().parent
    if not parent.is_dir():
        return [Problem(settings.DB_URL, f"folder {parent} does not exist: create it, or fix the path "
                                         "(sqlite:////absolute/path needs four slashes)")]
    if not os.access(parent, os.W_OK):
        return [Problem(settings.DB_URL, f"folder {parent} is not writable by this user")]
    return []


def check_database_reachable(url: URL, variable: str = settings.DB_URL) -> list[Problem]:
    """Open one connection with the URL's own driver and run SELECT 1."""
    from sqlalchemy import create_engine, text

    args: dict[str, object] = {}
    backend = url.get_backend_name()
    if backend == "postgresql":
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif backend == "mssql":
        args["timeout"] = CONNECT_TIMEOUT_S
    engine = create_engine(url, connect_args=args, poolclass=_null_pool())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - every driver error means "cannot use it"
        secrets = (url.password,) if isinstance(url.password, str) else ()
        return [Problem(variable, f"cannot connect to {redact_url(url.render_as_string(False))}: "
                                  f"{_first_line(exc, secrets)}")]
    finally:
        engine.dispose()
    return []


def _null_pool():
    from sqlalchemy.pool import NullPool

    return NullPool


def odbc_import_fix(exc: ImportError) -> str:
    """Why pyodbc did not import, and the fix: the Python package, or the system's unixODBC."""
    if "libodbc" in str(exc):
        return (f"pyodbc is installed but cannot load the ODBC driver manager ({exc}): install "
                "unixODBC (Debian/Ubuntu: apt-get install unixodbc) and Microsoft's ODBC Driver 18 "
                "(msodbcsql18); see docs/configuration.md")
    return f"{DRIVER_FIXES['pyodbc']} ({exc})"


def check_sqlserver_driver() -> list[Problem]:
    """SQL Server settings without a URL: the named ODBC driver must be installed."""
    if settings.value(settings.DB_URL) or not (settings.value(settings.MSSQL_HOST)
                                               or settings.value(settings.AZURE_SQL_SERVER)):
        return []
    wanted = settings.value(settings.MSSQL_DRIVER, "ODBC Driver 18 for SQL Server")
    variable = settings.MSSQL_HOST if settings.value(settings.MSSQL_HOST) else settings.AZURE_SQL_SERVER
    try:
        import pyodbc
    except ImportError as exc:
        return [Problem(variable, odbc_import_fix(exc))]
    if wanted not in pyodbc.drivers():
        found = ", ".join(pyodbc.drivers()) or "none"
        return [Problem(settings.MSSQL_DRIVER, f"ODBC driver {wanted!r} is not installed (found: {found})")]
    return []


def check_database(connect: bool = True) -> list[Problem]:
    raw = settings.value(settings.DB_URL)
    if not raw:
        return check_sqlserver_driver()  # else the embedded SQLite file under the data dir
    url, problems = parse_db_url(raw)
    if problems or url is None or not connect:
        return problems
    return check_database_reachable(url)


# --- blob, API, webhook ----------------------------------------------------------------------------

def _http_url_problem(variable: str, raw: str) -> Problem | None:
    """The platform's one URL policy (core/urls.py): https, or http to this machine only."""
    from sales_platform.core.urls import problem

    why = problem(raw, variable)
    return Problem(variable, why) if why else None


def check_api(connect: bool = True, get: Callable[..., object] | None = None) -> list[Problem]:
    raw = settings.value(settings.API_URL)
    if not raw:
        return []
    problem = _http_url_problem(settings.API_URL, raw)
    bundle = settings.value(settings.API_CA_BUNDLE)
    if not problem and bundle and not Path(bundle).expanduser().is_file():
        problem = Problem(settings.API_CA_BUNDLE, f"{bundle} does not exist or is not a file (a PEM "
                                                  "file of the CA that signs the API's certificate)")
    if problem or not connect:
        return [problem] if problem else []
    import requests

    try:
        reply = (get or requests.get)(raw.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S,
                                      verify=bundle or True)
    except requests.RequestException as exc:
        return [Problem(settings.API_URL, f"products API not reachable at {redact_text(raw)}: "
                                          f"{_first_line(exc)}")]
    status = getattr(reply, "status_code", 200)
    if status >= 400:
        return [Problem(settings.API_URL, f"{redact_text(raw)}/health answered HTTP {status}: "
                                          "is this the products API?")]
    return []


def check_webhook() -> list[Problem]:
    raw = settings.value(settings.ALERT_WEBHOOK)
    problem = _http_url_problem(settings.ALERT_WEBHOOK, raw) if raw else None
    return [problem] if problem else []


def check_openlineage() -> list[Problem]:
    raw = settings.value(settings.OPENLINEAGE_URL)
    problem = _http_url_problem(settings.OPENLINEAGE_URL, raw) if raw else None
    return [problem] if problem else []


def check_blob_endpoints() -> list[Problem]:
    """The Azure endpoints under the same URL policy (Azurite on this machine may be http)."""
    from sales_platform.core.urls import connection_string_endpoint

    if not settings.value(settings.BLOB_CONTAINER):
        return []
    found = []
    connection = settings.value(settings.BLOB_CONNECTION_STRING)
    if connection:
        problem = _http_url_problem(settings.BLOB_CONNECTION_STRING,
                                    connection_string_endpoint(connection))
        if problem:
            found.append(Problem(problem.variable, f"its blob endpoint {problem.message}"))
    account_url = settings.value(settings.BLOB_ACCOUNT_URL)
    problem = _http_url_problem(settings.BLOB_ACCOUNT_URL, account_url) if account_url else None
    return found + ([problem] if problem else [])


def check_blob(connect: bool = True) -> list[Problem]:
    container = settings.value(settings.BLOB_CONTAINER)
    if not container:
        return []
    var = settings.BLOB_CONTAINER
    connection = settings.value(settings.BLOB_CONNECTION_STRING)
    account_url = settings.value(settings.BLOB_ACCOUNT_URL)
    if not connection and not account_url:
        return [Problem(var, f"set {settings.BLOB_CONNECTION_STRING} or {settings.BLOB_ACCOUNT_URL} "
                             "to say where the container is")]
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        return [Problem(var, "the Azure SDK is not installed: pip install 'sales_platform[azure]'")]
    if not connect:
        return []
    secrets = tuple(v for v in (connection, settings.value(settings.BLOB_ACCOUNT_KEY),
                                settings.value(settings.BLOB_SAS_TOKEN)) if v)
    try:
        service = (BlobServiceClient.from_connection_string(connection, connection_timeout=CONNECT_TIMEOUT_S,
                                                            retry_total=0)
                   if connection else None)
        if service is not None:
            client = service.get_container_client(container)
            client.exists()
    except Exception as exc:  # noqa: BLE001 - SDK errors vary; all mean "cannot use it"
        return [Problem(var, f"container {container!r} not reachable: {_first_line(exc, secrets)}")]
    return []


# --- all together ----------------------------------------------------------------------------------

CHECKS: tuple[Callable[..., list[Problem]], ...] = (
    check_numbers, check_stored_limits, check_timezone, check_start_date, check_data_dir,
    check_schema_settings, check_category_bins, check_executor, check_keys, check_webhook, check_openlineage,
    check_blob_endpoints)
CONNECTING_CHECKS: tuple[Callable[..., list[Problem]], ...] = (check_database, check_api, check_blob)


def problems(connect: bool = True) -> list[Problem]:
    """Every configuration problem, one per line; ``connect=False`` skips network round trips."""
    found: list[Problem] = []
    for check in CHECKS:
        found.extend(check())
    for check in CONNECTING_CHECKS:
        found.extend(check(connect=connect))
    return found


def database_warnings() -> list[Problem]:
    raw = settings.value(settings.DB_URL)
    url = parse_db_url(raw)[0] if raw else None
    if url is not None and url.get_backend_name() == "postgresql" and pg_tls(url) == "unverified":
        return [Problem(settings.DB_URL, f"sslmode={url.query.get('sslmode')} encrypts but does not "
                                         f"check that {_pg_host(url)} is the server: use "
                                         "sslmode=verify-full")]
    return []


WARNINGS: tuple[Callable[[], list[Problem]], ...] = (demo_warnings, database_warnings)


def warnings() -> list[Problem]:
    """Settings that work but protect less than they should (printed by check, run and demo)."""
    found: list[Problem] = []
    for check in WARNINGS:
        found.extend(check())
    return found


def require_valid(connect: bool = True) -> None:
    """Raise ConfigurationError listing every problem (nothing should be written before this)."""
    found = problems(connect)
    if found:
        raise ConfigurationError(found)


def _key_source() -> str:
    if settings.value(settings.ENCRYPTION_KEY):
        return "set"
    if settings.value(settings.ENCRYPTION_KEY_FILE):
        return f"from {settings.value(settings.ENCRYPTION_KEY_FILE)}"
    return f"demo key {settings.data_dir() / settings.DEMO_KEY_FILE}"


def summary() -> list[str]:
    """What is configured, secrets redacted (printed by `sales-platform check` when all is well)."""
    db = settings.value(settings.DB_URL)
    return [
        f"data dir: {settings.data_dir()}",
        f"warehouse: {redact_url(db) if db else settings.warehouse_kind() + ' (embedded default)'}",
        f"key: {_key_source()}",
        f"blob: {settings.value(settings.BLOB_CONTAINER, 'local folder')}",
        f"products API: {redact_text(settings.value(settings.API_URL)) or 'in-process'}",
    ]
