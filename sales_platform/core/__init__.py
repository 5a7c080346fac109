"""Dagster-free core: schema contract, quality rules, encryption, landing and SQL loading."""
