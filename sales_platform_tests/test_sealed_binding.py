"""Sealed files are bound to their identity: another file's bytes put in a file's place do not
decrypt there (the archive, staging fragments, the CLI), and files sealed before the binding are
opened only by the rotation, which re-seals them bound (once; afterwards one is refused)."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

import pytest

from sales_platform.cli import main
from sales_platform.core.crypto import (
    SEAL_AD,
    UNBOUND,
    CryptoError,
    open_platform_bytes,
    seal_bytes,
)
from sales_platform.core.intake import Intake
from sales_platform.core.keyset import KEYSET_FILE, load_or_create
from sales_platform.core.pipeline import clean_day
from sales_platform.core.quality import QualityRules
from sales_platform.core.rotation import RotationError, rotate_keys, sealed_key_id
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas, read_sealed_table
from sales_platform.core.warehouse.engine import make_engine
from sales_platform_tests.helpers import write_csv

NOW = datetime(2024, 6, 1)
DAY = "2024-03-01"


@pytest.fixture
def landed(data_dir: Path, key: str, tmp_path: Path, monkeypatch):
    """Two files landed by the real intake, with the deployment's keyset; the CLI sees the same."""
    from sales_platform.core.crypto import parse_master_key

    master = parse_master_key(key)
    keyring = load_or_create(data_dir / KEYSET_FILE, master, files_bound=True).keyring()
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    intake = Intake(areas, engine, keyring, SchemaContract(), QualityRules(start_date=date(2024, 1, 1)),
                    code_version="test", now=NOW, settle_s=0)
    write_csv(data_dir / "incoming" / "a.csv", [["TA", "C-A", "P1", "1", f"{DAY}T10:00:00"]])
    write_csv(data_dir / "incoming" / "b.csv", [["TB", "C-B", "P2", "2", f"{DAY}T11:00:00"],
                                                ["TB2", "C-B", "P2", "3", f"{DAY}T12:00:00"]])
    outcomes = {o.file_name: o for o in intake.run()}
    monkeypatch.setenv("SALES_PLATFORM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SALES_PLATFORM_ENCRYPTION_KEY", key)
    monkeypatch.delenv("SALES_PLATFORM_ENCRYPTION_KEY_FILE", raising=False)
    monkeypatch.delenv("SALES_PLATFORM_KEYSET_FILE", raising=False)
    return areas, keyring, engine, {n: o.sha256 for n, o in outcomes.items()}


def test_an_archived_file_replaced_by_another_ones_bytes_is_refused(landed, tmp_path, capsys):
    areas, keyring, _, shas = landed
    a, b = (areas.archive / f"{shas[n]}.csv.sealed" for n in ("a.csv", "b.csv"))
    out = tmp_path / "out.csv"
    assert main(["decrypt", "--file", str(a), "--out", str(out)]) == 0
    assert b"C-A" in out.read_bytes()
    shutil.copyfile(b, a)  # the attack: B's bytes under A's content address
    out.unlink()
    assert main(["decrypt", "--file", str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"archive/{a.name} does not decrypt as itself" in err and "another file's bytes" in err
    assert not out.exists()


def test_a_staging_fragment_swapped_for_another_days_or_files_is_refused(landed):
    areas, keyring, _, _ = landed
    fragments = areas.fragments("landed", DAY)
    assert len(fragments) == 2
    first, second = fragments
    assert read_sealed_table(first, keyring).num_rows in (1, 2)
    shutil.copyfile(second, first)
    with pytest.raises(CryptoError, match="does not decrypt as itself"):
        clean_day(areas, keyring, DAY, QualityRules(start_date=date(2024, 1, 1)), None)


def test_unbound_files_are_refused_until_the_rotation_binds_them_once(landed, key):
    areas, keyring, engine, shas = landed
    archived = areas.archive / f"{shas['a.csv']}.csv.sealed"
    plain = open_platform_bytes(keyring, archived.read_bytes(), f"archive/{archived.name}")
    archived.write_bytes(seal_bytes(keyring.active, plain, SEAL_AD))  # as sealed before the binding
    with pytest.raises(CryptoError, match="sealed without its name; it predates the name binding: "
                                          "run `sales-platform rotate-keys`"):
        open_platform_bytes(keyring, archived.read_bytes(), f"archive/{archived.name}")
    assert sealed_key_id(archived, keyring) == UNBOUND

    # a deployment whose files are all bound refuses one (it was put there) ...
    with pytest.raises(RotationError, match="already bound to its name"):
        rotate_keys(engine, keyring, areas, accept_unbound=False)
    # ... the one-time upgrade re-seals it bound, under the same key
    report = rotate_keys(engine, keyring, areas, accept_unbound=True)
    assert report.sealed_files["archive"] == 1
    assert sealed_key_id(archived, keyring) == keyring.active.key_id
    assert open_platform_bytes(keyring, archived.read_bytes(), f"archive/{archived.name}") == plain


def test_rotate_keys_records_that_every_file_is_bound(landed, key, capsys, monkeypatch):
    """After the CLI's rotation the keyset says so: a later unbound file stops the next rotation."""
    areas, keyring, _, shas = landed
    monkeypatch.setenv("SALES_PLATFORM_DB_URL", f"sqlite:///{areas.root / 'rot.db'}")
    archived = areas.archive / f"{shas['b.csv']}.csv.sealed"
    plain = open_platform_bytes(keyring, archived.read_bytes(), f"archive/{archived.name}")
    assert main(["rotate-keys"]) == 0
    archived.write_bytes(seal_bytes(keyring.active, plain, SEAL_AD))  # planted afterwards
    assert main(["rotate-keys"]) == 1
    assert "already bound to its name" in capsys.readouterr().err
