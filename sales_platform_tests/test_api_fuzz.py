"""Hostile requests against the products API as deployed (gunicorn, real HTTP): every one is
answered 4xx (never 500), stores nothing, and dim_products still loads afterwards.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.tables import dim_products
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests.api_server import gunicorn_api
from sales_platform_tests.helpers import materialize, resources_for

TOKEN = "fuzz-token-5d1c0a"
GOOD = [{"product_id": f"P{i:05d}", "name": f"Product {i}", "category": "toys",
         "unit_price": 1.5 + i, "updated_at": "2024-03-01T12:00:00"} for i in range(5)]


def item(**changes: Any) -> dict[str, Any]:
    return {"product_id": "NEW-1", "name": "New", "category": "toys", "unit_price": 2.0,
            "updated_at": "2024-03-01T12:00:00", **changes}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[str]:
    store = tmp_path_factory.mktemp("fuzz") / "products.sqlite"
    with gunicorn_api(store, TOKEN) as base_url:
        response = requests.put(f"{base_url}/products", json=GOOD, headers={"X-API-Token": TOKEN},
                                timeout=10)
        assert response.status_code == 200, response.text
        yield base_url


def stored(base_url: str) -> list[dict[str, Any]]:
    return list(ProductsApiResource(base_url=base_url, token=TOKEN).iter_products())


def put(base_url: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.put(f"{base_url}/products", data=data, timeout=30,
                        headers={"Content-Type": content_type, "X-API-Token": TOKEN})


BODIES = {
    "nul in id": [item(product_id="NEW\x001")],
    "control char in id": [item(product_id="NEW\x1f1")],
    "DEL in id": [item(product_id="NEW\x7f1")],
    "bidi override in id": [item(product_id="NEW\u202e1")],
    "zero-width space in id": [item(product_id="NEW\u200b1")],
    "id longer than the warehouse column": [item(product_id="X" * 65)],
    "id with surrounding space": [item(product_id=" NEW-1")],
    "empty id": [item(product_id="")],
    "ids differing only in case": [item(product_id="NEW-1"), item(product_id="new-1")],
    "nul in name": [item(name="a\x00b")],
    "name too long": [item(name="n" * 256)],
    "category too long": [item(category="c" * 101)],
    "zero price": [item(unit_price=0)],
    "negative price": [item(unit_price=-1)],
    "price above NUMERIC(12,2)": [item(unit_price=1e10)],
    "huge price": [item(unit_price=1e300)],
    "price as text": [item(unit_price="2")],
    "price true": [item(unit_price=True)],
    "nested id": [item(product_id=nested(50))],
    "object not list": item(),
    "list of lists": [[item()]],
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_invalid_products_are_refused_with_400(api: str, body: Any) -> None:
    before = stored(api)
    response = put(api, json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert stored(api) == before


RAW = {
    "deeply nested JSON": (b"[" * 200_000 + b"]" * 200_000, "application/json", 400),
    "deeply nested objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json", 400),
    "integer with 5000 digits": (b'[{"unit_price": ' + b"9" * 5000 + b"}]", "application/json", 400),
    "NaN": (b'[{"unit_price": NaN}]', "application/json", 400),
    "invalid UTF-8": (b'[{"name": "\xff\xfe"}]', "application/json", 400),
    "truncated JSON": (b'[{"product_id": "P', "application/json", 400),
    "text/plain": (b"[]", "text/plain", 415),
    "6 MB body": (b"[" + b" " * 6_000_000 + b"]", "application/json", 413),
}


@pytest.mark.parametrize(("data", "content_type", "status"), RAW.values(), ids=RAW.keys())
def test_malformed_bodies_are_4xx_never_500(api: str, data: bytes, content_type: str,
                                            status: int) -> None:
    before = stored(api)
    response = put(api, data, content_type)
    assert response.status_code == status, response.text[:300]
    assert stored(api) == before


@pytest.mark.parametrize("query", [
    "page=99999999999999999999", "page=-1", "page=0", "page=1e3", "page=%00", "page=" + "9" * 5000,
    "page_size=-5", "page_size=abc", "page_size=0", "page_size=1001", "page_size=99999999999999999999",
])
def test_paging_abuse_is_400(api: str, query: str) -> None:
    response = requests.get(f"{api}/products?{query}", headers={"X-API-Token": TOKEN}, timeout=10)
    assert response.status_code == 400, response.text
    assert "must be an integer" in response.json()["error"]


def test_a_case_variant_of_a_stored_id_is_409(api: str) -> None:
    before = stored(api)
    response = put(api, json.dumps([item(product_id="p00001")]).encode())
    assert response.status_code == 409, response.text
    assert response.json()["details"] == [
        {"index": 0, "field": "product_id",
         "problem": "differs only in case or spacing from a stored product's id"}]
    assert stored(api) == before


def test_writes_without_the_token_are_401(api: str) -> None:
    response = requests.put(f"{api}/products", json=[item()], timeout=10)
    assert response.status_code == 401
    response = requests.post(f"{api}/products/versions/1/rollback", timeout=10)
    assert response.status_code == 401


def test_a_bad_upload_is_rolled_back(tmp_path: Path) -> None:
    with gunicorn_api(tmp_path / "store.sqlite", TOKEN) as base_url:
        client = ProductsApiResource(base_url=base_url, token=TOKEN)
        client.put_products(GOOD)
        # valid JSON, wrong data: every price multiplied by 100 and a product that should not exist
        bad = [{**p, "unit_price": p["unit_price"] * 100} for p in GOOD[:2]] + [item()]
        assert client.put_products(bad)["updated"] == 2
        versions = requests.get(f"{base_url}/products/versions", headers={"X-API-Token": TOKEN},
                                timeout=10).json()
        assert [(v["version"], v["inserted"], v["updated"], v["status"]) for v in versions] == [
            (2, 1, 2, "active"), (1, 5, 0, "active")]
        older = requests.post(f"{base_url}/products/versions/1/rollback", timeout=10,
                              headers={"X-API-Token": TOKEN})
        assert older.status_code == 409  # newest first
        undo = requests.post(f"{base_url}/products/versions/2/rollback", timeout=10,
                             headers={"X-API-Token": TOKEN})
        assert undo.status_code == 200 and undo.json() == {"version": 2, "restored": 2, "removed": 1}
        assert stored(base_url) == GOOD
        again = requests.post(f"{base_url}/products/versions/2/rollback", timeout=10,
                              headers={"X-API-Token": TOKEN})
        assert again.status_code == 409
        missing = requests.post(f"{base_url}/products/versions/99/rollback", timeout=10,
                                headers={"X-API-Token": TOKEN})
        assert missing.status_code == 404


def _dimension(db_url: str, key: str) -> dict[str, tuple[str, Decimal]]:
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {tokenizer.decrypt(r.product_token): (r.name, Decimal(str(r.unit_price)))
                    for r in conn.execute(select(dim_products))}
    finally:
        engine.dispose()


def test_dim_products_loads_after_the_fuzzing(api: str, data_dir: Path, key: str, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    resources = {**resources_for(data_dir, db_url, key),
                 "products_api": ProductsApiResource(base_url=api, token=TOKEN)}
    assert materialize(resources, ["dim_products"]).success
    assert _dimension(db_url, key) == {
        p["product_id"]: (p["name"], Decimal(str(p["unit_price"]))) for p in GOOD}


def test_rows_the_api_would_refuse_never_block_dim_products(data_dir: Path, key: str,
                                                            tmp_path: Path) -> None:
    """A store written before the schema (or by hand) with bad rows: they are left out with a
    reason, the rest load."""
    store = tmp_path / "store.sqlite"
    with gunicorn_api(store, TOKEN) as base_url:
        ProductsApiResource(base_url=base_url, token=TOKEN).put_products(GOOD)
        with sqlite3.connect(store) as conn:
            conn.executemany("INSERT INTO products (product_id, name, category, unit_price, updated_at)"
                             " VALUES (?, ?, ?, ?, ?)", [
                                 ("BAD\x01ID", "Control", "toys", 1.0, "2024-03-01T12:00:00"),
                                 ("p00001", "Case twin", "toys", 1.0, "2024-03-01T12:00:00"),
                                 ("NEG-PRICE", "Negative", "toys", -5.0, "2024-03-01T12:00:00"),
                                 ("BAD-TIME", "Time", "toys", 1.0, "not a time")])
        db_url = f"sqlite:///{tmp_path / 'w.db'}"
        resources = {**resources_for(data_dir, db_url, key),
                     "products_api": ProductsApiResource(base_url=base_url, token=TOKEN)}
        result = materialize(resources, ["dim_products"])
    metadata = result.asset_materializations_for_node("dim_products")[0].metadata
    assert metadata["rejected"].value == 4 and metadata["products"].value == len(GOOD)
    reasons = metadata["rejected_reasons"].value
    assert "control or invisible format characters" in reasons and "upper case" in reasons \
        and "unit_price" in reasons
    assert "BAD\x01ID" not in reasons and "NEG-PRICE" not in reasons  # positions, not ids
    assert _dimension(db_url, key) == {
        p["product_id"]: (p["name"], Decimal(str(p["unit_price"]))) for p in GOOD}
