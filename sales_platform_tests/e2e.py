"""The real Dagster processes as a session fixture (register with ``pytest_plugins``).

    pytest_plugins = ["sales_platform_tests.e2e"]

``dagster_stack`` (a ``DagsterStack``) runs ``dagster-webserver`` and ``dagster-daemon`` on workspace.yaml
with a temp DAGSTER_HOME, a temp data dir holding a generated catalogue and a temp SQLite warehouse. The
generated daily CSVs wait in ``generated/incoming`` until a test drops them (``stack.drop``). Tests talk
to the processes through GraphQL; every wait is bounded (``eventually``, under pytest-timeout) and a
timeout prints what was awaited, the last value seen and the tails of the daemon and webserver logs.
The webserver cannot bind port 0 (dagster-webserver reads ``-p 0`` as "the default port"), so it
gets a port held until just before it starts, and a new one if another process took it meanwhile
(``ports.start_on_free_port``). Both process groups (with the code servers and run workers they
spawned) are stopped at the end of the session, also when starting failed.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import requests
import yaml
from sqlalchemy import Engine, create_engine

from sales_platform.core import settings
from sales_platform.core.crypto import generate_key
from sales_platform_tests.eventually import WaitTimeout, eventually
from sales_platform_tests.ports import PortInUse, start_on_free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "sales_platform"
REPOSITORY = "__repository__"
SENSORS = ("incoming_files_sensor", "landed_days_sensor")

# Generated data: days GENERATED_START .. +GENERATED_DAYS-1; each test drops its own days.
GENERATED_START = "2024-03-01"
GENERATED_DAYS = 5
ROWS_PER_DAY = 40

START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
# Runs the tests launch take the default executor's run config: steps in the run process
# (SALES_PLATFORM_EXECUTOR unset), as for the sensor-launched runs.
IN_PROCESS: dict = {}
HTTP_TIMEOUT_S = 30.0
POLL_S = 0.5
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS"}
BACKFILL_FAILED = {"FAILED", "COMPLETED_FAILED", "CANCELED"}

T = TypeVar("T")


# ---- processes ---------------------------------------------------------------------------------------

def executable(name: str) -> str:
    """A console script of this venv (the one running pytest), else from PATH."""
    candidate = BIN / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH (pip install -e '.[dev]')")
    return found


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class GroupProcess:
    """A subprocess in its own process group, so stopping it also stops everything it spawned."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, command: list[str], env: dict[str, str], log: Path,
              cwd: Path = REPO) -> GroupProcess:
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(name, process, log)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the group (graceful shutdown), SIGKILL to whatever is left. Idempotent."""
        pgid = self.process.pid  # start_new_session: the leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children (code servers, run workers) may outlive the leader: kill the group regardless.
        _signal_group(pgid, signal.SIGKILL)
        self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---- the stack ---------------------------------------------------------------------------------------

@dataclass
class DagsterStack:
    """Webserver + daemon on one instance, with the GraphQL helpers the e2e tests use."""

    url: str
    root: Path
    home: Path
    data_dir: Path
    generated: Path
    db_url: str
    env: dict[str, str]
    processes: list[GroupProcess] = field(default_factory=list)

    # -- diagnostics

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"----- {p.name} log ({p.log}) -----\n{log_tail(p.log, lines)}"
                         for p in self.processes)

    def fail(self, message: str) -> NoReturn:
        tails = self.log_tails()
        print(f"{message}\n{tails}")  # shown by pytest with the failure, also under -q
        pytest.fail(f"{message}\n{tails}", pytrace=False)

    def wait_until(self, what: str, probe: Callable[[], T | None], timeout: float = RUN_TIMEOUT_S,
                   until: Callable[[Any], bool] | None = None) -> T:
        """Poll ``probe`` until it returns something other than None (or, given ``until``, until
        ``until(value)`` holds); fail with the last value seen and the log tails."""
        def processes_running() -> None:
            for p in self.processes:
                if not p.running:
                    self.fail(f"{p.name} exited with {p.process.returncode} while waiting for {what}")

        try:
            return eventually(what, probe, timeout=timeout, interval=POLL_S, check=processes_running,
                              until=until if until is not None else (lambda value: value is not None))
        except WaitTimeout as exc:
            self.fail(str(exc))

    # -- data

    def drop(self, file_name: str) -> Path:
        """Drop a generated CSV into incoming/ the way a producer should: write *.tmp, then rename."""
        target = self.data_dir / "incoming" / file_name
        partial = target.with_name(file_name + ".tmp")
        shutil.copyfile(self.generated / "incoming" / file_name, partial)
        os.replace(partial, target)
        return target

    def engine(self) -> Engine:
        return create_engine(self.db_url)

    # -- GraphQL

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables},
                                 timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def sensor(self, name: str) -> dict[str, Any]:
        data = self.gql(SENSOR_QUERY, selector=sensor_selector(name))["sensorOrError"]
        expect_type(data, "Sensor")
        return data

    def start_sensor(self, name: str) -> None:
        result = self.gql(START_SENSOR, selector=sensor_selector(name))["startSensor"]
        expect_type(result, "Sensor")

    def stop_sensor(self, name: str) -> None:
        sensor = self.sensor(name)
        if sensor["sensorState"]["status"] == "RUNNING":
            result = self.gql(STOP_SENSOR, id=sensor["id"])["stopSensor"]
            expect_type(result, "StopSensorMutationResult")

    def stop_sensors_settled(self, names: tuple[str, ...], timeout: float = 60.0) -> None:
        """The sensors stopped, and still stopped after two more sensor intervals: a tick already
        running when the stop lands can store the sensor's state back as running (seen once in
        CI: a sensor a shared-stack test had stopped was running when the next test began)."""
        interval = float(self.env.get("SALES_PLATFORM_SENSOR_INTERVAL_S", "30"))
        deadline = time.monotonic() + timeout
        while True:
            for name in names:
                self.stop_sensor(name)
            time.sleep(2 * interval + 0.5)
            running = [n for n in names if self.sensor(n)["sensorState"]["status"] != "STOPPED"]
            if not running:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sensors still running after {timeout:.0f}s of stops: {running}")

    def launch_job(self, job_name: str, tags: dict[str, str] | None = None, assets: list[str] | None = None,
                   run_config: dict[str, Any] | None = None) -> str:
        selector: dict[str, Any] = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                    "jobName": job_name}
        if assets:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {"selector": selector, "runConfigData": run_config or {},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}
        result = self.gql(LAUNCH_RUN, params=params)["launchRun"]
        expect_type(result, "LaunchRunSuccess")
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        result = self.gql(RUN_QUERY, runId=run_id)["runOrError"]
        expect_type(result, "Run")
        return result

    def runs(self, job_name: str | None = None, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        runs_filter: dict[str, Any] = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        if job_name:
            runs_filter["pipelineName"] = job_name
        result = self.gql(RUNS_QUERY, filter=runs_filter)["runsOrError"]
        expect_type(result, "Runs")
        return result["results"]

    def error_events(self, run_id: str) -> list[str]:
        result = self.gql(RUN_EVENTS, runId=run_id)["logsForRun"]
        events = result.get("events", [])
        return [f"[{e.get('stepKey') or '-'}] {e['message']}" for e in events if e.get("level") == "ERROR"]

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the run ends; fail with its error events and the log tails unless it succeeded."""
        run = self.wait_until(f"run {run_id}", lambda: _if(self.run(run_id),
                                                           lambda r: r["status"] in TERMINAL_RUN_STATUSES),
                              timeout)
        if run["status"] != "SUCCESS":
            errors = "\n".join(self.error_events(run_id)[-10:])
            self.fail(f"run {run_id} ({run['jobName']}) ended {run['status']}:\n{errors}")
        return run

    def wait_for_successful_run(self, what: str, job_name: str, tags: dict[str, str],
                                timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Wait for a run (launched by someone else, e.g. a sensor) to appear and succeed."""
        def probe() -> dict[str, Any] | None:
            runs = self.runs(job_name, tags)
            failed = [r for r in runs if r["status"] in {"FAILURE", "CANCELED"}]
            if failed:
                errors = "\n".join(self.error_events(failed[0]["runId"])[-10:])
                self.fail(f"{what}: run {failed[0]['runId']} ended {failed[0]['status']}:\n{errors}")
            return next((r for r in runs if r["status"] == "SUCCESS"), None)

        return self.wait_until(what, probe, timeout)

    def launch_backfill(self, assets: list[str], partitions: list[str], title: str,
                        run_config: dict[str, Any] | None = None) -> str:
        params = {"assetSelection": [{"path": [a]} for a in assets], "partitionNames": partitions,
                  "title": title, "runConfigData": run_config or {}}
        result = self.gql(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
        expect_type(result, "LaunchBackfillSuccess")
        return result["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = RUN_TIMEOUT_S,
                          failed_ok: bool = False) -> dict[str, Any]:
        """The backfill once done; ``failed_ok``: also when it ended with partitions not
        materialized (a blocked day), which fails the wait otherwise."""
        def probe() -> dict[str, Any] | None:
            backfill = self.gql(BACKFILL_QUERY, id=backfill_id)["partitionBackfillOrError"]
            expect_type(backfill, "PartitionBackfill")
            if failed_ok and backfill["status"] == "COMPLETED_FAILED":
                return backfill
            if backfill["status"] in BACKFILL_FAILED:
                errors = (backfill.get("error") or {}).get("message", "")
                self.fail(f"backfill {backfill_id} ended {backfill['status']} {errors}")
            return backfill if backfill["status"] in BACKFILL_DONE else None

        return self.wait_until(f"backfill {backfill_id}", probe, timeout)

    def materializations(self, asset: str, partitions: list[str]) -> list[dict[str, Any]]:
        result = self.gql(MATERIALIZATIONS, key={"path": [asset]}, partitions=partitions)["assetOrError"]
        expect_type(result, "Asset")
        return result["assetMaterializations"]

    def wait_for_ticks(self, sensor: str, after: float, count: int = 2, timeout: float = 60.0) -> list[dict]:
        """Wait until the sensor has been evaluated ``count`` times since ``after`` (a Unix time)."""
        def probe() -> list[dict] | None:
            ticks = [t for t in self.sensor(sensor)["sensorState"]["ticks"]
                     if t["timestamp"] > after and t["status"] != "STARTED"]
            return ticks if len(ticks) >= count else None

        return self.wait_until(f"{count} ticks of {sensor}", probe, timeout)

    def check_executions(self, asset: str, check: str, partition: str | None = None) -> list[dict[str, Any]]:
        variables: dict[str, Any] = {"key": {"path": [asset]}, "check": check}
        if partition is not None:
            variables["partition"] = partition
        return self.gql(CHECK_EXECUTIONS, **variables)["assetCheckExecutions"]

    def partition_statuses(self, asset: str) -> dict[str, str]:
        """The asset's status per day, as its Partitions tab shows them (ranges expanded)."""
        node = self.gql(ASSET_STATUSES, key={"path": [asset]})["assetNodeOrError"]
        expect_type(node, "AssetNode")
        statuses = node["assetPartitionStatuses"]
        expect_type(statuses, "TimePartitionStatuses")
        return _expand(statuses["ranges"])

    def wait_until_idle(self, job_name: str, timeout: float = RUN_TIMEOUT_S) -> None:
        """No run of the job queued or running (the sensors may still request one meanwhile)."""
        self.wait_until(f"no {job_name} run in progress", lambda: all(
            r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in self.runs(job_name)) or None,
            timeout)

    def check_statuses(self, asset: str, check: str) -> dict[str, str]:
        """The check's status per day, as its Partitions tab shows them (ranges expanded)."""
        node = self.gql(CHECK_STATUSES, key={"path": [asset]}, check=check)["assetNodeOrError"]
        expect_type(node, "AssetNode")
        found = node["assetCheckOrError"]
        expect_type(found, "AssetCheck")
        statuses = found["partitionStatuses"]
        expect_type(statuses, "AssetCheckTimePartitionStatuses")
        return _expand(statuses["ranges"])


def _expand(ranges: list[dict[str, str]]) -> dict[str, str]:
    """Daily status ranges (startKey, endKey, status) as one status per day."""
    days: dict[str, str] = {}
    for r in ranges:
        day, last = date.fromisoformat(r["startKey"]), date.fromisoformat(r["endKey"])
        while day <= last:
            days[day.isoformat()] = r["status"]
            day += timedelta(days=1)
    return days


def sensor_selector(name: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}


def expect_type(result: dict[str, Any], typename: str) -> None:
    if result.get("__typename") != typename:
        raise AssertionError(f"expected {typename}, got {result}")


def check_passed(execution: dict[str, Any]) -> bool:
    """An asset check execution (from ``check_executions``) that ran and passed."""
    return execution["status"] == "SUCCEEDED" and bool((execution["evaluation"] or {}).get("success"))


def _if(value: T, condition: Callable[[T], bool]) -> T | None:
    return value if condition(value) else None


# ---- GraphQL documents -------------------------------------------------------------------------------

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError {
      __typename
      ... on RepositoryLocation { repositories { name } }
      ... on PythonError { message }
    } } }
    ... on PythonError { message }
  }
}"""

RELOAD_LOCATION = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }"""

DAEMON_HEALTH = """
query Daemons { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      id name sensorState { status ticks(limit: 5) { status timestamp runKeys error { message } } }
    }
    ... on PythonError { message }
  }
}"""

START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""

STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) { __typename ... on PythonError { message } }
}"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

RUN_FIELDS = "runId jobName status tags { key value } startTime endTime"

RUN_QUERY = f"""
query Run($runId: ID!) {{
  runOrError(runId: $runId) {{ __typename ... on Run {{ {RUN_FIELDS} }} ... on Error {{ message }} }}
}}"""

RUNS_QUERY = f"""
query Runs($filter: RunsFilter) {{
  runsOrError(filter: $filter) {{
    __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on Error {{ message }}
  }}
}}"""

RUN_EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename ... on EventConnection { events { __typename ... on MessageEvent { message level stepKey } } }
  }
}"""

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions partitionNames error { message } }
    ... on Error { message }
  }
}"""

MATERIALIZATIONS = """
query Materializations($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) {
      partition runId timestamp
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } }
    } }
  }
}"""

CHECK_EXECUTIONS = """
query Checks($key: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 50) {
    runId status partition evaluation { success partition }
  }
}"""

CHECK_STATUSES = """
query CheckStatuses($key: AssetKeyInput!, $check: String!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { assetCheckOrError(checkName: $check) {
      __typename
      ... on AssetCheck { partitionStatuses { __typename
        ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } }
    } }
  }
}"""

ASSET_STATUSES = """
query AssetStatuses($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { assetPartitionStatuses { __typename
      ... on TimePartitionStatuses { ranges { startKey endKey status } } } }
  }
}"""


# ---- start and stop ----------------------------------------------------------------------------------

def stack_env(home: Path, data_dir: Path, db_url: str) -> dict[str, str]:
    """This process's environment without any platform or Dagster settings of the developer's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SALES_PLATFORM_") and k != "DAGSTER_HOME"}
    env.update({
        "DAGSTER_HOME": str(home),
        settings.DATA_DIR: str(data_dir),
        settings.ENCRYPTION_KEY: generate_key(),
        settings.DEMO: "1",  # the tests read tokens with the master key alone (derived first key)
        settings.DB_URL: db_url,
        "SALES_PLATFORM_SENSOR_INTERVAL_S": "2",
        "SALES_PLATFORM_SETTLE_S": "0.5",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    })
    return env


def prepare_home(home: Path) -> None:
    """The project's dagster.yaml, with telemetry off whatever the copy says."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    if config.get("telemetry", {}).get("enabled") is not False:
        config["telemetry"] = {"enabled": False}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def init_instance(home: Path) -> None:
    """Create the instance's SQLite storage once: processes starting together race to create it
    (alembic then finds two schema heads and every one of them fails)."""
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()


def generate_data(generated: Path, data_dir: Path, env: dict[str, str]) -> None:
    """Generate CSVs + catalogue aside; only the catalogue goes into the platform's data dir."""
    command = [executable("sales-platform"), "generate", "--start", GENERATED_START,
               "--days", str(GENERATED_DAYS), "--rows-per-day", str(ROWS_PER_DAY)]
    subprocess.run(command, env={**env, settings.DATA_DIR: str(generated)}, cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    (data_dir / "catalogue").mkdir(parents=True, exist_ok=True)
    (data_dir / "incoming").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(generated / "catalogue" / "products.csv", data_dir / "catalogue" / "products.csv")


def generated_file(day: str) -> str:
    return f"sales_{day}.csv"


def csv_rows(path: Path) -> int:
    """Data rows of a CSV file (the header excluded)."""
    with open(path, newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def wait_until_ready(stack: DagsterStack, timeout: float = START_TIMEOUT_S) -> None:
    """Webserver answers, the code location loaded without error, the daemons heartbeat."""
    stack.wait_until("GET /server_info", lambda: _server_info(stack.url), timeout)
    state: dict[str, float] = {"reloaded": time.monotonic()}
    stack.wait_until(f"code location {LOCATION}", lambda: _location_loaded(stack, state), timeout)
    stack.wait_until("daemon heartbeats", lambda: _daemons_healthy(stack), timeout)


def _server_info(url: str) -> bool | None:
    try:
        return True if requests.get(f"{url}/server_info", timeout=5).ok else None
    except requests.RequestException:
        return None


def _location_loaded(stack: DagsterStack, state: dict[str, float]) -> bool | None:
    workspace = stack.gql(WORKSPACE_QUERY)["workspaceOrError"]
    entry = next((e for e in workspace.get("locationEntries", []) if e["name"] == LOCATION), None)
    if entry is None or entry["loadStatus"] == "LOADING" or entry["locationOrLoadError"] is None:
        return None
    location = entry["locationOrLoadError"]
    if location["__typename"] == "RepositoryLocation":
        return True if any(r["name"] == REPOSITORY for r in location["repositories"]) else None
    # A load error may be an edit in progress: report it, and reload now and then until the deadline.
    print(f"code location {LOCATION} failed to load: {location.get('message', '')[:500]}")
    if time.monotonic() - state["reloaded"] > 15:
        stack.gql(RELOAD_LOCATION, name=LOCATION)
        state["reloaded"] = time.monotonic()
    return None


def _daemons_healthy(stack: DagsterStack) -> bool | None:
    statuses = stack.gql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [s for s in statuses if s["required"]]
    return True if required and all(s["healthy"] for s in required) else None


def start_webserver(stack: DagsterStack, port: int) -> GroupProcess:
    """dagster-webserver on ``port``, returned once it answers there; ``PortInUse`` if it could not
    bind the port (someone took it after it was picked)."""
    log = stack.root / f"webserver.{port}.log"  # one per attempt: a retry's log starts clean
    url = f"http://127.0.0.1:{port}"
    process = GroupProcess.start(
        "dagster-webserver", [executable("dagster-webserver"), "-w", str(REPO / "workspace.yaml"),
                              "-h", "127.0.0.1", "-p", str(port)], stack.env, log)

    def answering() -> bool | None:
        if not process.running:
            tail = log_tail(log, 200)
            if "address already in use" in tail.lower():
                raise PortInUse(f"dagster-webserver: {tail.splitlines()[-1] if tail else ''}")
            stack.fail(f"dagster-webserver exited with {process.process.returncode} before answering on "
                       f"{url}:\n{tail}")
        return _server_info(url)

    try:
        eventually(f"dagster-webserver to answer GET {url}/server_info", answering, timeout=START_TIMEOUT_S,
                   interval=POLL_S, diagnose=lambda: f"----- dagster-webserver log ({log}) -----\n"
                                                     f"{log_tail(log)}")
    except WaitTimeout as exc:
        process.stop()
        stack.fail(str(exc))
    except BaseException:
        process.stop()
        raise
    stack.url = url
    return process


@contextmanager
def running_stack(root: Path) -> Iterator[DagsterStack]:
    """Start webserver + daemon on fresh temp state; both process groups are stopped on exit."""
    home, data_dir, generated = root / "dagster_home", root / "data", root / "generated"
    db_url = f"sqlite:///{root / 'warehouse.db'}"
    env = stack_env(home, data_dir, db_url)
    prepare_home(home)
    init_instance(home)
    generate_data(generated, data_dir, env)
    stack = DagsterStack("", root, home, data_dir, generated, db_url, env)  # url: once the webserver is up
    workspace = str(REPO / "workspace.yaml")
    try:
        stack.processes.append(GroupProcess.start(
            "dagster-daemon", [executable("dagster-daemon"), "run", "-w", workspace], env,
            root / "daemon.log"))
        # First in the list: the daemon (it launches the runs) is stopped first.
        stack.processes.insert(0, start_on_free_port(lambda port: start_webserver(stack, port)))
        wait_until_ready(stack)
        yield stack
    finally:
        for process in reversed(stack.processes):  # the daemon first: it launches the runs
            process.stop()
        print(f"e2e logs: {root}")


@pytest.fixture(scope="session")
def dagster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterStack]:
    with running_stack(tmp_path_factory.mktemp("e2e")) as stack:
        yield stack


@pytest.fixture(scope="session")
def products_loaded(dagster_stack: DagsterStack) -> DagsterStack:
    """dim_products materialized once (through the run queue) before any sales load."""
    dagster_stack.wait_for_run(dagster_stack.launch_job("products_job", run_config=IN_PROCESS))
    return dagster_stack


@pytest.fixture
def sensors_stopped(dagster_stack: DagsterStack) -> DagsterStack:
    """For tests that drop files themselves and must not race the drop sensor."""
    for name in SENSORS:
        dagster_stack.stop_sensor(name)
    return dagster_stack
