"""The products API client: over HTTP, or in-process when no base URL is configured."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from sales_platform.api.schemas import TOKEN_HEADER
from sales_platform.core import settings
from sales_platform.core.redact import redact_text
from sales_platform.core.urls import UrlPolicyError, require_secure

if TYPE_CHECKING:
    from flask import Flask

JSON_TYPE = "application/json"
PUT_COUNTS = ("received", "inserted", "updated", "unchanged")


class ProductsApiError(RuntimeError):
    pass


def require_https(base_url: str) -> str:
    """The URL, if it is https:// (or http:// to this machine), read as requests reads it: the
    token and the catalogue's plaintext product ids must not cross a network in clear."""
    try:
        return require_secure(base_url, f"products API URL ({settings.API_URL})").url
    except UrlPolicyError as exc:
        raise ProductsApiError(str(exc)) from None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


@dataclass(frozen=True)
class CatalogueFetch:
    """A conditional read of the catalogue: ``items`` is None when the API answered 304."""

    etag: str | None
    items: list[dict[str, Any]] | None
    status: int  # 200, or 304 when the catalogue is the one tagged ``If-None-Match``

    @property
    def changed(self) -> bool:
        return self.items is not None


def _json_default(value: Any) -> Any:
    # Catalogue frames carry Decimal prices and datetime stamps; the API takes numbers and ISO text.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, default=_json_default, allow_nan=False).encode()


class _Transport(ABC):
    """Sends one request and returns the raw reply; the resource interprets it."""

    @abstractmethod
    def send(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: bytes | None = None, headers: dict[str, str] | None = None) -> _Reply: ...

    def close(self) -> None:
        return None

    def __enter__(self) -> _Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HttpTransport(_Transport):
    """requests with timeouts, and retries with exponential backoff on connection errors and 5xx.

    Retrying writes is safe: PUT /products and POST /aggregates/sales-by-year are idempotent.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float, max_retries: int,
                 backoff_s: float, ca_bundle: str | None = None) -> None:
        self.base_url = require_https(base_url).rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        import requests  # here, not at import: the sales chain's steps never call the API

        self.session = requests.Session()
        self.session.headers.update(headers)
        # The server certificate is always verified: against this CA bundle when given, else the
        # system store (or REQUESTS_CA_BUNDLE). There is no switch to turn verification off.
        # Passed per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
        self.verify: str | bool = ca_bundle or True

    def send(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: bytes | None = None, headers: dict[str, str] | None = None) -> _Reply:
        import requests

        headers = {**({"Content-Type": JSON_TYPE} if body is not None else {}), **(headers or {})}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                # No redirects: requests would forward the token header to whatever host it is sent to.
                response = self.session.request(method, self.base_url + path, params=params, data=body,
                                                headers=headers, timeout=self.timeout_s,
                                                allow_redirects=False, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                # a certificate that does not verify will not verify on a retry either
                raise ProductsApiError(f"{method} {path}: TLS verification failed: {exc}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise ProductsApiError(f"{method} {path}: no response after {attempt + 1} attempt(s): "
                                           f"{type(exc).__name__}: {exc}") from None
            else:
                if response.status_code < 500 or last:
                    return _Reply(response.status_code, response.content,
                                  {k.lower(): v for k, v in response.headers.items()})
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self.session.close()


class _InProcessTransport(_Transport):
    """The same Flask app through its test client: no server, no network, no retries needed."""

    def __init__(self, app: Flask, headers: dict[str, str]) -> None:
        self.client = app.test_client()
        self.headers = headers

    def send(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: bytes | None = None, headers: dict[str, str] | None = None) -> _Reply:
        content_type = JSON_TYPE if body is not None else None
        response = self.client.open(path, method=method, query_string=params, data=body,
                                    headers={**self.headers, **(headers or {})},
                                    content_type=content_type)
        return _Reply(response.status_code, response.get_data(),
                      {k.lower(): v for k, v in response.headers.items()})


class ProductsApiResource(dg.ConfigurableResource):
    """The products API. Without ``base_url`` it serves the API in-process over ``store_path``."""

    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8000; None = in-process.")
    store_path: str | None = Field(default=None, description="SQLite store for the in-process mode.")
    token: str | None = Field(default=None, description="Sent as X-API-Token on every request.")
    ca_bundle: str | None = Field(default=None, description="PEM file of the CA(s) that sign the "
                                  "API's certificate; None = the system store (or REQUESTS_CA_BUNDLE).")
    timeout_s: float = 10
    max_retries: int = Field(default=3, description="Retries after the first attempt (HTTP mode).")
    backoff_s: float = Field(default=0.5, description="First retry delay; doubles at each retry.")

    def health(self) -> dict[str, Any]:
        return self._expect_dict(self._call("GET", "/health"), "GET", "/health", ("status", "products"))

    def put_products(self, products: list[dict[str, Any]]) -> dict[str, Any]:
        reply = self._call("PUT", "/products", body=products)
        counts = self._expect_dict(reply, "PUT", "/products", PUT_COUNTS)
        if counts["received"] != len(products):
            raise ProductsApiError(f"PUT /products: sent {len(products)} product(s), "
                                   f"the API received {counts['received']}")
        return counts

    def iter_products(self, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every product, ordered by product_id, one page at a time."""
        with self._transport() as transport:
            page: int | None = 1
            while page is not None:
                params = {"page": page, "page_size": page_size}
                reply = self._send(transport, "GET", "/products", params=params)
                body = self._expect_dict(reply, "GET", "/products", ("items", "next_page"))
                if not isinstance(body["items"], list) or body["next_page"] not in (None, page + 1):
                    raise ProductsApiError(f"GET /products: unexpected page shape on page {page}")
                yield from body["items"]
                page = body["next_page"]

    def fetch_products(self, etag: str | None = None, page_size: int = 500,
                       attempts: int = 3) -> CatalogueFetch:
        """The whole catalogue, unless it is still the one tagged ``etag`` (then a 304, no items).

        Every page must carry page one's tag; a different tag means the catalogue changed while
        being read, and the read starts over (at most ``attempts`` times) instead of mixing two.
        """
        with self._transport() as transport:
            for _ in range(attempts):
                fetched = self._read_catalogue(transport, etag, page_size)
                if fetched is not None:
                    return fetched
        raise ProductsApiError(f"GET /products: the catalogue changed during each of {attempts} reads")

    def _read_catalogue(self, transport: _Transport, etag: str | None,
                        page_size: int) -> CatalogueFetch | None:
        items: list[dict[str, Any]] = []
        first_tag: str | None = None
        page: int | None = 1
        while page is not None:
            conditional = {"If-None-Match": etag} if etag and page == 1 else None
            reply = self._exchange(transport, "GET", "/products",
                                   {"page": page, "page_size": page_size}, headers=conditional)
            tag = reply.headers.get("etag")
            if reply.status == 304:
                return CatalogueFetch(tag or etag, None, 304)
            body = self._expect_dict(self._checked(reply, "GET", "/products"), "GET", "/products",
                                     ("items", "next_page"))
            if not isinstance(body["items"], list) or body["next_page"] not in (None, page + 1):
                raise ProductsApiError(f"GET /products: unexpected page shape on page {page}")
            if page == 1:
                first_tag = tag
            elif tag != first_tag:
                return None  # changed mid-read
            items.extend(body["items"])
            page = body["next_page"]
        return CatalogueFetch(first_tag, items, 200)

    def post_sales_by_year(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        path = "/aggregates/sales-by-year"
        body = self._expect_dict(self._call("POST", path, body=rows), "POST", path, ("received",))
        if body["received"] != len(rows):
            raise ProductsApiError(f"POST {path}: sent {len(rows)} row(s), "
                                   f"the API received {body['received']}")
        return body

    def get_sales_by_year(self) -> list[dict[str, Any]]:
        path = "/aggregates/sales-by-year"
        rows = self._call("GET", path)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProductsApiError(f"GET {path}: expected a JSON list of objects")
        return rows

    # --- transport and response checks (shared by both modes) ------------------------------------

    @property
    def mode(self) -> str:
        return "http" if self.base_url else "in-process"

    def _transport(self) -> _Transport:
        headers = {TOKEN_HEADER: self.token} if self.token else {}
        if self.base_url:
            return _HttpTransport(self.base_url, headers, self.timeout_s, self.max_retries,
                                  self.backoff_s, self.ca_bundle)
        if not self.store_path:
            raise ProductsApiError("ProductsApiResource: set base_url, or store_path for the in-process mode")
        # Flask is imported only here: a client of a real API never loads the server's code
        from sales_platform.api.products import create_app

        return _InProcessTransport(create_app(self.store_path, self.token), headers)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        with self._transport() as transport:
            return self._send(transport, method, path, params, body)

    def _send(self, transport: _Transport, method: str, path: str, params: dict[str, Any] | None = None,
              body: Any = None) -> Any:
        """The decoded JSON of a 2xx reply; anything else raises ProductsApiError (token redacted)."""
        reply = self._exchange(transport, method, path, params, body)
        return self._checked(reply, method, path)

    def _exchange(self, transport: _Transport, method: str, path: str,
                  params: dict[str, Any] | None = None, body: Any = None,
                  headers: dict[str, str] | None = None) -> _Reply:
        try:
            return transport.send(method, path, params, None if body is None else _encode(body), headers)
        except ProductsApiError as exc:
            raise ProductsApiError(redact_text(str(exc), self._secrets())) from None

    def _checked(self, reply: _Reply, method: str, path: str) -> Any:
        try:
            payload = self._decode(reply, method, path)
            if not 200 <= reply.status < 300:
                raise ProductsApiError(f"{method} {path} failed with HTTP {reply.status}: "
                                       f"{self._error_text(payload, reply)}")
            return payload
        except ProductsApiError as exc:
            raise ProductsApiError(redact_text(str(exc), self._secrets())) from None

    @staticmethod
    def _decode(reply: _Reply, method: str, path: str) -> Any:
        try:
            return json.loads(reply.body)
        except ValueError:
            if 200 <= reply.status < 300:
                raise ProductsApiError(f"{method} {path}: HTTP {reply.status} without a JSON body") from None
            return None

    @staticmethod
    def _error_text(payload: Any, reply: _Reply) -> str:
        if not isinstance(payload, dict) or "error" not in payload:
            return reply.body[:200].decode(errors="replace") or "(empty body)"
        details = payload.get("details") or []
        shown = "; ".join(f"item {d.get('index')} {d.get('field')}: {d.get('problem')}"
                          for d in details[:5] if isinstance(d, dict))
        more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
        return f"{payload['error']}" + (f" [{shown}{more}]" if shown else "")

    @staticmethod
    def _expect_dict(payload: Any, method: str, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(payload, dict) or any(k not in payload for k in keys):
            raise ProductsApiError(f"{method} {path}: expected a JSON object with {', '.join(keys)}")
        return payload

    def _secrets(self) -> tuple[str, ...]:
        return (self.token,) if self.token else ()
