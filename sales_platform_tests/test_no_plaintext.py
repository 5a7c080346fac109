"""No plaintext customer or product id anywhere the platform writes, after a run that includes
a file without a header and a file with the wrong delimiter (their first row is all ids).

Planted ids are unique strings; after a full run (products, landing, a day, aggregates, exports,
lineage) on a temp DAGSTER_HOME, a byte search looks for them in the warehouse (the SQLite file,
or a pg_dump of the PostgreSQL database), the data dir outside the user's own files (drop zone,
quarantined originals, the sealed archive, the catalogue and its JSON) and in DAGSTER_HOME (event log
databases with their zlib-compressed snapshots inflated, compute logs). Only the products
catalogue (CSV and the API store, kept outside the data dir here) is allowed to hold them.
"""

from __future__ import annotations

import csv
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, func, make_url, select

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.engine import dispose_all
from sales_platform.core.warehouse.tables import dim_products, file_ledger, sales
from sales_platform.resources.products_api import ProductsApiResource
from sales_platform_tests.helpers import HEADER, PRODUCTS, SALES_CHAIN, materialize, resources_for
from sales_platform_tests.test_security import decoded, files_haystack, leaks

DAY = "2024-03-01"
PER_DAY = [*SALES_CHAIN, "agg_sales_daily", "agg_sales_by_product", "agg_sales_by_customer"]
ROLLUPS = ["agg_sales_monthly", "agg_sales_yearly", "agg_exports", "agg_sales_by_year_json",
           "lineage_export"]
PG_DUMP = Path("/usr/lib/postgresql/15/bin/pg_dump")
USER_FILES = ("incoming", "archive", "catalogue")  # the user's own bytes, as dropped (sealed archive)
CATALOGUE_JSON = "/blob/products/products.json"  # the catalogue's exchange document (products_json)


def planted(kind: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"ZQX{kind}{tag}{i:02d}" for i in range(n)]


def write_rows(path: Path, rows: list[list[str]], header: list[str] | None, delimiter: str = ",") -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def needles(ids: list[str]) -> dict[str, set[bytes]]:
    return {i: {i.encode(), i.lower().encode(), i.title().encode()} for i in ids}


def pg_dump(url: str) -> bytes:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([str(PG_DUMP), "--no-owner", libpq], check=True, capture_output=True).stdout


def test_planted_ids_are_nowhere_but_the_users_files(backend, data_dir: Path, key: str,
                                                     tmp_path: Path) -> None:
    customers, products = planted("CUST", 6), planted("PROD", 3)
    (data_dir / "catalogue").mkdir()
    write_rows(data_dir / "catalogue" / "products.csv",
               [[p, f"Widget no {i}", "Toys", "2.50", "2024-01-01T00:00:00"] for i, p in enumerate(products)],
               ["product_id", "name", "category", "unit_price", "updated_at"])
    good = [[f"T{i}", customers[i % 4], products[i % 3], "2", f"{DAY}T10:{i:02d}:00"] for i in range(8)]
    rejected = [["T98", customers[4], products[0], "-3", f"{DAY}T11:00:00"]]  # negative quantity
    incoming = data_dir / "incoming"
    write_rows(incoming / "good.csv", good + rejected, HEADER)
    write_rows(incoming / "headerless.csv", [["T50", customers[5], products[1], "1", f"{DAY}T09:00:00"]],
               None)
    # no header either: its first line, the one a delimiter message would quote, is ids
    write_rows(incoming / "semicolons.csv", [["T60", customers[5], products[2], "1", f"{DAY}T09:30:00"]],
               None, delimiter=";")

    home = tmp_path / "dagster_home"
    home.mkdir()
    resources = {**resources_for(data_dir, backend.url, key),
                 # the catalogue's system of record lives apart from the platform's data dir
                 "products_api": ProductsApiResource(store_path=str(tmp_path / "api" / "store.sqlite"))}
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        materialize(resources, PRODUCTS, instance=instance)
        materialize(resources, ["landed_files"], instance=instance)
        materialize(resources, PER_DAY, DAY, instance=instance)
        materialize(resources, ROLLUPS, instance=instance)
    dispose_all()

    tokenizer = Tokenizer(Keyring.from_secrets(key))
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:
            statuses = dict(conn.execute(select(file_ledger.c.file_name, file_ledger.c.status)).all())
            loaded = conn.execute(select(func.count()).select_from(sales)).scalar_one()
            joined = conn.execute(select(sales, dim_products).join(
                dim_products, dim_products.c.product_token == sales.c.product_id)).all()
            dimension = {tokenizer.decrypt(t, "product_id")
                         for t in conn.execute(select(dim_products.c.product_token)).scalars()}
    finally:
        engine.dispose()
    # the run did what the inputs say: 8 rows loaded, the two bad files quarantined
    assert loaded == len(good) and len(joined) == len(good)
    assert statuses["headerless.csv"] == statuses["semicolons.csv"] == "quarantined"
    assert dimension == set(products)
    assert {row.name for row in joined} == {f"Widget no {i}" for i in range(3)}
    everything = needles(customers + products)
    join_text = "\n".join(str(tuple(row)) for row in joined).encode()
    assert leaks([("sales JOIN dim_products", join_text)], everything) == []

    haystack = [(where, data) for where, data in files_haystack(data_dir)
                if Path(where).relative_to(data_dir).parts[0] not in USER_FILES
                and CATALOGUE_JSON not in where and not _quarantined_original(Path(where))]
    haystack += files_haystack(home)
    if backend.name == "postgresql":
        haystack.append(("pg_dump", pg_dump(backend.url)))
    else:
        warehouse = Path(make_url(backend.url).database)
        haystack += decoded(str(warehouse), warehouse.read_bytes(), warehouse)
    names = [where for where, _ in haystack]
    # the search covers what it claims: quarantine reasons, exports, lineage, event log, warehouse
    assert any(n.endswith(".reason.txt") for n in names)
    assert any("/exports/" in n for n in names) and any("/lineage/" in n for n in names)
    assert any("(sqlite cells)" in n and str(home) in n for n in names)
    assert "pg_dump" in names or f"{make_url(backend.url).database} (sqlite cells)" in names
    assert leaks(haystack, everything) == []
    # ... and would find them: the quarantined originals are the user's plaintext bytes
    originals = [(str(p), p.read_bytes()) for p in (data_dir / "quarantine").iterdir()
                 if _quarantined_original(p)]
    assert len(originals) == 2 and leaks(originals, needles([customers[5]]))


def _quarantined_original(path: Path) -> bool:
    return path.parent.name == "quarantine" and not path.name.endswith(".reason.txt")


@pytest.fixture(autouse=True)
def _pg_dump_present(backend) -> None:
    if backend.name == "postgresql" and not PG_DUMP.exists():
        pytest.fail(f"{PG_DUMP} not found: the PostgreSQL dump cannot be searched")
