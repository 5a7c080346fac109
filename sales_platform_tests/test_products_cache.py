"""Cached catalogue fetch (issue 17 item 6): ETag / If-None-Match over a real HTTP server, and the
Dagster data version of dim_products that keeps downstream assets fresh when nothing changed."""

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import dagster as dg
import requests
from sqlalchemy import select

from sales_platform.api.products import create_app
from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import data_objects, dim_products
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests.helpers import PRODUCTS, all_assets, materialize, resources_for, write_catalogue
from sales_platform_tests.test_products_api import TOKEN, product, serving

DIM = dg.AssetKey("dim_products")


class Recorder:
    """WSGI middleware: the (method, path, If-None-Match, status) of every request the server saw."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app, self.seen = app, []

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        def record(status: str, headers: list, *args: Any) -> Any:
            self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"],
                              environ.get("HTTP_IF_NONE_MATCH"), int(status.split()[0])))
            return start_response(status, headers, *args)

        return self.app(environ, record)


def catalogue_hash(items: list[dict]) -> str:
    """The catalogue's tag as documented: sha256 of each product's fields in id order, one line each."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i["product_id"]):
        fields = [item[f] for f in ("product_id", "name", "category", "unit_price", "updated_at")]
        digest.update(json.dumps(fields, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def data_version(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(DIM)
    return event.asset_materialization.tags["dagster/data_version"]


def test_http_get_answers_304_for_the_current_tag_and_200_after_a_change(tmp_path):
    items = [product(i) for i in range(1, 8)]
    app = create_app(tmp_path / "api.sqlite", token=TOKEN)
    with serving(app) as base_url:
        api = ProductsApiResource(base_url=base_url, token=TOKEN)
        api.put_products(items)
        auth = {"X-API-Token": TOKEN}
        first = requests.get(f"{base_url}/products", params={"page_size": 3}, headers=auth, timeout=10)
        tag = first.headers["ETag"]
        assert first.status_code == 200 and tag == f'"{catalogue_hash(items)}"'
        page_two = requests.get(f"{base_url}/products", params={"page": 2, "page_size": 3},
                                headers=auth, timeout=10)
        assert page_two.headers["ETag"] == tag  # every page carries the catalogue's tag
        again = requests.get(f"{base_url}/products", headers={"If-None-Match": tag, **auth},
                             timeout=10)
        assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", tag)
        api.put_products([product(2, unit_price=99.5)])
        changed = requests.get(f"{base_url}/products", headers={"If-None-Match": tag, **auth},
                             timeout=10)
        assert changed.status_code == 200 and changed.headers["ETag"] != tag
        fetched = api.fetch_products(etag=tag, page_size=3)
        assert fetched.status == 200 and len(fetched.items) == 7
        assert api.fetch_products(etag=fetched.etag).status == 304


def test_dim_products_refetches_only_a_changed_catalogue_and_keeps_its_data_version(data_dir, key,
                                                                                    tmp_path):
    write_catalogue(data_dir, [f"P{i}" for i in range(1, 6)], price=4.0)
    recorder = Recorder(create_app(tmp_path / "api.sqlite", token=TOKEN))
    instance = dg.DagsterInstance.ephemeral()
    with serving(recorder) as base_url:
        resources = {**resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key),
                     "products_api": ProductsApiResource(base_url=base_url, token=TOKEN)}
        first = materialize(resources, PRODUCTS, instance=instance)
        meta = first.asset_materializations_for_node("dim_products")[0].metadata
        sent = json.loads((data_dir / "blob" / "products" / "products.json").read_text())
        assert meta["http_status"].value == 200
        assert data_version(instance) == catalogue_hash(sent) == meta["catalogue_etag"].value
        assert dg.materialize([*all_assets(), catalogue_consumer], selection=[catalogue_consumer.key],
                              resources=resources, instance=instance).success
        assert not _downstream_stale(instance, resources)

        recorder.seen.clear()
        second = materialize(resources, ["dim_products"], instance=instance)
        meta = second.asset_materializations_for_node("dim_products")[0].metadata
        assert meta["http_status"].value == 304
        assert recorder.seen == [("GET", "/products", f'"{catalogue_hash(sent)}"', 304)]
        assert data_version(instance) == catalogue_hash(sent)
        # downstream of an unchanged data version is not stale (Dagster's own staleness check)
        assert not _downstream_stale(instance, resources)

        # a price changes in the API: a full read, a new data version, the new price in the table
        ProductsApiResource(base_url=base_url, token=TOKEN).put_products(
            [{**sent[0], "unit_price": 7.25}])
        recorder.seen.clear()
        third = materialize(resources, ["dim_products"], instance=instance)
        assert third.asset_materializations_for_node("dim_products")[0].metadata["http_status"].value == 200
        assert [s[3] for s in recorder.seen] == [200]
        changed = [{**sent[0], "unit_price": 7.25}, *sent[1:]]
        assert data_version(instance) == catalogue_hash(changed) != catalogue_hash(sent)
        assert _downstream_stale(instance, resources)  # a real change does mark it stale

    engine = cached_engine(resources["warehouse"].url())
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    with engine.connect() as conn:
        prices = {tokenizer.decrypt(r.product_token): Decimal(str(r.unit_price))
                  for r in conn.execute(select(dim_products))}
        fetches = [r.sha256 for r in conn.execute(
            select(data_objects).where(data_objects.c.stage == "dim_products")
            .order_by(data_objects.c.object_id))]
    assert prices == {p["product_id"]: Decimal(str(p["unit_price"])) for p in changed}
    assert fetches == [catalogue_hash(sent), catalogue_hash(changed)]  # the 304 wrote nothing


@dg.asset(deps=[DIM])
def catalogue_consumer() -> None:
    """Stands for any asset downstream of dim_products (aggregates join on it)."""


def _downstream_stale(instance: dg.DagsterInstance, resources: dict) -> bool:
    """Whether Dagster's staleness resolver (what the UI shows) calls a child of dim_products stale."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    graph = dg.Definitions(assets=[*all_assets(), catalogue_consumer],
                           resources=resources).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return resolver.get_status(catalogue_consumer.key) == StaleStatus.STALE
