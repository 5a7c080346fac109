"""Dagster definitions by domain, loaded with ``dg.load_from_defs_folder`` (see ../definitions.py).

Every module below is imported by the loader and its module-level assets, checks, jobs, sensors and
schedules are collected: a new asset needs no registration. Resources and the executor are bound once,
in ``resources.py``. Code that is not Dagster wiring (the core, the HTTP services) lives outside."""
