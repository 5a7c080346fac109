"""The products API: a small Flask service that stores products and yearly sales in SQLite.

Kept free of Dagster so it can run on its own (`sales-platform api`, gunicorn, HTTPS with a
certificate) or in-process in tests. The store is the products catalogue's system of record and
holds plaintext product ids (the warehouse holds only their tokens). Every upload that changes
the catalogue is a version that can be rolled back (``GET /products/versions``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sales_platform.api.schemas import (
    MAX_PROBLEMS,
    MAX_PRODUCT_ID_LENGTH,
    TOKEN_HEADER,
    id_key,
    parse_products,
    parse_sales_years,
)
from sales_platform.core import settings
from sales_platform.uploads.api import uploads_blueprint

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE = 10_000_000  # (page - 1) x page_size stays far inside SQLite's 64-bit OFFSET
MAX_QUERY_INT_DIGITS = 12
MAX_ERROR_DETAILS = 100  # enough to fix a payload; bounds the size of an error response
OPEN_PATHS = frozenset({"/health"})  # the only path answered without the token (reveals a count)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS products (
        product_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        category TEXT NOT NULL,
        unit_price REAL NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalogue_versions (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        received INTEGER NOT NULL,
        inserted INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        status TEXT NOT NULL,
        rolled_back_at TEXT)""",
    # The state of each product a version changed, before it (NULL: the version created it).
    """CREATE TABLE IF NOT EXISTS catalogue_changes (
        version INTEGER NOT NULL,
        product_id TEXT NOT NULL,
        before TEXT,
        PRIMARY KEY (version, product_id))""",
    """CREATE TABLE IF NOT EXISTS sales_by_year (
        year INTEGER PRIMARY KEY,
        transactions INTEGER NOT NULL,
        total_quantity INTEGER NOT NULL,
        total_revenue REAL NOT NULL)""",
)
PRODUCT_FIELDS = ("product_id", "name", "category", "unit_price", "updated_at")
SALES_FIELDS = ("year", "transactions", "total_quantity", "total_revenue")

Problem = dict[str, Any]
ACTIVE, ROLLED_BACK = "active", "rolled_back"


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
            _add_id_keys(conn)

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


def _add_id_keys(conn: sqlite3.Connection) -> None:
    """products.id_key (the id as the warehouse folds it), filled in for stores made before it."""
    columns = {r["name"] for r in conn.execute("PRAGMA table_info(products)")}
    if "id_key" not in columns:
        conn.execute("ALTER TABLE products ADD COLUMN id_key TEXT")
    rows = conn.execute("SELECT product_id FROM products WHERE id_key IS NULL").fetchall()
    conn.executemany("UPDATE products SET id_key = ? WHERE product_id = ?",
                     [(id_key(r["product_id"]), r["product_id"]) for r in rows])
    conn.execute("CREATE INDEX IF NOT EXISTS ix_products_id_key ON products (id_key)")


_PRODUCT_COLUMNS = ", ".join(PRODUCT_FIELDS)


def count_products(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]


def _stored(conn: sqlite3.Connection, product_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE product_id = ?",
                       (product_id,)).fetchone()
    return dict(row) if row else None


def case_conflicts(conn: sqlite3.Connection, products: list[dict[str, Any]]) -> list[Problem]:
    """Items whose id differs only in case (or spacing) from another stored product's id.

    The warehouse folds ids to upper case: two such products would be one product there.
    """
    problems = []
    for index, product in enumerate(products):
        other = conn.execute("SELECT 1 FROM products WHERE id_key = ? AND product_id <> ?",
                             (id_key(product["product_id"]), product["product_id"])).fetchone()
        if other:
            problems.append({"index": index, "field": "product_id",
                             "problem": "differs only in case or spacing from a stored product's id"})
    return problems


def _write(conn: sqlite3.Connection, product: dict[str, Any]) -> None:
    conn.execute("INSERT OR REPLACE INTO products (product_id, name, category, unit_price, "
                 "updated_at, id_key) VALUES (?, ?, ?, ?, ?, ?)",
                 (*(product[f] for f in PRODUCT_FIELDS), id_key(product["product_id"])))


def upsert_products(conn: sqlite3.Connection, products: list[dict[str, Any]],
                    now: str | None = None) -> dict[str, int]:
    """Insert or update products; a write that changes anything becomes a catalogue version."""
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    changes: list[tuple[str, str | None]] = []
    for product in products:
        old = _stored(conn, product["product_id"])
        if old == product:
            counts["unchanged"] += 1
            continue
        counts["inserted" if old is None else "updated"] += 1
        changes.append((product["product_id"], None if old is None else json.dumps(old)))
        _write(conn, product)
    if changes:
        version = conn.execute(
            "INSERT INTO catalogue_versions (created_at, received, inserted, updated, status) "
            "VALUES (?, ?, ?, ?, ?)", (now or datetime.now().isoformat(timespec="seconds"),
                                       len(products), counts["inserted"], counts["updated"],
                                       ACTIVE)).lastrowid
        conn.executemany("INSERT INTO catalogue_changes VALUES (?, ?, ?)",
                         [(version, pid, before) for pid, before in changes])
    return counts


def catalogue_etag(conn: sqlite3.Connection) -> str:
    """A strong ETag of the whole catalogue: the sha256 of every product's fields, in id order.

    A hash of the content rather than a counter: a rollback back to an earlier state, or an upload
    that changes nothing, gives the same tag, and clients skip a refetch exactly when nothing differs.
    """
    digest = hashlib.sha256()
    for row in conn.execute(f"SELECT {_PRODUCT_COLUMNS} FROM products ORDER BY product_id"):
        digest.update(json.dumps(list(row), separators=(",", ":")).encode() + b"\n")
    return f'"{digest.hexdigest()}"'


def list_versions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM catalogue_versions ORDER BY version DESC")]


def rollback_version(conn: sqlite3.Connection, version: int) -> dict[str, int]:
    """Undo the newest active version: its products go back to their state before it."""
    latest = conn.execute("SELECT MAX(version) FROM catalogue_versions WHERE status = ?",
                          (ACTIVE,)).fetchone()[0]
    if latest is None or version != latest:
        known = conn.execute("SELECT status FROM catalogue_versions WHERE version = ?",
                             (version,)).fetchone()
        if known is None:
            raise ApiError(404, f"catalogue version {version} not found")
        raise ApiError(409, f"only the newest active version ({latest}) can be rolled back; "
                            "roll back the newer ones first")
    restored = removed = 0
    for row in conn.execute("SELECT product_id, before FROM catalogue_changes WHERE version = ?",
                            (version,)).fetchall():
        if row["before"] is None:
            conn.execute("DELETE FROM products WHERE product_id = ?", (row["product_id"],))
            removed += 1
        else:
            _write(conn, json.loads(row["before"]))
            restored += 1
    conn.execute("UPDATE catalogue_versions SET status = ?, rolled_back_at = ? WHERE version = ?",
                 (ROLLED_BACK, datetime.now().isoformat(timespec="seconds"), version))
    return {"version": version, "restored": restored, "removed": removed}


def replace_sales_by_year(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    conn.executemany("INSERT OR REPLACE INTO sales_by_year VALUES (?, ?, ?, ?)",
                     [tuple(row[f] for f in SALES_FIELDS) for row in rows])


# --- request helpers -----------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_NOT_A_LIST = {"{": "an object", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}


def read_json_body() -> Iterator[Any]:
    """The request body's JSON list, one item at a time, or an ApiError (nothing stored yet).

    Items are decoded one by one (not the whole body at once): a 5 MB ``[{},{},...]`` would be
    1.6 million dicts in memory before the first one is looked at; the caller stops early.
    """
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    try:
        raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    except OSError:  # the client stalled past the body timeout, or disconnected
        raise ApiError(408, "the request body did not arrive in time; nothing was stored") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    start = _JSON_SPACE.match(text).end()
    if not text.startswith("[", start):
        first = text[start:start + 1]
        kind = _NOT_A_LIST.get(first, "a number" if first and first in "-0123456789" else "no list")
        raise ApiError(400, f"body must be a JSON list, got {kind}")
    return _list_items(text, start + 1)


def _list_items(text: str, at: int) -> Iterator[Any]:
    decoder = json.JSONDecoder(parse_constant=_reject_constant)  # NaN/Infinity: not JSON
    at = _JSON_SPACE.match(text, at).end()
    if text.startswith("]", at):
        at += 1
    else:
        while True:
            try:
                item, at = decoder.raw_decode(text, at)
            except RecursionError:
                raise ApiError(400, "malformed JSON body: nested too deeply") from None
            except ValueError as exc:
                raise ApiError(400, f"malformed JSON body: {exc}") from None
            yield item
            at = _JSON_SPACE.match(text, at).end()
            if text.startswith(",", at):
                at = _JSON_SPACE.match(text, at + 1).end()
            elif text.startswith("]", at):
                at += 1
                break
            else:
                raise ApiError(400, f"malformed JSON body: expected ',' or ']' at char {at}")
    if _JSON_SPACE.match(text, at).end() != len(text):
        raise ApiError(400, f"malformed JSON body: extra data after the list at char {at}")


def refuse(status: int, problems: list[Problem]) -> ApiError:
    shown = problems[:MAX_ERROR_DETAILS]
    if len(problems) >= MAX_PROBLEMS:
        return ApiError(status, f"{len(problems)} validation problems or more; nothing was stored "
                                f"(validation stops at the first {MAX_PROBLEMS})", shown)
    more = f" (first {len(shown)} shown)" if len(problems) > len(shown) else ""
    return ApiError(status, f"{len(problems)} validation problem(s); nothing was stored{more}", shown)


def read_items(parse: Callable[[Any], tuple[list[dict[str, Any]], list[Problem]]]) -> list[dict[str, Any]]:
    items, problems = parse(read_json_body())
    if problems:
        raise refuse(400, problems)
    return items


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # digits only, and few of them: int() of a huge string is slow, and SQLite takes 64 bits
    plain = raw.isascii() and raw.isdigit() and len(raw) <= MAX_QUERY_INT_DIGITS
    value = int(raw) if plain else None
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
    """The API over the SQLite file at ``store_path``. With ``token``, every request but
    ``/health`` needs it in ``X-API-Token``; without, the app is open (in-process use, or a
    development server ``serve`` allowed on loopback only)."""
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
        # reads too: the catalogue and its versions hold plaintext product ids, which would
        # reverse dim_products' tokens (join on name, category and price)
        if token is None or request.path in OPEN_PATHS:
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
        products = read_items(parse_products)
        with store.transaction(write=True) as conn:
            conflicts = case_conflicts(conn, products)
            if conflicts:
                raise refuse(409, conflicts)
            counts = upsert_products(conn, products)
        return jsonify({"received": len(products), **counts})

    @app.get("/products/versions")
    def get_versions() -> Response:
        with store.transaction() as conn:
            return jsonify(list_versions(conn))

    @app.post("/products/versions/<int:version>/rollback")
    def post_rollback(version: int) -> Response:
        with store.transaction(write=True) as conn:
            return jsonify(rollback_version(conn, version))

    @app.get("/products")
    def list_products() -> Response:
        page = _int_arg("page", 1, 1, MAX_PAGE)
        page_size = _int_arg("page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        with store.transaction() as conn:  # tag and page from one snapshot
            etag = catalogue_etag(conn)
            if request.if_none_match.contains_weak(etag.strip('"')):
                response = Response(status=304)
            else:
                total = count_products(conn)
                rows = conn.execute(f"SELECT {_PRODUCT_COLUMNS} FROM products ORDER BY product_id "
                                    "LIMIT ? OFFSET ?", (page_size, (page - 1) * page_size)).fetchall()
                response = jsonify({"items": [dict(r) for r in rows], "page": page,
                                    "page_size": page_size, "total": total,
                                    "next_page": page + 1 if page * page_size < total else None})
        # Every page carries the catalogue's tag: a client sees a change in the middle of paging.
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = "no-cache"  # caches must revalidate (then get a 304)
        return response

    @app.get("/products/<product_id>")
    def get_product(product_id: str) -> Response:
        with store.transaction() as conn:
            row = _stored(conn, product_id)
        if row is None:
            raise ApiError(404, f"product {product_id[:MAX_PRODUCT_ID_LENGTH]!r} not found")
        return jsonify(row)

    @app.post("/aggregates/sales-by-year")
    def post_sales_by_year() -> Response:
        rows = read_items(parse_sales_years)
        with store.transaction(write=True) as conn:
            replace_sales_by_year(conn, rows)
        return jsonify({"received": len(rows)})

    @app.get("/aggregates/sales-by-year")
    def get_sales_by_year() -> Response:
        with store.transaction() as conn:
            rows = conn.execute("SELECT * FROM sales_by_year ORDER BY year").fetchall()
        return jsonify([dict(r) for r in rows])

    app.register_blueprint(uploads_blueprint())  # POST /uploads, GET /uploads/<sha256>
    return app


def guarded_worker() -> type:
    """The threaded worker with the limits of this environment (see api/server.py)."""
    from sales_platform.api.server import GuardedThreadWorker

    limits = {
        "header_timeout_s": settings.env_number(settings.API_HEADER_TIMEOUT_S,
                                                GuardedThreadWorker.header_timeout_s, 0.5, 300),
        "body_timeout_s": settings.env_number(settings.API_BODY_TIMEOUT_S,
                                              GuardedThreadWorker.body_timeout_s, 0.5, 3600),
        "max_per_client": settings.env_number(settings.API_MAX_CONNECTIONS_PER_CLIENT,
                                              GuardedThreadWorker.max_per_client, 1, 100_000,
                                              integer=True)}
    return type("ConfiguredWorker", (GuardedThreadWorker,), limits)


def _allow_without_token(host: str, local: bool, dev_flag: bool) -> None:
    """Start without a token only on loopback and when asked explicitly, and say so loudly."""
    if not (dev_flag and local):
        raise settings.SettingError(
            f"{settings.API_TOKEN} is not set: the products API does not start without a token "
            "(every request but /health needs it). Set it; for development on this machine only, "
            f"{settings.API_DEV_NO_TOKEN}=1 with --host 127.0.0.1"
            + (f" (not {host})" if not local else ""))
    log.warning("DEVELOPMENT MODE (%s=1): products API on %s without a token; any process on this "
                "host can read the plaintext catalogue, upload files, write and roll back",
                settings.API_DEV_NO_TOKEN, host)


def serve(host: str, port: int, store_path: str | Path, token: str | None,
          certfile: str | None = None, keyfile: str | None = None, workers: int = 2) -> None:
    """Run the API under gunicorn (HTTPS when a certificate is given) until SIGINT/SIGTERM."""
    from gunicorn.app.base import BaseApplication

    if bool(certfile) != bool(keyfile):
        raise ValueError("give both --certfile and --keyfile, or neither")
    scheme = "https" if certfile else "http"
    local = host in LOOPBACK
    if token is None:
        _allow_without_token(host, local, settings.flag(settings.API_DEV_NO_TOKEN))
    if scheme == "http" and not local:
        log.warning("products API listens on %s over plain HTTP: the token and the catalogue "
                    "cross the network in clear; give --certfile/--keyfile", host)
    app = create_app(store_path, token)

    def when_ready(server: Any) -> None:
        bound = [listener.sock.getsockname()[1] for listener in server.LISTENERS]
        log.info("products API on %s://%s:%s (store %s, %s)", scheme, host, bound[0],
                 store_path, "requests need the token" if token else "DEVELOPMENT MODE, open")

    options = {"bind": f"{host}:{port}", "workers": workers, "worker_class": guarded_worker(),
               "threads": 4, "timeout": 60, "graceful_timeout": 10, "when_ready": when_ready,
               "accesslog": None, "loglevel": "warning",
               # request line and header bounds: gunicorn answers 4xx past them
               "limit_request_line": 8190, "limit_request_fields": 50,
               **({"certfile": certfile, "keyfile": keyfile} if certfile else {})}

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return app

    _Gunicorn().run()
