"""Keep secrets out of anything displayed: URLs, connection strings, error messages."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

_CONN_SECRET = re.compile(
    r"(?i)\b(pwd|password|accountkey|sharedaccesssignature|sig|token)=(\{(?:[^}]|\}\})*\}|[^;&\s]+)")
_URL_PASSWORD = re.compile(r"(?i)(\w[\w+.-]*://[^:/@\s]+:)([^@\s]+)(@)")


def redact_url(url: str) -> str:
    """A SQLAlchemy URL with its password replaced by ***."""
    try:
        parsed = make_url(url)
        odbc = parsed.query.get("odbc_connect")
        if isinstance(odbc, str):  # an ODBC string carries its own PWD
            from sales_platform.core.warehouse.mssql import redact_odbc

            parsed = parsed.update_query_dict({"odbc_connect": redact_odbc(odbc)})
        return parsed.render_as_string(hide_password=True)
    except Exception:
        return redact_text(url)


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove passwords in URLs and key=value connection strings, and any known secret value."""
    out = _URL_PASSWORD.sub(r"\1***\3", text)
    out = _CONN_SECRET.sub(lambda m: f"{m.group(1)}=***", out)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out
