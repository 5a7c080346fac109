"""Who owns each warehouse table: one owning asset per table, and the one core module that holds its
writes. The lineage export carries the owner on every table it describes, and
sales_platform_tests/test_ownership.py holds the definitions to it (a table absent here, a second
owner, or an asset writing a table it does not own fails the suite).

Two kinds of tables are written by more than their owner, on purpose, and say so in ``also``:

- the file-version bookkeeping (file_ledger, file_events, file_day_counts, pending_days,
  day_snapshots): a file version's state changes *in the transaction of the stage whose data it
  describes* (landed with the fragments, blocked with the rejects, loaded with the sales rows). A
  separate bookkeeping step would leave a window where the ledger lies after a crash, and
  exactly-once depends on it. Every such write goes through the one writer module;
- sales_rejects: a row is rejected in the transaction of the stage that rejects it (landing for a row
  that cannot be read, cleaning for a quality rule, the load for a transaction id on two days), so no
  row is ever in neither table.
"""

from __future__ import annotations

from dataclasses import dataclass

LEDGER = "sales_platform/core/warehouse/ledger.py"
AGGREGATES = "sales_platform/core/warehouse/aggregates.py"
LANDING_STAGES = ("landed_files", "raw_sales")  # raw_sales lands what the sensor has not yet


@dataclass(frozen=True)
class TableOwner:
    owner: str                 # the asset that materializes the table (or the maintenance step)
    writer: str                # the module that holds the table's INSERT/UPDATE/DELETE
    also: tuple[str, ...] = ()  # other assets that write it through ``writer``, in their own transaction
    why: str = ""


TABLE_OWNERS: dict[str, TableOwner] = {
    "sales": TableOwner("sales", "sales_platform/core/warehouse/loading.py"),
    "sales_rejects": TableOwner(
        "cleaned_sales", "sales_platform/core/warehouse/rejects.py",
        also=(*LANDING_STAGES, "sales"), why="a row is rejected in the transaction that rejects it"),
    "dim_products": TableOwner("dim_products", "sales_platform/core/warehouse/products_dim.py"),
    "file_ledger": TableOwner("landed_files", LEDGER, also=("raw_sales", "cleaned_sales", "sales"),
                              why="a file version's state changes with the data it describes"),
    "file_events": TableOwner("landed_files", LEDGER, also=("raw_sales",),
                              why="history appended with each state change"),
    "file_day_counts": TableOwner("landed_files", LEDGER, also=("raw_sales",),
                                  why="counts written once, when the version lands"),
    "pending_days": TableOwner("landed_files", LEDGER, also=("raw_sales", "sales"),
                               why="requested at landing, cleared by the load that answers it"),
    "day_snapshots": TableOwner("cleaned_sales", "sales_platform/core/warehouse/locks.py",
                                also=("sales",), why="the snapshot each day's rejects and sales come from"),
    "schema_history": TableOwner("sales", "sales_platform/core/warehouse/schema_log.py",
                                 also=LANDING_STAGES, why="source layouts recorded as files land"),
    "export_log": TableOwner("agg_exports", "sales_platform/core/exports.py"),
    "agg_sales_daily": TableOwner("agg_sales_daily", AGGREGATES),
    "agg_sales_by_product": TableOwner("agg_sales_by_product", AGGREGATES),
    "agg_sales_by_customer": TableOwner("agg_sales_by_customer", AGGREGATES),
    "agg_sales_monthly": TableOwner("agg_sales_monthly", AGGREGATES),
    "agg_sales_yearly": TableOwner("agg_sales_yearly", AGGREGATES),
    "agg_sales_by_category_monthly": TableOwner("agg_sales_by_category_monthly", AGGREGATES),
    "agg_changes": TableOwner(
        "agg_sales_daily", AGGREGATES,
        also=("agg_sales_by_product", "agg_sales_by_customer", "agg_sales_monthly", "agg_sales_yearly",
              "agg_sales_by_category_monthly", "agg_exports"),
        why="each daily aggregate logs the days it rewrote; each rollup and export deletes what it applied"),
    # not data: the platform's own machinery, written by no asset of the graph
    "data_objects": TableOwner("artifact ledger", "sales_platform/core/warehouse/artifacts.py",
                               why="every stage appends the artifacts it made"),
    "data_models": TableOwner("artifact ledger", "sales_platform/core/warehouse/artifacts.py",
                              why="every stage records its code version once"),
    "schema_migrations": TableOwner("migrations", "sales_platform/core/warehouse/migrations.py"),
    "warehouse_locks": TableOwner("locks", "sales_platform/core/warehouse/locks.py"),
}


def owner_of(table: str) -> str | None:
    owner = TABLE_OWNERS.get(table)
    return owner.owner if owner else None
