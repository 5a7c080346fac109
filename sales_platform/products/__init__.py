"""products domain."""
