"""HTTP services of the platform (Flask apps), outside the Dagster definitions."""
