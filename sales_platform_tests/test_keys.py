"""Keys outside demo mode: a missing master key is a configuration error, the demo key file is
refused unless this account alone owns and reads it, and a production keyset's first key is random,
so after rotate-keys nothing (not the tokens in Dagster's run history) opens with the master key
alone. Demo mode (make run, make ui, the tests) stays explicit and warned."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import dagster as dg
import pytest

from sales_platform.cli import main
from sales_platform.core import settings
from sales_platform.core.crypto import (
    CryptoError,
    Keyring,
    Tokenizer,
    generate_key,
    key_id_of_token,
    parse_master_key,
)
from sales_platform.core.keyset import KEYSET_FILE, load_keyset
from sales_platform.resources.platform import PlatformResource
from sales_platform_tests.helpers import SALES_CHAIN, materialize, resources_for, write_csv

TOKEN = re.compile(r"(?<![A-Za-z0-9_+/=-])A[A-Za-z0-9_-]{27,}(?![A-Za-z0-9_+/=-])")


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Path:
    """No platform setting from the developer's shell; not in demo mode."""
    for name in list(os.environ):
        if name.startswith("SALES_PLATFORM_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv(settings.DATA_DIR, str(data))
    return data


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    status = main(args)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_without_a_master_key_check_and_run_refuse_outside_demo_mode(env, capsys):
    status, out, err = _run(["check", "--offline"], capsys)
    assert status == 2 and "configuration OK" not in out
    assert "configuration: SALES_PLATFORM_ENCRYPTION_KEY: not set: production needs the master key" in err
    assert "SALES_PLATFORM_DEMO=1" in err
    with pytest.raises(settings.SettingError, match="SALES_PLATFORM_ENCRYPTION_KEY is not set"):
        PlatformResource(data_dir=str(env)).prepare()
    assert not (env / settings.DEMO_KEY_FILE).exists()


def test_demo_mode_is_explicit_and_warned(env, capsys, monkeypatch):
    monkeypatch.setenv(settings.DEMO, "1")
    PlatformResource(data_dir=str(env), demo=True).prepare()
    key = env / settings.DEMO_KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    status, out, _ = _run(["check", "--offline"], capsys)
    assert status == 0 and "configuration OK, with 1 warning(s)" in out
    assert f"warning: SALES_PLATFORM_DEMO: demo mode: the demo key {key}" in out


@pytest.mark.parametrize("attack", ["world-readable", "foreign owner", "symlink"])
def test_a_planted_demo_key_is_refused_naming_the_file_and_the_fix(env, capsys, monkeypatch, tmp_path,
                                                                   attack):
    monkeypatch.setenv(settings.DEMO, "1")
    key = env / settings.DEMO_KEY_FILE
    key.parent.mkdir(parents=True)
    planted = tmp_path / "known.key"
    planted.write_text(generate_key())
    if attack == "symlink":
        key.symlink_to(planted)
        fix = "symbolic link"
    else:
        key.write_text(generate_key())
        key.chmod(0o644 if attack == "world-readable" else 0o600)
        fix = "mode 0644" if attack == "world-readable" else "another account made it"
    if attack == "foreign owner":
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)  # the file is then not this account's
    status, out, err = _run(["check", "--offline"], capsys)
    assert status == 2 and "configuration OK" not in out
    assert f"configuration: SALES_PLATFORM_DEMO: the demo key {key}" in err and "remove it" in err
    assert fix in err or attack == "symlink" and "not a regular file" in err
    with pytest.raises(settings.SettingError, match=re.escape(str(key))):
        PlatformResource(data_dir=str(env), demo=True).prepare()
    status, _, err = _run(["demo", "--days", "1"], capsys)
    assert status == 2 and str(key) in err
    assert not (env / "incoming").exists() or not any((env / "incoming").iterdir())


def test_after_rotation_the_master_key_alone_opens_nothing_in_the_run_history(env, capsys, monkeypatch,
                                                                             tmp_path):
    key = generate_key()
    monkeypatch.setenv(settings.ENCRYPTION_KEY, key)
    db = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv(settings.DB_URL, db)
    write_csv(env / "incoming" / "day.csv", [["T1", "C-SECRET-1", "P1", "2", "2024-03-01T10:00:00"],
                                             ["T2", "C-SECRET-2", "P1", "1", "2024-03-01T11:00:00"]])
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(env, db, key, demo=False)  # production: no demo mode
    run = materialize(resources, SALES_CHAIN, partition_key="2024-03-01", instance=instance)
    history = " ".join(str(entry) for entry in instance.all_logs(run.run_id))  # the event log
    keyset = load_keyset(env / KEYSET_FILE, parse_master_key(key))
    platform = Tokenizer(keyset.keyring())
    tokens = [t for t in TOKEN.findall(history) if key_id_of_token(t) in platform.keyring.key_ids]
    assert tokens, "the previews should show tokens"
    master_only = Tokenizer(Keyring.from_secrets(key))
    assert {platform.decrypt(t) for t in tokens} >= {"C-SECRET-1", "C-SECRET-2"}

    def opens_with_master_alone(token: str) -> bool:
        try:
            master_only.decrypt(token)
        except CryptoError:
            return False
        return True

    assert not any(map(opens_with_master_alone, tokens))
    status, out, err = _run(["rotate-keys"], capsys)
    assert status == 0, err
    assert "derived from the master key" not in err
    assert not any(map(opens_with_master_alone, tokens))
