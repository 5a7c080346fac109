"""The pipeline with Azure Blob Storage (real Azurite): archives and exports land in the container."""

import csv
import io
from datetime import date

from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.resources.azure_blob import AzureBlobStorage
from sales_platform_tests.helpers import PRODUCTS, materialize, resources_for
from sales_platform_tests.test_products_and_exports import ROLLUPS, load_days


def test_archive_exports_and_products_json_in_azure_blob(azurite, data_dir, key, tmp_path):
    generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 6, 1), 2, 200,
             GeneratorSettings(seed=2, customers=100, products=20, defect_rate=0.0))
    blob = AzureBlobStorage(container="pipeline", prefix="sales", connection_string=azurite.connection_string)
    resources = {**resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key), "blob": blob}
    materialize(resources, PRODUCTS)
    load_days(resources, "2024-06-01", "2024-06-02")
    materialize(resources, ROLLUPS)
    names = blob.list_names()
    archived = [n for n in names if n.startswith("archive/")]
    assert len(archived) == 2 and all(n.endswith(".csv.sealed") for n in archived)
    assert b"transaction_id" not in blob.get_bytes(archived[0])  # sealed, not plaintext
    assert "products/products.json" in names
    rows = list(csv.DictReader(io.StringIO(blob.get_bytes("exports/agg_sales_by_day/2024.csv").decode())))
    assert [r["sale_date"] for r in rows] == ["2024-06-01", "2024-06-02"]
    assert "exports/agg_sales_by_year.json" in names
