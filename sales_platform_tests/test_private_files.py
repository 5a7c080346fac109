"""Files the platform writes are private (folders 0700, files 0600) and never written through a link
it did not make: umask at start, linked data folders refused, O_EXCL | O_NOFOLLOW in shared folders,
the plaintext spool cleared at the next start."""

from __future__ import annotations

import os
import stat
from datetime import date, datetime
from pathlib import Path

import pytest

from sales_platform.cli import main
from sales_platform.core import settings
from sales_platform.core.intake import Intake
from sales_platform.core.keyset import KEYSET_FILE, load_or_create
from sales_platform.core.landing import Lander
from sales_platform.core.private_files import secure_start
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.engine import make_engine
from sales_platform_tests.helpers import write_csv


@pytest.fixture
def loose_umask():
    """The umask a shell usually has (022), restored afterwards."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def env(tmp_path: Path, monkeypatch, key) -> Path:
    for name in list(os.environ):
        if name.startswith("SALES_PLATFORM_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv(settings.DATA_DIR, str(data))
    monkeypatch.setenv(settings.ENCRYPTION_KEY, key)
    return data


def _intake(data: Path, key: str) -> Intake:
    from sales_platform.core.crypto import parse_master_key

    areas = DataAreas(data)
    areas.ensure()
    keyring = load_or_create(data / KEYSET_FILE, parse_master_key(key)).keyring()
    engine = make_engine(f"sqlite:///{data / 'warehouse.db'}")
    return Intake(areas, engine, keyring, SchemaContract(), QualityRules(start_date=date(2024, 1, 1)),
                  code_version="test", now=datetime(2024, 6, 1), settle_s=0)


def test_everything_written_after_start_is_private(env, key, loose_umask):
    assert main(["generate", "--start", "2024-03-01", "--days", "1", "--rows-per-day", "5"]) == 0
    (env / "incoming" / "bad.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00")  # quarantined, original kept
    _intake(env, key).run()
    assert list((env / "quarantine").iterdir()) and list((env / "archive").iterdir())
    loose = [f"{p.relative_to(env)} {stat.S_IMODE(p.stat().st_mode):04o}" for p in [env, *env.rglob("*")]
             if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []


def test_an_older_data_dir_is_tightened_at_start(env, loose_umask):
    (env / "archive").mkdir(parents=True, mode=0o755)
    (env / "warehouse.db").write_bytes(b"")
    os.chmod(env / "warehouse.db", 0o644)
    secure_start(env)
    assert stat.S_IMODE((env / "archive").stat().st_mode) == 0o700
    assert stat.S_IMODE((env / "warehouse.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("folder", ["quarantine", "staging/spool", "archive"])
def test_a_linked_data_folder_is_refused_at_start(env, tmp_path, capsys, folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (env / folder).parent.mkdir(parents=True, exist_ok=True)
    (env / folder).symlink_to(elsewhere)
    assert main(["check", "--offline"]) == 2
    err = capsys.readouterr().err
    assert f"{env / folder} is a symbolic link" in err and "remove the link" in err
    with pytest.raises(settings.SettingError, match="symbolic link"):
        secure_start(env)
    assert list(elsewhere.iterdir()) == []


def test_a_planted_partial_archive_link_is_not_followed(env, key, tmp_path):
    intake = _intake(env, key)
    write_csv(env / "incoming" / "a.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]])
    import hashlib

    sha = hashlib.sha256((env / "incoming" / "a.csv").read_bytes()).hexdigest()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (env / "archive" / f"{sha}.csv.sealed.partial").symlink_to(victim)
    outcomes = intake.run()
    assert outcomes[0].status == "landed"
    assert victim.read_text() == "precious"
    assert (env / "archive" / f"{sha}.csv.sealed").is_file()


def test_spool_copies_are_private_and_a_dead_processs_copy_goes_at_the_next_start(env, key, monkeypatch,
                                                                                   loose_umask):
    intake = _intake(env, key)
    leftover = env / "staging" / "spool" / "123-dead.csv"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text("transaction_id,customer_id\nT1,C-PLAIN\n")
    os.chmod(leftover, 0o644)  # what a kill -9 left under the old code
    seen = []
    land = Lander.land

    def spying(self, copy, *args, **kwargs):
        seen.append((stat.S_IMODE(copy.stat().st_mode), stat.S_IMODE(copy.parent.stat().st_mode),
                     leftover.exists()))
        return land(self, copy, *args, **kwargs)

    monkeypatch.setattr(Lander, "land", spying)
    write_csv(env / "incoming" / "a.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"]])
    intake.run()
    assert seen == [(0o600, 0o700, False)]
    assert not any((env / "staging" / "spool").iterdir())
