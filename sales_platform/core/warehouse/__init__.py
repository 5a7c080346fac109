"""Warehouse tables and the dialect-aware SQL that loads them (SQLAlchemy Core, no Dagster)."""
