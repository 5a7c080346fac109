"""Dagster resources: the warehouse, blob storage and platform settings, each one interface."""
