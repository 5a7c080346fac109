"""Former home of the rejects, schema history and product dimension writes, now split by table:
``rejects.py`` (sales_rejects), ``schema_log.py`` (schema_history), ``products_dim.py``
(dim_products). These names stay importable from here only for modules being edited concurrently
(defs/sales/assets.py, core/intake.py, core/warehouse/ledger.py); import from the new modules.
"""

from sales_platform.core.warehouse.products_dim import known_product_ids, upsert_products
from sales_platform.core.warehouse.rejects import (
    CLEANING_STAGE,
    CONFLICT_STAGE,
    DAY_STAGES,
    cross_day_ids,
    replace_day_rejects,
    replace_file_rejects,
)
from sales_platform.core.warehouse.schema_log import (
    record_source_schema,
    record_table_change,
    source_layouts,
)

__all__ = ["CLEANING_STAGE", "CONFLICT_STAGE", "DAY_STAGES", "cross_day_ids", "known_product_ids",
           "record_source_schema", "record_table_change", "replace_day_rejects",
           "replace_file_rejects", "source_layouts", "upsert_products"]
