"""The warehouse schema, declared once with SQLAlchemy Core and created idempotently."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Unicode,
    UnicodeText,
    UniqueConstraint,
)
from sqlalchemy.dialects.mssql import NVARCHAR
from sqlalchemy.types import TypeEngine

from sales_platform.core.crypto import token_length
from sales_platform.core.limits import (
    MAX_NAME_BYTES,
    REVENUE_DIGITS,
    SHOWN_NAME_LENGTH,
    UNIT_PRICE_DIGITS,
    UTF8_MAX_BYTES_PER_CHAR,
    UTF16_MAX_UNITS_PER_CHAR,
)
from sales_platform.core.quality import MAX_IDENTIFIER_LENGTH

metadata = MetaData()


def unicode_chars(length: int) -> TypeEngine:
    """Text of up to ``length`` characters on every backend: SQL Server's NVARCHAR counts UTF-16
    units (a character outside the BMP is two), and its VARCHAR would mangle non-Latin text."""
    return Unicode(length).with_variant(NVARCHAR(length * UTF16_MAX_UNITS_PER_CHAR), "mssql")


# Sizes derived from the limits (core/limits.py), the same on every backend:
# a token of the longest id allowed (64 characters of up to 4 UTF-8 bytes each): 370 characters
TOKEN_LENGTH = token_length(MAX_IDENTIFIER_LENGTH * UTF8_MAX_BYTES_PER_CHAR)
ID = String(TOKEN_LENGTH)  # base64url: ASCII on every backend
TRANSACTION_ID = unicode_chars(MAX_IDENTIFIER_LENGTH)  # plaintext, normalized
# a landed file's name: it passed the name rule (printable, at most 255 bytes of UTF-8), so it has
# at most 255 characters and 255 UTF-16 units (a character never takes more units than bytes)
LANDED_NAME = Unicode(MAX_NAME_BYTES)
# any drop's name as shown (printable_name; quarantined names can be longer, cut by stored_name)
SHOWN_NAME = Unicode(SHOWN_NAME_LENGTH)  # stored_name counts UTF-16 units: NVARCHAR holds it
COUNT = BigInteger  # rows and sums: a file may hold more than 2^31 rows (SALES_PLATFORM_MAX_FILE_BYTES)
QUANTITY = BigInteger  # SALES_PLATFORM_MAX_QUANTITY goes to 10^15
REVENUE = Numeric(*REVENUE_DIGITS)
# SQLite autoincrements only an INTEGER PRIMARY KEY (64-bit there anyway)
AUTO_ID = BigInteger().with_variant(Integer, "sqlite")

sales = Table(
    "sales",
    metadata,
    Column("transaction_id", TRANSACTION_ID, primary_key=True),
    Column("customer_id", ID, nullable=False, comment="token (AES-SIV), not plaintext"),
    Column("product_id", ID, nullable=False, comment="token (AES-SIV), not plaintext"),
    Column("quantity", QUANTITY, nullable=False),
    Column("sale_date", Date, nullable=False),
    Column("sale_ts", DateTime, nullable=False),
    Column("source_file", LANDED_NAME, nullable=False),
    Column("loaded_at", DateTime, nullable=False),
    Column("extras", UnicodeText, nullable=True, comment="JSON of unknown columns (rescue policy)"),
    Column("source_sha256", String(64), nullable=True, comment="content of the file version"),
    Column("source_row", COUNT, nullable=True, comment="data record number in that file"),
    Index("ix_sales_sale_date", "sale_date"),
)

SALES_CONTENT_COLUMNS = ("customer_id", "product_id", "quantity", "sale_date", "sale_ts")

sales_rejects = Table(
    "sales_rejects",
    metadata,
    Column("reject_id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("stage", String(16), nullable=False, comment="landing or cleaning"),
    Column("sale_date", Date, nullable=True),
    Column("source_file", LANDED_NAME, nullable=False),
    Column("source_sha256", String(64), nullable=True),
    Column("source_row", COUNT, nullable=True),
    Column("reason", String(40), nullable=False),
    # the source's own text, as written (any script): NVARCHAR(max) on SQL Server
    Column("detail", UnicodeText, nullable=True),
    Column("transaction_id", UnicodeText, nullable=True),
    Column("customer_id", Text, nullable=True, comment="token of the raw value"),
    Column("product_id", Text, nullable=True, comment="token of the raw value"),
    Column("quantity", UnicodeText, nullable=True),
    Column("timestamp", UnicodeText, nullable=True),
    Column("raw_text", Text, nullable=True, comment="token of a malformed record"),
    Column("extras", UnicodeText, nullable=True, comment="JSON of the row's other columns"),
    Column("rejected_at", DateTime, nullable=False),
    Index("ix_sales_rejects_sale_date", "sale_date"),
    Index("ix_sales_rejects_file", "source_sha256"),
)

file_ledger = Table(
    "file_ledger",
    metadata,
    Column("file_id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("file_name", SHOWN_NAME, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", COUNT, nullable=False),
    Column("status", String(24), nullable=False),
    Column("rows_read", COUNT, nullable=True),
    Column("rows_landed", COUNT, nullable=True),
    Column("rows_rejected", COUNT, nullable=True),
    Column("days_touched", Text, nullable=True, comment="JSON list of sale dates"),
    Column("error", UnicodeText, nullable=True),  # names the file
    Column("archive_path", UnicodeText, nullable=True),  # a quarantined file's path holds its name
    Column("code_version", String(64), nullable=True),
    Column("received_at", DateTime, nullable=False),
    Column("processed_at", DateTime, nullable=True),
    Column("days_affected", Text, nullable=True,
           comment="JSON list: own days and the days of the versions it superseded"),
    UniqueConstraint("file_name", "sha256", name="uq_file_ledger_name_sha"),
    Index("ix_file_ledger_sha", "sha256"),
)

# Append-only history of every file version's state changes (the ledger row holds the latest).
file_events = Table(
    "file_events",
    metadata,
    Column("event_id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("file_name", SHOWN_NAME, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("status", String(24), nullable=False),
    Column("detail", UnicodeText, nullable=True),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_file_events_file", "file_name", "sha256"),
)

# Rows each file version landed per sale day: written once, when the version lands.
file_day_counts = Table(
    "file_day_counts",
    metadata,
    Column("file_name", LANDED_NAME, primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("sale_date", Date, primary_key=True),
    Column("rows_landed", COUNT, nullable=False),
)

# Days whose landed rows changed since they were last loaded (new or superseded versions,
# conflicts that went away); the load sensor loads them, a load clears what its snapshot saw.
pending_days = Table(
    "pending_days",
    metadata,
    Column("sale_date", Date, primary_key=True),
    Column("requested_ns", String(24), nullable=False, comment="time.time_ns() of the request"),
    Column("reason", Text, nullable=True),
)

# The newest snapshot of landed rows each day's rejects and sales rows were written from: a run
# that read older landed rows (it started before a later run) never overwrites newer results.
day_snapshots = Table(
    "day_snapshots",
    metadata,
    Column("sale_date", Date, primary_key=True),
    Column("cleaned_ns", String(24), nullable=True),
    Column("loaded_ns", String(24), nullable=True),
)

# One row per named lock: writers UPDATE it to serialize on SQLite (PostgreSQL/SQL Server use
# advisory/app locks).
warehouse_locks = Table(
    "warehouse_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("taken", Integer, nullable=False),
)

# Keyed by the product token only: a plaintext id here would map every sales token back to its
# product (sales JOIN dim_products). The plaintext ids live in the products catalogue (the API).
dim_products = Table(
    "dim_products",
    metadata,
    Column("product_token", ID, primary_key=True, comment="token (AES-SIV) of the product id"),
    Column("name", unicode_chars(255), nullable=False),
    Column("category", unicode_chars(100), nullable=False),
    Column("unit_price", Numeric(*UNIT_PRICE_DIGITS), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

agg_sales_daily = Table(
    "agg_sales_daily",
    metadata,
    Column("sale_date", Date, primary_key=True),
    Column("transactions", COUNT, nullable=False),
    Column("total_quantity", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=False),
    Column("refreshed_at", DateTime, nullable=False),
)

agg_sales_yearly = Table(
    "agg_sales_yearly",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),  # natural key, never IDENTITY
    Column("transactions", COUNT, nullable=False),
    Column("total_quantity", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=False),
    Column("refreshed_at", DateTime, nullable=False),
)

agg_sales_monthly = Table(
    "agg_sales_monthly",
    metadata,
    Column("year", Integer, primary_key=True),
    Column("month", Integer, primary_key=True),
    Column("transactions", COUNT, nullable=False),
    Column("total_quantity", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=False),
    Column("refreshed_at", DateTime, nullable=False),
)

agg_sales_by_product = Table(
    "agg_sales_by_product",
    metadata,
    Column("sale_date", Date, primary_key=True),
    Column("product_token", ID, primary_key=True),
    Column("product_name", unicode_chars(255), nullable=True),
    Column("category", unicode_chars(100), nullable=True),
    Column("transactions", COUNT, nullable=False),
    Column("total_quantity", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=True),
    Column("refreshed_at", DateTime, nullable=False),
)

agg_sales_by_customer = Table(
    "agg_sales_by_customer",
    metadata,
    Column("sale_date", Date, primary_key=True),
    Column("customer_token", ID, primary_key=True, comment="token (AES-SIV), not plaintext"),
    Column("transactions", COUNT, nullable=False),
    Column("total_quantity", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=False),
    Column("refreshed_at", DateTime, nullable=False),
)

schema_history = Table(
    "schema_history",
    metadata,
    Column("history_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(24), nullable=False, comment="source_schema or table_change"),
    Column("table_name", String(64), nullable=True),
    Column("file_name", LANDED_NAME, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("columns", Text, nullable=False, comment="JSON list of column names"),
    Column("detail", UnicodeText, nullable=True),
    Column("recorded_at", DateTime, nullable=False),
)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("applied_at", DateTime, nullable=False),
)

export_log = Table(
    "export_log",
    metadata,
    Column("export_name", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("blob_name", String(255), nullable=False),
    Column("rows", COUNT, nullable=False),
    Column("exported_at", DateTime, nullable=False),
)

# Sale days whose aggregates changed, one row per (consumer, day, change): written with every rewrite
# of a day's aggregates (also when the day lost all its rows), read and deleted by each rollup and
# export that follows them. The only answer to "which periods need a refresh".
agg_changes = Table(
    "agg_changes",
    metadata,
    Column("change_id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("sale_date", Date, nullable=False),
    Column("logged_at", DateTime, nullable=False),
    Index("ix_agg_changes_consumer", "consumer"),
)


def create_all(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)

# The data-object ledger (flask-data-pipes' __etl_data_objects): one row per artifact a stage wrote
# (landed fragment, cleaned/encrypted layer, table rows, export, report), appended, never updated.
data_objects = Table(
    "data_objects",
    metadata,
    Column("object_id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("stage", String(64), nullable=False, comment="the asset that wrote it"),
    Column("kind", String(24), nullable=False, comment="fragment, layer, table, export, report, fetch"),
    Column("location", Text, nullable=False, comment="path, blob name, table:<name> or URL"),
    Column("sha256", String(64), nullable=True, comment="content hash (or the API's ETag)"),
    Column("rows", COUNT, nullable=True),
    Column("bytes", COUNT, nullable=True),
    Column("partition_key", String(64), nullable=True),
    Column("code_version", String(64), nullable=False, comment="the stage's version that wrote it"),
    Column("run_id", String(64), nullable=True),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_data_objects_stage", "stage", "recorded_at"),
)

# The data-model ledger (flask-data-pipes' __etl_data_models): each version of each stage seen,
# appended when a stage first writes under a new code version.
data_models = Table(
    "data_models",
    metadata,
    Column("stage", String(64), primary_key=True),
    Column("code_version", String(64), primary_key=True),
    Column("first_seen_at", DateTime, nullable=False),
)

# Transactions, total and mean revenue per month and sales_category (core/categories.py).
agg_sales_by_category_monthly = Table(
    "agg_sales_by_category_monthly",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("month", Integer, primary_key=True, autoincrement=False),
    Column("sales_category", String(16), primary_key=True, comment="Low, Medium, High or Unpriced"),
    Column("transactions", COUNT, nullable=False),
    Column("total_revenue", REVENUE, nullable=True, comment="NULL for Unpriced"),
    Column("mean_revenue", REVENUE, nullable=True, comment="NULL with no priced sale"),
    Column("bins", String(64), nullable=False, comment="the revenue bins the rows were cut with"),
    Column("refreshed_at", DateTime, nullable=False),
)
