"""The products API: a small Flask service that stores products and yearly sales in SQLite.

Kept free of Dagster so it can run on its own (`sales-platform api`) or in-process in tests.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-API-Token"
MAX_PRODUCT_ID_LENGTH = 64
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_SQLITE_INT = 2**63 - 1
MAX_ERROR_DETAILS = 100  # enough to fix a payload; bounds the size of an error response

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS products (
        product_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        category TEXT NOT NULL,
        unit_price REAL NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sales_by_year (
        year INTEGER PRIMARY KEY,
        transactions INTEGER NOT NULL,
        total_quantity INTEGER NOT NULL,
        total_revenue REAL NOT NULL)""",
)
PRODUCT_FIELDS = ("product_id", "name", "category", "unit_price", "updated_at")
SALES_FIELDS = ("year", "transactions", "total_quantity", "total_revenue")

Problem = dict[str, Any]
Checker = Callable[[Any], str | None]


class ApiError(Exception):
    """A request the API refuses: becomes a JSON error response."""

    def __init__(self, status: int, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


# --- storage -------------------------------------------------------------------------------------

class Store:
    """The SQLite file. One connection per request, so the threaded server never shares one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            # WAL lets readers page through products while a bulk write is in progress.
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.execute(statement)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")  # a 200 means the data survives a power cut
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all; reads see one snapshot."""
        with self.connect() as conn:
            # IMMEDIATE takes the write lock up front: two bulk writers never deadlock mid-way.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def count_products(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]


def upsert_products(conn: sqlite3.Connection, products: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for product in products:
        row = conn.execute("SELECT * FROM products WHERE product_id = ?",
                           (product["product_id"],)).fetchone()
        if row is None:
            counts["inserted"] += 1
        elif dict(row) == product:
            counts["unchanged"] += 1
            continue
        else:
            counts["updated"] += 1
        conn.execute("INSERT OR REPLACE INTO products VALUES (?, ?, ?, ?, ?)",
                     tuple(product[f] for f in PRODUCT_FIELDS))
    return counts


def replace_sales_by_year(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    conn.executemany("INSERT OR REPLACE INTO sales_by_year VALUES (?, ?, ?, ?)",
                     [tuple(row[f] for f in SALES_FIELDS) for row in rows])


# --- validation ----------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    # bool is an int subclass: True must not pass as a price of 1.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_int(value: Any) -> bool:
    # SQLite stores 64-bit integers; a larger one would fail at insert time, after validation.
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SQLITE_INT


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return None if value.strip() else "must not be empty"


def _product_id(value: Any) -> str | None:
    if problem := _text(value):
        return problem
    if len(value) > MAX_PRODUCT_ID_LENGTH:
        return f"must be at most {MAX_PRODUCT_ID_LENGTH} characters"
    return "must not start or end with whitespace" if value != value.strip() else None


def _price(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "must be a number greater than 0"


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be an ISO-8601 string"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return "must be an ISO-8601 date-time, e.g. 2024-01-31T12:00:00"
    return None


def _count(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "must be an integer >= 0"


def _year(value: Any) -> str | None:
    return None if _is_int(value) and 1 <= value <= 9999 else "must be an integer year (1-9999)"


def _amount(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "must be a number >= 0"


PRODUCT_CHECKS: dict[str, Checker] = {
    "product_id": _product_id, "name": _text, "category": _text,
    "unit_price": _price, "updated_at": _timestamp,
}
SALES_CHECKS: dict[str, Checker] = {
    "year": _year, "transactions": _count, "total_quantity": _count, "total_revenue": _amount,
}


def validate_items(items: Any, checks: dict[str, Checker], key: str) -> list[Problem]:
    """Every problem in every item (not just the first), so a caller can fix a payload in one go."""
    if not isinstance(items, list):
        return [{"index": None, "field": None, "problem": "body must be a JSON list"}]
    problems: list[Problem] = []
    first_seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": index, "field": None, "problem": "must be a JSON object"})
            continue
        for field, check in checks.items():
            problem = "is required" if field not in item else check(item[field])
            if problem:
                problems.append({"index": index, "field": field, "problem": problem})
        # Unknown fields are refused rather than dropped: a typo must not silently lose data.
        for field in sorted(set(item) - set(checks)):
            problems.append({"index": index, "field": field, "problem": "unknown field"})
        value = item.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            if value in first_seen:
                problems.append({"index": index, "field": key,
                                 "problem": f"duplicate of index {first_seen[value]}"})
            else:
                first_seen[value] = index
    return problems


def normalize_product(item: dict[str, Any]) -> dict[str, Any]:
    """The stored form: one spelling per timestamp, so re-sending the same product is 'unchanged'."""
    return {
        "product_id": item["product_id"], "name": item["name"], "category": item["category"],
        "unit_price": float(item["unit_price"]),
        "updated_at": datetime.fromisoformat(item["updated_at"]).isoformat(),
    }


def normalize_sales(item: dict[str, Any]) -> dict[str, Any]:
    return {**{f: item[f] for f in SALES_FIELDS}, "total_revenue": float(item["total_revenue"])}


# --- request helpers -----------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_list(checks: dict[str, Checker], key: str) -> list[dict[str, Any]]:
    """The request body as a validated list, or an ApiError (nothing has been stored yet)."""
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        # NaN/Infinity are Python extensions to JSON; refuse them like any malformed body.
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, list):
        raise ApiError(400, f"body must be a JSON list, got {type(body).__name__}")
    problems = validate_items(body, checks, key)
    if problems:
        shown = problems[:MAX_ERROR_DETAILS]
        more = f" (first {len(shown)} shown)" if len(problems) > len(shown) else ""
        raise ApiError(400, f"{len(problems)} validation problem(s); nothing was stored{more}", shown)
    return body


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(400, f"query parameter {name} must be an integer {bound}",
                       [{"index": None, "field": name, "problem": f"must be an integer {bound}"}])
    return value


def _error(status: int, message: str, details: list[Problem] | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return jsonify(body), status


# --- the app -------------------------------------------------------------------------------------

def create_app(store_path: str | Path, token: str | None = None,
               max_payload_bytes: int = 5_000_000) -> Flask:
    """The API over the SQLite file at ``store_path``; writes need ``X-API-Token`` when ``token`` is set."""
    store = Store(store_path)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_payload_bytes
    app.json.sort_keys = False  # keep product fields in their documented order

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        return _error(exc.status, exc.message, exc.details)

    @app.errorhandler(413)
    def too_large(_exc: HTTPException) -> tuple[Response, int]:
        return _error(413, f"payload larger than the {max_payload_bytes} bytes allowed; send smaller batches")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("products API: unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal error (see the server log)")

    @app.before_request
    def require_token() -> None:
        if token is None or request.method in ("GET", "HEAD", "OPTIONS"):
            return
        given = request.headers.get(TOKEN_HEADER, "")
        # compare_digest: the time taken must not reveal how much of the token was right.
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, f"missing or wrong {TOKEN_HEADER} header")

    @app.get("/health")
    def health() -> Response:
        with store.transaction() as conn:
            return jsonify({"status": "ok", "products": count_products(conn)})

    @app.put("/products")
    def put_products() -> Response:
        products = [normalize_product(p) for p in read_json_list(PRODUCT_CHECKS, "product_id")]
        with store.transaction(write=True) as conn:
            counts = upsert_products(conn, products)
        return jsonify({"received": len(products), **counts})

    @app.get("/products")
    def list_products() -> Response:
        page = _int_arg("page", 1, 1, None)
        page_size = _int_arg("page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        with store.transaction() as conn:
            total = count_products(conn)
            rows = conn.execute("SELECT * FROM products ORDER BY product_id LIMIT ? OFFSET ?",
                                (page_size, (page - 1) * page_size)).fetchall()
        return jsonify({"items": [dict(r) for r in rows], "page": page, "page_size": page_size,
                        "total": total, "next_page": page + 1 if page * page_size < total else None})

    @app.get("/products/<product_id>")
    def get_product(product_id: str) -> Response:
        with store.transaction() as conn:
            row = conn.execute("SELECT * FROM products WHERE product_id = ?", (product_id,)).fetchone()
        if row is None:
            raise ApiError(404, f"product {product_id[:MAX_PRODUCT_ID_LENGTH]!r} not found")
        return jsonify(dict(row))

    @app.post("/aggregates/sales-by-year")
    def post_sales_by_year() -> Response:
        rows = [normalize_sales(r) for r in read_json_list(SALES_CHECKS, "year")]
        with store.transaction(write=True) as conn:
            replace_sales_by_year(conn, rows)
        return jsonify({"received": len(rows)})

    @app.get("/aggregates/sales-by-year")
    def get_sales_by_year() -> Response:
        with store.transaction() as conn:
            rows = conn.execute("SELECT * FROM sales_by_year ORDER BY year").fetchall()
        return jsonify([dict(r) for r in rows])

    return app


def serve(host: str, port: int, store_path: str | Path, token: str | None) -> None:
    """Run the API (threaded) until interrupted with Ctrl-C."""
    app = create_app(store_path, token)
    server = make_server(host, port, app, threaded=True)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("products API listens on %s without a token: anyone who reaches it can write", host)
    log.info("products API on http://%s:%s (store %s, writes %s)", host, server.port, store_path,
             "need a token" if token else "open")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
