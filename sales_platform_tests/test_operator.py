"""Operating the platform from the command line: pre-flight checks, one-line errors, validated
arguments, no partial plaintext, alerts for failed CLI runs, quiet output (issue 14).

Every command runs in a subprocess, as an operator types it; expectations are the exact lines the
operator should read, written out here, not taken from the platform."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sales_platform_tests.conftest import pg_url, require_postgres
from sales_platform_tests.ports import closed_port

SECRET = "s3cr3t-pw-do-not-print"


def cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI with only the given platform settings (none inherited from the test's environment)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SALES_PLATFORM_", "DAGSTER_"))}
    return subprocess.run([sys.executable, "-m", "sales_platform.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SALES_PLATFORM_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
            "SALES_PLATFORM_DEMO": "1"}


# --- pre-flight: one line per wrong setting, naming the variable, exit 2 --------------------------

WRONG_SETTINGS = {
    "postgres scheme": ({"SALES_PLATFORM_DB_URL": f"postgres://u:{SECRET}@127.0.0.1:5432/test"},
                        "SALES_PLATFORM_DB_URL: scheme 'postgres://' is not understood; write "
                        "postgresql+psycopg://u:***@127.0.0.1:5432/test"),
    "unparsable": ({"SALES_PLATFORM_DB_URL": "::not a url"},
                   "SALES_PLATFORM_DB_URL: '::not a url' is not a database URL"),
    "unknown backend": ({"SALES_PLATFORM_DB_URL": "oracle://u@h/db"},
                        "SALES_PLATFORM_DB_URL: backend 'oracle' is not supported"),
    "sqlite folder missing": ({"SALES_PLATFORM_DB_URL": "sqlite:////nonexistent-dir-xyz/w.db"},
                              "SALES_PLATFORM_DB_URL: folder /nonexistent-dir-xyz does not exist"),
    "sqlite in memory": ({"SALES_PLATFORM_DB_URL": "sqlite://"},
                         "SALES_PLATFORM_DB_URL: an in-memory SQLite database keeps nothing"),
    "bad key": ({"SALES_PLATFORM_ENCRYPTION_KEY": "not base64 at all!"},
                "SALES_PLATFORM_ENCRYPTION_KEY: cannot be used as a key"),
    "short key": ({"SALES_PLATFORM_ENCRYPTION_KEY": base64.b64encode(b"short").decode()},
                  "SALES_PLATFORM_ENCRYPTION_KEY: cannot be used as a key"),
    "bad retired key": ({"SALES_PLATFORM_RETIRED_KEYS": "abc"},
                        "SALES_PLATFORM_RETIRED_KEYS: cannot be used as a key"),
    "time zone": ({"SALES_PLATFORM_SOURCE_TIMEZONE": "Mars/Olympus"},
                  "SALES_PLATFORM_SOURCE_TIMEZONE: 'Mars/Olympus' is not an IANA time zone"),
    "reject rate": ({"SALES_PLATFORM_MAX_REJECT_RATE": "1.5"},
                    "SALES_PLATFORM_MAX_REJECT_RATE: '1.5' must be between 0.0 and 1.0"),
    "settle": ({"SALES_PLATFORM_SETTLE_S": "soon"}, "SALES_PLATFORM_SETTLE_S: 'soon' is not a number"),
    "start date": ({"SALES_PLATFORM_START_DATE": "01/02/2024"},
                   "SALES_PLATFORM_START_DATE: '01/02/2024' is not a date"),
    "schema policy": ({"SALES_PLATFORM_SCHEMA_POLICY": "yolo"},
                      "SALES_PLATFORM_SCHEMA_POLICY: 'yolo': expected evolve, freeze or rescue"),
    "category bins": ({"SALES_PLATFORM_CATEGORY_BINS": "500,100"}, "SALES_PLATFORM_CATEGORY_BINS: "),
    "executor": ({"SALES_PLATFORM_EXECUTOR": "dask"}, "SALES_PLATFORM_EXECUTOR: 'dask': expected"),
    "webhook": ({"SALES_PLATFORM_ALERT_WEBHOOK": "ftp://x"},
                "SALES_PLATFORM_ALERT_WEBHOOK: 'ftp://x' is not an http(s) URL"),
    "blob without credentials": ({"SALES_PLATFORM_BLOB_CONTAINER": "sales"},
                                 "SALES_PLATFORM_BLOB_CONTAINER: set SALES_PLATFORM_BLOB_CONNECTION_STRING"),
}


@pytest.mark.parametrize("case", sorted(WRONG_SETTINGS))
def test_each_wrong_setting_is_one_line_naming_its_variable(case, env):
    settings, expected = WRONG_SETTINGS[case]
    result = cli(["check"], {**env, **settings})
    assert result.returncode == 2, result.stdout + result.stderr
    assert lines(result.stderr) == [line for line in lines(result.stderr) if expected in line]
    assert len(lines(result.stderr)) == 1 and lines(result.stderr)[0].startswith(
        "sales-platform: configuration: "), result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize("url, says", [
    ("postgresql+psycopg://postgres:{pw}@127.0.0.1:{port}/test", "Connection refused"),
    ("postgresql+psycopg://postgres:{pw}@127.0.0.1:5432/no_such_db_{port}", "does not exist"),
])
def test_unreachable_database_is_one_line_with_the_driver_error(url, says, env):
    require_postgres()
    with closed_port() as port:
        result = cli(["check"], {**env, "SALES_PLATFORM_DB_URL": url.format(pw=SECRET, port=port)})
    assert result.returncode == 2
    assert len(lines(result.stderr)) == 1, result.stderr
    line = lines(result.stderr)[0]
    assert line.startswith("sales-platform: configuration: SALES_PLATFORM_DB_URL: cannot connect to "
                           "postgresql+psycopg://postgres:***@127.0.0.1:")
    assert says in line and SECRET not in result.stderr


def test_unreachable_products_api_is_reported(env):
    with closed_port() as port:
        result = cli(["check"], {**env, "SALES_PLATFORM_API_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 2
    assert lines(result.stderr)[0].startswith(
        "sales-platform: configuration: SALES_PLATFORM_API_URL: products API not reachable")


def test_several_problems_are_all_listed_at_once(env):
    result = cli(["check"], {**env, "SALES_PLATFORM_MAX_QUANTITY": "0",
                             "SALES_PLATFORM_SOURCE_TIMEZONE": "Nowhere/Land"})
    assert result.returncode == 2
    named = sorted(line.split(": ")[2] for line in lines(result.stderr))
    assert named == ["SALES_PLATFORM_MAX_QUANTITY", "SALES_PLATFORM_SOURCE_TIMEZONE"]


def test_both_postgres_drivers_pass_the_check(env):
    require_postgres()
    postgres_url = pg_url("postgres")
    for driver in ("postgresql+psycopg", "postgresql+psycopg2", "postgresql"):
        url = postgres_url.replace("postgresql+psycopg", driver, 1)
        result = cli(["check"], {**env, "SALES_PLATFORM_DB_URL": url})
        assert result.returncode == 0, (driver, result.stderr)
        assert result.stdout.startswith("configuration OK")


def test_demo_with_a_wrong_setting_writes_nothing(env, tmp_path):
    with closed_port() as port:
        result = cli(["demo", "--days", "1", "--rows-per-day", "10"],
                     {**env, "SALES_PLATFORM_DB_URL": f"postgresql://u@127.0.0.1:{port}/x"})
    assert result.returncode == 2
    assert len(lines(result.stderr)) == 1 and "SALES_PLATFORM_DB_URL" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()


# --- arguments ------------------------------------------------------------------------------------

def test_range_arguments_are_validated_in_one_line(env):
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    today = datetime.now(UTC).date().isoformat()
    cases = {
        ("run", "--first", "2024-01-05", "--last", "2024-01-02"):
            "sales-platform run: error: --first 2024-01-05 is after --last 2024-01-02",
        ("run", "--first", "2023-12-30", "--last", "2024-01-02"):
            "sales-platform run: error: 2023-12-30 is before the first partition 2024-01-01 "
            "(SALES_PLATFORM_START_DATE); use a later --first/--start",
        ("run", "--first", today, "--last", tomorrow):
            f"sales-platform run: error: {tomorrow} is after today ({today} UTC): that partition "
            "does not exist yet",
        ("run", "--first", "2024-02-30"):
            "sales-platform run: error: argument --first: '2024-02-30' is not a date (YYYY-MM-DD) "
            "(see --help)",
        ("run", "--days", "0"):
            "sales-platform run: error: argument --days: 0 must be at least 1 (see --help)",
        ("decrypt",): "sales-platform decrypt: error: give one or more tokens, or --file SEALED --out "
                      "TARGET",
        # a future --first is named as typed (not the --last it implies)
        ("run", "--first", "2030-01-01"):
            f"sales-platform run: error: 2030-01-01 is after today ({today} UTC): that partition "
            "does not exist yet",
        # --debug is taken after the subcommand too
        ("run", "--days", "0", "--debug"):
            "sales-platform run: error: argument --days: 0 must be at least 1 (see --help)",
    }
    for args, expected in cases.items():
        result = cli(list(args), env)
        assert result.returncode == 2, (args, result.stderr)
        assert lines(result.stderr) == [expected], args
    assert not (Path(env["SALES_PLATFORM_DATA_DIR"]) / "warehouse.db").exists()


def test_help_shows_defaults_and_every_option_has_a_help_text(env):
    result = cli(["generate", "--help"], env)
    assert result.returncode == 0
    for option in ("--days", "--rows-per-day", "--seed", "--customers", "--products", "--out"):
        block = result.stdout.split(option, 1)[1].split("\n  -", 1)[0]
        assert len(block.split()) > 2, f"{option} has no help text"
    assert "(default: 7)" in result.stdout and "(default: 3000)" in result.stdout
    run_help = cli(["run", "--help"], env).stdout
    assert "(default: None)" not in run_help and run_help.count("(default: --start)") == 1


def test_generate_out_writes_one_file_with_all_days(env, tmp_path):
    target = tmp_path / "sales.csv"
    result = cli(["generate", "--start", "2024-02-01", "--days", "3", "--rows-per-day", "20",
                  "--defect-rate", "0", "--out", str(target)], env)
    assert result.returncode == 0, result.stderr
    rows = target.read_text().splitlines()
    assert rows[0].replace('"', "") == "transaction_id,customer_id,product_id,quantity,timestamp"
    days = {row.split(",")[4].strip('"')[:10] for row in rows[1:]}
    assert days == {"2024-02-01", "2024-02-02", "2024-02-03"}
    assert not (Path(env["SALES_PLATFORM_DATA_DIR"]) / "incoming").exists()


# --- decrypt: explicit target, whole or nothing ---------------------------------------------------

@pytest.mark.slow
def test_decrypt_writes_only_whole_plaintext_to_an_explicit_target(env, tmp_path):
    from sales_platform.core.crypto import generate_key

    env = {**env, "SALES_PLATFORM_ENCRYPTION_KEY": generate_key(), "SALES_PLATFORM_SETTLE_S": "0"}
    args = ["--start", "2024-03-04", "--days", "1", "--rows-per-day", "40", "--seed", "5"]
    assert cli(["demo", *args], env).returncode == 0
    sealed = next((Path(env["SALES_PLATFORM_DATA_DIR"]) / "archive").rglob("*.sealed"))
    expected = tmp_path / "expected.csv"  # the same generator, the same seed: the same bytes
    assert cli(["generate", *args, "--out", str(expected)], env).returncode == 0

    out = tmp_path / "plain.csv"
    ok = cli(["decrypt", "--file", str(sealed), "--out", str(out)], env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() == expected.read_bytes()
    stdout = subprocess.run([sys.executable, "-m", "sales_platform.cli", "decrypt", "--file", str(sealed),
                             "--out", "-"], env={**os.environ, **env}, capture_output=True, timeout=120)
    assert stdout.returncode == 0 and stdout.stdout == expected.read_bytes()

    no_out = cli(["decrypt", "--file", str(sealed)], env, cwd=tmp_path)
    assert no_out.returncode == 2 and "--file needs --out" in no_out.stderr

    truncated = tmp_path / sealed.name  # its own name: the name is part of what was sealed
    truncated.write_bytes(sealed.read_bytes()[:-7])
    wrong_key = {**env, "SALES_PLATFORM_ENCRYPTION_KEY": generate_key()}
    for source, environment in ((truncated, env), (sealed, wrong_key)):
        target = tmp_path / f"never-{source.stem}.csv"
        bad = cli(["decrypt", "--file", str(source), "--out", str(target)], environment, cwd=tmp_path)
        assert bad.returncode == 2, bad.stderr
        assert len(lines(bad.stderr)) == 1 and bad.stderr.startswith(
            f"sales-platform decrypt: error: cannot decrypt {source}: ")
        assert "nothing was written" in bad.stderr
        assert not target.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --- failed CLI runs raise the alert; output is quiet ----------------------------------------------

@pytest.mark.slow
def test_failed_cli_run_writes_an_alert_and_one_line_per_failed_step(env):
    env = {**env, "SALES_PLATFORM_SETTLE_S": "0"}
    assert cli(["generate", "--days", "1", "--rows-per-day", "20"], env).returncode == 0
    catalogue = Path(env["SALES_PLATFORM_DATA_DIR"]) / "catalogue" / "products.csv"
    catalogue.write_text("not,a,catalogue\n1,2,3\n")  # products_json cannot read it
    result = cli(["run", "--days", "1"], env)
    assert result.returncode == 1
    assert "[1/4] products_job: FAILED" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "Stack Trace" not in result.stderr  # the console shows the first line of each message
    assert "STEP_FAILURE - Execution of step \"products_json\" failed. (full error in the run's " \
        "event log)" in result.stderr
    alerts = Path(env["SALES_PLATFORM_DATA_DIR"]) / "alerts" / "run_failures.jsonl"
    import json

    entries = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [e["job_name"] for e in entries] == ["products_job"]
    assert entries[0]["run_id"] in result.stdout
    assert [s["step"] for s in entries[0]["failed_steps"]] == ["products_json"]
    assert f"alert written to {alerts}" in result.stderr


@pytest.mark.slow
def test_demo_prints_no_beta_or_preview_warning_and_the_key_warning_once(env):
    result = cli(["demo", "--days", "1", "--rows-per-day", "30"], {**env, "SALES_PLATFORM_SETTLE_S": "0"})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "BetaWarning" not in output and "PreviewWarning" not in output
    assert "currently in beta" not in output and "currently in preview" not in output
    assert output.count("SALES_PLATFORM_ENCRYPTION_KEY is not set") == 1
    assert "[3/4] daily_sales_job: succeeded" in result.stdout


# --- per-partition truth in a range run ------------------------------------------------------------

def test_each_day_of_a_range_run_reports_its_own_numbers(data_dir, key, tmp_path):
    import dagster as dg

    from sales_platform_tests.helpers import (
        PRODUCTS,
        SALES_CHAIN,
        all_assets,
        materialize,
        resources_for,
        write_catalogue,
    )
    from sales_platform_tests.helpers import write_csv as write_rows

    products = ["P1", "P2", "P3"]
    write_catalogue(data_dir, products)
    plan = {"2024-03-01": 2, "2024-03-02": 5, "2024-03-03": 3}  # rows per day, all valid
    rows = [[f"T{day}-{n}", f"C{n}", products[n % len(products)], "1", f"{day}T10:00:{n:02d}"]
            for day, count in plan.items() for n in range(count)]
    write_rows(data_dir / "incoming" / "march.csv", rows)
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, settle_s=0)
    instance = dg.DagsterInstance.ephemeral()
    materialize(resources, PRODUCTS, instance=instance)
    days = sorted(plan)
    dg.materialize(
        all_assets(),
        selection=[*SALES_CHAIN, "agg_sales_daily", "agg_sales_by_product"], resources=resources,
        instance=instance, tags={"dagster/asset_partition_range_start": days[0],
                                 "dagster/asset_partition_range_end": days[-1]})

    def latest(asset: str, day: str) -> dict:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    distinct_products = {day: len({r[2] for r in rows if r[4].startswith(day)}) for day in days}
    assert {d: latest("sales", d)["dagster/row_count"] for d in days} == plan
    assert {d: latest("sales", d)["inserted"] for d in days} == plan
    assert {d: latest("agg_sales_daily", d)["days_written"] for d in days} == dict.fromkeys(days, 1)
    assert {d: latest("agg_sales_by_product", d)["rows_written"] for d in days} == distinct_products


def test_api_ca_bundle_must_exist(env, tmp_path):
    result = cli(["check", "--offline"], {**env, "SALES_PLATFORM_API_URL": "https://api.example.test",
                                          "SALES_PLATFORM_API_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert result.returncode == 2
    assert lines(result.stderr) == [f"sales-platform: configuration: SALES_PLATFORM_API_CA_BUNDLE: "
                                    f"{tmp_path / 'missing.pem'} does not exist or is not a file (a PEM "
                                    "file of the CA that signs the API's certificate)"]


def test_generate_out_leaves_an_existing_catalogue_alone(env, tmp_path):
    assert cli(["generate", "--days", "1", "--rows-per-day", "5"], env).returncode == 0
    catalogue = Path(env["SALES_PLATFORM_DATA_DIR"]) / "catalogue" / "products.csv"
    before = catalogue.read_bytes()
    result = cli(["generate", "--start", "2024-03-01", "--days", "1", "--rows-per-day", "5",
                  "--out", str(tmp_path / "march.csv")], env)
    assert result.returncode == 0 and catalogue.read_bytes() == before


def test_replaying_an_unchanged_file_says_so_at_once(env, tmp_path):
    incoming = Path(env["SALES_PLATFORM_DATA_DIR"]) / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "semi.csv").write_text("transaction_id;customer_id\nT1;C1\n")
    env = {**env, "SALES_PLATFORM_SETTLE_S": "0"}
    cli(["run", "--first", "2024-01-01", "--last", "2024-01-01"], env)  # lands it: quarantined
    quarantine = Path(env["SALES_PLATFORM_DATA_DIR"]) / "quarantine"
    (kept,) = [p.name for p in quarantine.iterdir() if not p.name.endswith(".reason.txt")]
    result = cli(["replay", kept], env)
    assert result.returncode == 0, result.stderr
    assert "semi.csv: UNCHANGED since it was quarantined (semi.csv: wrong delimiter" in result.stdout
    assert (incoming / "semi.csv").exists()


def test_a_missing_unixodbc_is_named_as_the_cause(monkeypatch):
    """pyodbc installed without the system's driver manager: the hint names unixODBC and the
    variable the user set, not a driver variable they never touched."""
    import builtins

    from sales_platform.core import preflight

    real_import = builtins.__import__

    def no_libodbc(name, *args, **kwargs):
        if name == "pyodbc":
            raise ImportError("libodbc.so.2: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_libodbc)
    monkeypatch.delenv("SALES_PLATFORM_DB_URL", raising=False)
    monkeypatch.setenv("SALES_PLATFORM_MSSQL_HOST", "sql.example.internal")
    (problem,) = preflight.check_sqlserver_driver()
    assert problem.variable == "SALES_PLATFORM_MSSQL_HOST"
    assert "libodbc.so.2" in problem.message and "apt-get install unixodbc" in problem.message
