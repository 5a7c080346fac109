"""SQL Server and Azure SQL: ODBC connection strings and Azure AD access tokens (no Dagster).

Connection strings are built here, never by string formatting at call sites, so every value is
quoted by the ODBC brace rules and encryption is on unless a caller explicitly turns it off.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from sqlalchemy import URL, Engine, create_engine, event

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: hand the driver an Azure AD token before login
AZURE_SQL_SCOPE = "https://database.windows.net/.default"
AZURE_SQL_PORT = 1433
# Keys that carry an identity: with an access token the driver refuses them, so they are removed.
CREDENTIAL_KEYS = frozenset({"uid", "user id", "user", "pwd", "password", "trusted_connection",
                             "integrated security", "authentication"})
_SECRET_KEYS = frozenset({"pwd", "password", "keystoresecret", "clientkey"})
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9 _]*")

TokenProvider = Callable[[], str]


def odbc_quote(value: str) -> str:
    """``value`` as an ODBC attribute value: braced, ``}`` doubled, when it would otherwise be misread."""
    if any(c in value for c in ";}{") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def format_odbc(pairs: list[tuple[str, str]]) -> str:
    """``key=value`` pairs joined by ``;`` (DRIVER always braced, as drivers expect)."""
    out = []
    for key, value in pairs:
        quoted = "{" + value.replace("}", "}}") + "}" if key.lower() == "driver" else odbc_quote(value)
        out.append(f"{key}={quoted}")
    return ";".join(out)


def parse_odbc(odbc: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of an ODBC connection string, braces and ``}}`` undone."""
    pairs, i, n = [], 0, len(odbc)
    while i < n:
        eq = odbc.find("=", i)
        if eq < 0:
            if odbc[i:].strip(" ;"):
                raise ValueError("malformed ODBC connection string: attribute without '='")
            break
        key = odbc[i:eq].strip(" ;")
        i = eq + 1
        if i < n and odbc[i] == "{":
            value, i = _braced(odbc, i)
            i = odbc.find(";", i) + 1 or n
        else:
            end = odbc.find(";", i)
            end = n if end < 0 else end
            value, i = odbc[i:end].strip(), end + 1
        pairs.append((key, value))
    return pairs


def _braced(odbc: str, start: int) -> tuple[str, int]:
    """The value of a ``{...}`` token starting at ``start`` and the index after its closing brace."""
    out, i = [], start + 1
    while i < len(odbc):
        if odbc[i] == "}":
            if odbc.startswith("}}", i):
                out.append("}")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(odbc[i])
        i += 1
    raise ValueError("malformed ODBC connection string: unterminated '{'")


def odbc_connection_string(
    host: str,
    port: int | None,
    database: str,
    driver: str,
    user: str | None = None,
    password: str | None = None,
    trusted_connection: bool = False,
    encrypt: bool = True,
    trust_server_certificate: bool = False,
    timeout_s: int = 30,
    extra: dict[str, str] | None = None,
) -> str:
    """A DSN-less ODBC string for the Microsoft (or FreeTDS) driver.

    With neither ``user`` nor ``trusted_connection`` the string carries no identity: the caller
    supplies one (an Azure AD access token, see :func:`install_access_token`).
    """
    if trusted_connection and (user or password):
        raise ValueError("trusted_connection uses the process identity: do not also set user/password")
    if password and not user:
        raise ValueError("a password needs a user")
    pairs = [("DRIVER", driver), ("SERVER", host if port is None else f"{host},{int(port)}"),
             ("DATABASE", database)]
    if user:
        pairs.append(("UID", user))
        if password:
            pairs.append(("PWD", password))
    if trusted_connection:
        pairs.append(("Trusted_Connection", "yes"))
    pairs += [("Encrypt", "yes" if encrypt else "no"),
              ("TrustServerCertificate", "yes" if trust_server_certificate else "no"),
              # ConnectTimeout is the driver's keyword (18.7+) for SQL_ATTR_LOGIN_TIMEOUT; older
              # drivers ignore it, as they ignore the ADO.NET spelling "Connection Timeout".
              ("ConnectTimeout", str(int(timeout_s)))]
    return format_odbc(pairs + _extra_pairs(extra or {}, {k.lower() for k, _ in pairs}))


def _extra_pairs(extra: dict[str, str], taken: set[str]) -> list[tuple[str, str]]:
    # Extras may add options (ApplicationIntent, MultiSubnetFailover...), never override security
    # or identity: a duplicate key's winner is driver-specific, so duplicates are refused.
    out = []
    for key, value in extra.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid ODBC keyword {key!r}")
        if key.lower() in taken | CREDENTIAL_KEYS | {"encrypt", "trustservercertificate"}:
            raise ValueError(f"ODBC keyword {key!r} cannot be set through extra")
        out.append((key, str(value)))
    return out


def sqlalchemy_url_from_odbc(odbc: str) -> URL:
    """``mssql+pyodbc:///?odbc_connect=...``: SQLAlchemy hands the string to pyodbc unchanged."""
    return URL.create("mssql+pyodbc", query={"odbc_connect": odbc})


def strip_credentials(odbc: str) -> str:
    """``odbc`` without UID/PWD/Trusted_Connection/Authentication (token mode forbids them)."""
    return format_odbc([(k, v) for k, v in parse_odbc(odbc) if k.strip().lower() not in CREDENTIAL_KEYS])


def redact_odbc(odbc: str) -> str:
    """``odbc`` with secret values replaced by ``***`` (brace-quoted values handled whole)."""
    return format_odbc([(k, "***" if k.strip().lower() in _SECRET_KEYS else v)
                        for k, v in parse_odbc(odbc)])


def azure_ad_token_struct(token: str) -> bytes:
    """The ODBC ACCESSTOKEN struct: 4-byte little-endian length, then the UTF-16-LE token."""
    encoded = token.encode("utf-16-le")
    return struct.pack("<I", len(encoded)) + encoded


def install_access_token(engine: Engine, token_provider: TokenProvider) -> None:
    """Log every new pooled connection in with a fresh Azure AD token (they expire after ~1 h)."""

    @event.listens_for(engine, "do_connect")
    def _with_token(_dialect, _record, cargs, cparams) -> None:
        if cargs and isinstance(cargs[0], str):
            cargs[0] = strip_credentials(cargs[0])
        attrs = dict(cparams.get("attrs_before") or {})
        attrs[SQL_COPT_SS_ACCESS_TOKEN] = azure_ad_token_struct(token_provider())
        cparams["attrs_before"] = attrs


def azure_token_provider(managed_identity_client_id: str | None = None) -> TokenProvider:
    """Tokens for Azure SQL from a managed identity (by client id) or DefaultAzureCredential.

    The credential is built once and reused: it caches tokens and refreshes them before expiry.
    """
    import azure.identity  # optional dependency: only Azure AD deployments need it

    credential = (azure.identity.ManagedIdentityCredential(client_id=managed_identity_client_id)
                  if managed_identity_client_id else azure.identity.DefaultAzureCredential())
    return lambda: credential.get_token(AZURE_SQL_SCOPE).token


def make_token_engine(url: URL, token_provider: TokenProvider, migrate: bool = True) -> Engine:
    """An engine whose connections log in with Azure AD tokens (``migrate`` as in make_engine)."""
    from sales_platform.core.warehouse import migrations

    engine = create_engine(url, pool_pre_ping=True)
    install_access_token(engine, token_provider)  # before the first connection, which migrate opens
    if migrate:
        migrations.migrate(engine)
    return engine


def cached_token_engine(url: URL, identity: str, provider_factory: Callable[[], TokenProvider],
                        migrate: bool = True) -> Engine:
    """One token engine per URL, identity and process, kept in the one engine cache."""
    from sales_platform.core.warehouse.engine import cached_engine

    return cached_engine(url, migrate=migrate, identity=identity,
                         build=lambda: make_token_engine(url, provider_factory(), migrate=False))
