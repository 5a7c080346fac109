"""File names reach logs, reason files, the ledger and terminals only escaped: a name with a control
or format character is quarantined (never landed) and shown as \\xNN / \\uNNNN."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sales_platform.core.blob_dropzone import scan_blobs
from sales_platform.core.intake import name_kind, printable_name
from sales_platform_tests.integrity import Harness
from sales_platform_tests.oracle import csv_bytes

ROWS = [["T1", "C1", "P1", "125", "2024-03-01T10:00:00"]]
HOSTILE = ["shop\nERROR forged line.csv", "\x1b[2Jclear.csv", "x\u202evsc.csv", "a\u200bb.csv",
           "p\u2029q.csv", "tab\there.csv"]
UNSHOWN = "\n\r\t\x1b\u202e\u200b\u2029"


@pytest.mark.parametrize("name", HOSTILE)
def test_the_shared_rule_refuses_control_and_format_characters(name):
    kind, reason = name_kind(name)
    assert kind == "unsafe" and reason
    assert not any(ch in reason for ch in UNSHOWN)
    assert not any(ch in printable_name(name) for ch in UNSHOWN)


def test_a_name_longer_than_the_file_system_allows_is_refused():
    kind, reason = name_kind("\u5b57" * 96 + ".csv")  # 96 characters, 292 bytes
    assert kind == "unsafe" and "bytes" in reason


def test_a_folder_drop_with_a_newline_in_its_name_is_quarantined_escaped(
        data_dir: Path, key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    harness = Harness(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    name = "shop\nERROR forged line.csv"
    (harness.incoming / name).write_bytes(csv_bytes(ROWS))
    with caplog.at_level(logging.INFO):
        harness.land()
    assert list(harness.incoming.iterdir()) == []
    reasons = list((data_dir / "quarantine").glob("*.reason.txt"))
    assert len(reasons) == 1
    lines = reasons[0].read_text().splitlines()
    assert len(lines) == 2 and lines[0] == "file: shop\\x0aERROR forged line.csv", lines
    for record in caplog.records:
        assert not any(ch in record.getMessage() for ch in UNSHOWN), record.getMessage()


class _Blob:
    def __init__(self, name: str) -> None:
        from datetime import UTC, datetime

        self.name, self.etag, self.size = name, '"e1"', 10
        self.last_modified = datetime(2024, 1, 1, tzinfo=UTC)


class _Container:
    def __init__(self, names: list[str]) -> None:
        self.blobs = [_Blob(n) for n in names]

    def list_blobs(self, prefix: str) -> list[_Blob]:
        return self.blobs


def test_blob_drop_names_are_shown_escaped():
    names = [f"incoming/{n}" for n in HOSTILE] + ["incoming/sub\n/x.csv"]
    drops = scan_blobs(_Container(names), "incoming/", settle_s=0)
    assert {d.kind for d in drops[:-1]} == {"unsafe"} and drops[-1].kind == "skip"
    for drop in drops:
        assert not any(ch in drop.file_name + (drop.reason or "") for ch in UNSHOWN), drop
