"""Former home of the rejects, schema history and product dimension writes, now split by table:
``rejects.py`` (sales_rejects), ``schema_log.py`` (schema_history), ``products_dim.py``
(dim_products). The names defs/sales/assets.py imports stay importable from here until that module
(being edited concurrently) imports them from the new modules; then delete this file.
"""

from sales_platform.core.warehouse.products_dim import known_product_ids
from sales_platform.core.warehouse.rejects import cross_day_ids, replace_day_rejects
from sales_platform.core.warehouse.schema_log import record_table_change, source_layouts

__all__ = ["cross_day_ids", "known_product_ids", "record_table_change", "replace_day_rejects",
           "source_layouts"]
