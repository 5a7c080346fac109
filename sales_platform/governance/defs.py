import dagster as dg

from sales_platform.governance.assets import lineage_export

defs = dg.Definitions(assets=[lineage_export])
