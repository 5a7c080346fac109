"""One policy for every URL the platform sends data to (products API, webhook, OpenLineage, Azure).

A URL is taken only if the HTTP library reads it the way this check does: it is parsed with
urllib3's parser (what requests and the Azure SDK's transport use) and with the standard library's,
and refused when they disagree on scheme, host or port (``http://a:1\\@b:2`` is ``a`` to urllib3 and
``b`` to ``urlsplit``). Then plain HTTP is allowed only to this machine (loopback); everything else
must be HTTPS. Credentials in the URL, whitespace, control characters and backslashes are refused:
nothing needs them and each is a way to make two parsers disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from sales_platform.core.redact import redact_text

SCHEMES = ("http", "https")
LOOPBACK_NAMES = frozenset({"localhost"})


class UrlPolicyError(ValueError):
    """A URL the platform will not send to; the message names the setting and the fix."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # as given, stripped
    scheme: str  # lower case
    host: str  # lower case, IPv6 without brackets
    port: int | None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (literal addresses only: nothing a resolver could redirect)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(setting: str, raw: str, why: str) -> UrlPolicyError:
    return UrlPolicyError(f"{setting}: {redact_text(raw)!r} {why}")


def parse(raw: str, setting: str) -> Endpoint:
    """The endpoint ``raw`` names, if urllib3 and the standard library agree on it."""
    url = raw.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise _refuse(setting, raw, "holds whitespace, a control character or a backslash; write "
                                    "the URL plainly, e.g. https://host.example:443/path")
    try:
        ours = parse_url(url)
        theirs = urlsplit(url)
        their_port = theirs.port
    except (LocationParseError, ValueError) as exc:
        raise _refuse(setting, raw, f"is not a URL ({exc})") from None
    scheme = (ours.scheme or "").lower()
    if scheme not in SCHEMES:
        raise _refuse(setting, raw, "is not an http(s) URL: it must be https://host.example/…")
    if ours.auth is not None or "@" in (theirs.netloc or ""):
        raise _refuse(setting, raw, "has credentials in it (user@ or user:password@); remove them "
                                    "and use the setting meant for the secret")
    host = (ours.host or "").strip("[]").lower()
    if not host:
        raise _refuse(setting, raw, "names no host; write https://host.example/…")
    if (theirs.scheme.lower(), (theirs.hostname or "").lower(), their_port) != (scheme, host, ours.port):
        raise _refuse(setting, raw, "is read differently by the HTTP library and by the standard "
                                    "library; write it without tricks, e.g. https://host.example/…")
    return Endpoint(url=url, scheme=scheme, host=host, port=ours.port)


def require_secure(raw: str, setting: str) -> Endpoint:
    """The endpoint, if it is HTTPS, or plain HTTP to this machine (tests, a local emulator)."""
    endpoint = parse(raw, setting)
    if endpoint.scheme == "http" and not endpoint.loopback:
        raise UrlPolicyError(f"{setting}: must be https:// (plain http:// only to localhost, "
                             f"127.0.0.0/8 or [::1]): http:// to {endpoint.host} would send data "
                             "and credentials in clear")
    return endpoint


def connection_string_endpoint(connection_string: str) -> str:
    """The blob endpoint an Azure storage connection string points at (BlobEndpoint, else its
    protocol). Keys are matched in any case, as the Azure SDK reads them."""
    parts = {k.strip().lower(): v.strip() for k, v in
             (p.split("=", 1) for p in connection_string.split(";") if "=" in p)}
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return "http://127.0.0.1:10000"
    if parts.get("blobendpoint"):
        return parts["blobendpoint"]
    protocol = parts.get("defaultendpointsprotocol", "https")
    suffix = parts.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{parts.get('accountname', 'account')}.blob.{suffix}"


def problem(raw: str, setting: str) -> str | None:
    """Why ``raw`` is refused (the message without the setting's name), or None."""
    try:
        require_secure(raw, setting)
    except UrlPolicyError as exc:
        return str(exc).removeprefix(f"{setting}: ")
    return None
