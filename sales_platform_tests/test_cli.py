"""The CLI end to end on temp dirs: generate (deterministic), run, decrypt."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from sales_platform.core.crypto import generate_key
from sales_platform.core.warehouse.tables import sales


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sales_platform.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_generate_is_deterministic_for_a_seed(tmp_path):
    runs = []
    for name in ("a", "b"):
        env = {"SALES_PLATFORM_DATA_DIR": str(tmp_path / name)}
        result = cli(["generate", "--days", "2", "--rows-per-day", "500", "--seed", "3",
                      "--defect-rate", "0.05"], env)
        assert result.returncode == 0, result.stderr
        runs.append(digest(tmp_path / name / "incoming"))
    assert runs[0] == runs[1] and len(runs[0]) == 2
    other = cli(["generate", "--days", "2", "--rows-per-day", "500", "--seed", "4"],
                {"SALES_PLATFORM_DATA_DIR": str(tmp_path / "c")})
    assert other.returncode == 0 and digest(tmp_path / "c" / "incoming") != runs[0]


@pytest.mark.slow
def test_demo_runs_the_main_job_and_decrypt_returns_plaintext(tmp_path):
    key = generate_key()
    env = {"SALES_PLATFORM_DATA_DIR": str(tmp_path / "data"), "SALES_PLATFORM_ENCRYPTION_KEY": key,
           "DAGSTER_HOME": str(tmp_path / "home")}
    result = cli(["demo", "--days", "2", "--rows-per-day", "300"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "daily_sales_job: succeeded" in result.stdout
    assert "rows loaded into sales:" in result.stdout
    assert key not in result.stdout + result.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}")
    with engine.connect() as conn:
        token = conn.execute(select(sales.c.customer_id).limit(1)).scalar_one()
    decrypted = cli(["decrypt", token], env)
    assert decrypted.returncode == 0 and decrypted.stdout.strip().split("\t")[1].startswith("C")
    archived = next((tmp_path / "data" / "archive").glob("*.csv.sealed"))
    out = tmp_path / "restored.csv"
    assert cli(["decrypt", "--file", str(archived), "--out", str(out)], env).returncode == 0
    assert out.read_text().replace('"', "").startswith("transaction_id,customer_id")
    wrong = cli(["decrypt", token], {**env, "SALES_PLATFORM_ENCRYPTION_KEY": generate_key()})
    assert wrong.returncode == 2 and "does not decrypt" in wrong.stderr
    assert "nothing was written" in wrong.stderr
