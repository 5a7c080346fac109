"""sales_platform: a Dagster asset-based data platform for sales transactions."""

__version__ = "0.1.0"
