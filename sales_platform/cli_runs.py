"""CLI runs that the UI lists like its own.

``execute_in_process`` records a run with no code-location origin, and the UI's Overview ->
Timeline leaves such runs out. A CLI run is therefore created the way ``dagster job launch`` creates
one (with the origin of the workspace's code location, ``workspace.yaml``), then executed here, in
this process, with the job's own executor.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

DEFINITIONS_MODULE = "sales_platform.definitions"
LOCATION_NAME = "sales_platform"  # workspace.yaml's location_name
REPOSITORY_NAME = "__repository__"  # the one repository of a Definitions object


def run_job(instance: dg.DagsterInstance, job_name: str, tags: Mapping[str, str],
            run_config: Mapping[str, object]) -> tuple[str, bool]:
    """Run ``job_name`` to its end in this process; (run id, success)."""
    recon_repo = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs")
    recon_job = recon_repo.get_reconstructable_job(job_name)
    job_def = recon_job.get_definition()
    run = instance.create_run_for_job(
        job_def, run_config=run_config, tags={**job_def.tags, **tags},
        remote_job_origin=_remote_origin(job_name),
        job_code_origin=recon_job.get_python_origin())
    result = execute_run(recon_job, run, instance)
    return run.run_id, result.success


def _remote_origin(job_name: str) -> RemoteJobOrigin:
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=LOCATION_NAME)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), job_name)
