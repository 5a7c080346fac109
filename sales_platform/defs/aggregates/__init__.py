"""aggregates domain."""
