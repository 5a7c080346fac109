"""The blob drop zone on the real Azurite emulator: same exactly-once, settle and versioning rules
as the folder (name + sha256 per version, etag per upload), landed blobs moved to the archive
prefix, and a blob overwritten while being read left for the next tick, never lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg
import pytest
from azure.storage.blob import ContainerClient, StorageStreamDownloader

from sales_platform.core import settings
from sales_platform.core.blob_dropzone import BlobIntake
from sales_platform.core.intake import Intake
from sales_platform.core.quality import QualityRules
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas
from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.ledger import ledger_rows
from sales_platform.defs.ingestion.sensors import blob_dropzone_sensor
from sales_platform.resources.azure_blob import AzureBlobStorage
from sales_platform.resources.blob import LocalBlobStorage
from sales_platform_tests.helpers import all_assets
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import Drop, csv_bytes, sha256_hex

NOW = datetime(2024, 6, 1)
BLOCK = 64 * 1024  # the smallest block: a few hundred rows make a multi-request download


def rows(prefix: str, n: int, day: str = "2024-03-01") -> list[list[str]]:
    return [[f"{prefix}{i}", f"C{i % 7}", f"P{i % 5}", str(1 + i % 9), f"{day}T10:{i % 60:02d}:00"]
            for i in range(n)]


@pytest.fixture
def container() -> str:
    return f"drop-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def storage(azurite, container: str) -> Iterator[AzureBlobStorage]:
    blob = AzureBlobStorage(container=container, prefix="sales", block_size=BLOCK,
                            connection_string=azurite.connection_string)
    yield blob
    blob.close()


@pytest.fixture
def raw(azurite, container: str) -> ContainerClient:
    """The SDK's own view of the container: the uploader's side."""
    return ContainerClient.from_connection_string(azurite.connection_string, container)


def upload(raw: ContainerClient, name: str, content: bytes) -> str:
    return raw.get_blob_client(f"sales/incoming/{name}").upload_blob(content, overwrite=True)["etag"]


def names(raw: ContainerClient) -> list[str]:
    return sorted(raw.list_blob_names(name_starts_with="sales/"))


@pytest.fixture
def blob_intake(data_dir, keyring, tmp_path, storage) -> BlobIntake:
    areas = DataAreas(data_dir)
    areas.ensure()
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    intake = Intake(areas, engine, keyring, SchemaContract(), QualityRules(start_date=date(2024, 1, 1)),
                    code_version="test", now=NOW, settle_s=0)
    return BlobIntake(intake, storage, "incoming")


def statuses(blob_intake: BlobIntake) -> list[tuple[str, str, str]]:
    return [(r["file_name"], r["sha256"], r["status"]) for r in ledger_rows(blob_intake.intake.engine)]


def test_a_duplicate_blob_is_moved_to_the_archive_prefix_like_a_landed_one(blob_intake, raw, storage):
    """A blob recorded as skipped_duplicate leaves the drop zone (moved to the archive prefix under
    its content and name), so the next tick does not download it again."""
    content = csv_bytes(rows("D", 5))
    storage.list_names()  # creates the container
    upload(raw, "a.csv", content)
    upload(raw, "b.csv", content)  # the same bytes under another name: a duplicate
    assert sorted(o.status for o in blob_intake.run()) == ["landed", "skipped_duplicate"]
    archived = f"sales/incoming-archive/{sha256_hex(content)}/"
    assert names(raw) == [f"{archived}a.csv", f"{archived}b.csv"]
    assert blob_intake.run() == []

def test_same_content_again_is_a_duplicate_new_content_a_new_version(blob_intake, raw, storage):
    first = csv_bytes(rows("T", 20))
    storage.list_names()  # creates the container
    upload(raw, "sales.csv", first)
    [outcome] = blob_intake.run()
    assert (outcome.status, outcome.sha256, outcome.rows_landed) == ("landed", sha256_hex(first), 20)
    assert names(raw) == [f"sales/incoming-archive/{sha256_hex(first)}/sales.csv"]
    assert raw.get_blob_client(names(raw)[0]).download_blob().readall() == first
    assert blob_intake.run() == []  # nothing left: landed exactly once

    upload(raw, "sales.csv", first)  # the same bytes uploaded again
    [again] = blob_intake.run()
    assert again.status == "skipped_duplicate" and again.rows_landed == 0

    second = csv_bytes(rows("T", 25))  # new content under the same name
    upload(raw, "sales.csv", second)
    [new] = blob_intake.run()
    assert (new.status, new.sha256, new.rows_landed) == ("landed", sha256_hex(second), 25)
    assert statuses(blob_intake) == [("sales.csv", sha256_hex(first), "superseded"),
                                     ("sales.csv", sha256_hex(second), "landed")]
    assert not [n for n in names(raw) if n.startswith("sales/incoming/")]


def test_unsettled_temp_and_nested_blobs_are_left_alone(blob_intake, raw, storage):
    storage.list_names()
    content = csv_bytes(rows("T", 3))
    upload(raw, "a.csv.tmp", content)
    upload(raw, ".hidden.csv", content)
    upload(raw, "sub/b.csv", content)
    upload(raw, "fresh.csv", content)
    blob_intake.intake.settle_s = 3600  # fresh.csv was modified just now: not settled
    [waiting] = blob_intake.run()
    assert waiting.file_name == "fresh.csv" and waiting.status == "waiting"
    assert statuses(blob_intake) == []
    assert names(raw) == sorted(f"sales/incoming/{n}" for n in
                                ("a.csv.tmp", ".hidden.csv", "sub/b.csv", "fresh.csv"))


def test_bad_blobs_move_to_quarantine_with_a_reason(blob_intake, raw, storage):
    storage.list_names()
    upload(raw, "notes.txt", b"hello")
    upload(raw, "bad.csv", b"transaction_id;customer_id\nT1;C1\n")
    outcomes = {o.file_name: o for o in blob_intake.run()}
    assert outcomes["notes.txt"].status == "quarantined" and "not a .csv" in outcomes["notes.txt"].error
    assert outcomes["bad.csv"].status == "quarantined" and "wrong delimiter" in outcomes["bad.csv"].error
    left = names(raw)
    assert not [n for n in left if n.startswith("sales/incoming/")]
    assert sorted(n.rsplit("/", 1)[1] for n in left if n.startswith("sales/incoming-quarantine/")) \
        == ["bad.csv", "notes.txt"]


def overwrite_during_read(monkeypatch, raw: ContainerClient, name: str, content: bytes) -> list[int]:
    """Upload ``content`` over the blob right after the first range of its download arrived."""
    original = StorageStreamDownloader.chunks
    done: list[int] = []

    def chunks(self):
        for number, chunk in enumerate(original(self)):
            yield chunk
            if number == 0 and not done:
                upload(raw, name, content)
                done.append(1)

    monkeypatch.setattr(StorageStreamDownloader, "chunks", chunks)
    return done


def test_blob_overwritten_while_read_is_left_then_lands_with_new_content(blob_intake, raw, storage,
                                                                         monkeypatch):
    storage.list_names()
    old, new = csv_bytes(rows("OLD", 6000)), csv_bytes(rows("NEW", 6100))
    assert len(old) > 2 * BLOCK  # several range requests
    upload(raw, "big.csv", old)
    overwritten = overwrite_during_read(monkeypatch, raw, "big.csv", new)
    [first] = blob_intake.run()
    # the If-Match on the next range request refused the new content mid-download
    assert overwritten and first.status == "waiting" and "overwritten or removed" in first.error
    assert statuses(blob_intake) == []  # nothing landed, nothing recorded
    assert raw.get_blob_client("sales/incoming/big.csv").download_blob().readall() == new

    [second] = blob_intake.run()  # the next tick
    assert (second.status, second.sha256, second.rows_landed) == ("landed", sha256_hex(new), 6100)
    assert statuses(blob_intake) == [("big.csv", sha256_hex(new), "landed")]
    assert names(raw) == [f"sales/incoming-archive/{sha256_hex(new)}/big.csv"]


def test_overwrite_after_read_is_not_deleted(blob_intake, raw, storage, monkeypatch):
    """Landed version 1, but version 2 was uploaded before the move: version 2 stays and lands."""
    storage.list_names()
    v1, v2 = csv_bytes(rows("A", 5)), csv_bytes(rows("B", 6))
    upload(raw, "s.csv", v1)
    take = blob_intake.intake.take

    def take_then_overwrite(path):
        outcome = take(path)
        upload(raw, "s.csv", v2)
        return outcome

    monkeypatch.setattr(blob_intake.intake, "take", take_then_overwrite)
    [landed] = blob_intake.run()
    assert landed.sha256 == sha256_hex(v1) and landed.status == "landed"
    assert raw.get_blob_client("sales/incoming/s.csv").download_blob().readall() == v2
    monkeypatch.undo()
    [later] = blob_intake.run()
    assert (later.status, later.sha256) == ("landed", sha256_hex(v2))


def test_sensor_runs_land_the_blob_once_and_it_loads(azurite, data_dir, key, tmp_path, container, raw,
                                                     monkeypatch):
    """Through the wiring: the sensor asks for one run per upload, the run lands it, the loads
    give exactly what the oracle computes from the uploaded bytes."""
    monkeypatch.setenv(settings.BLOB_INCOMING_PREFIX, "incoming/")
    harness = Harness(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    harness.resources["blob"] = AzureBlobStorage(container=container, prefix="sales",
                                                 connection_string=azurite.connection_string)
    harness.resources["blob"].list_names()
    content = csv_bytes(rows("S", 40, "2024-03-01")[:25] + rows("U", 15, "2024-03-02")
                        + [["BAD1", "C1", "P1", "x", "2024-03-01T10:00:00"]])
    upload(raw, "drop.csv", content)
    harness.drops.append(Drop("drop.csv", content))

    def tick() -> list[dg.RunRequest]:
        with dg.build_sensor_context(instance=harness.instance, resources=harness.resources) as context:
            return list(blob_dropzone_sensor(context).run_requests or [])

    [request] = tick()
    assert tick()[0].run_key == request.run_key  # the same upload: the same run
    dg.materialize(all_assets(), selection=["landed_files"], resources=harness.resources,
                   instance=harness.instance, run_config=request.run_config, tags=request.tags)
    assert tick() == []
    azure = harness.resources["blob"]
    # the loads never read the drop zone; the harness drives them with the default local storage
    harness.resources["blob"] = LocalBlobStorage(root=str(data_dir / "blob"))
    harness.load_requested()
    harness.resources["blob"] = azure
    expected = assert_matches_oracle(harness)
    assert len(expected.sales) == 40
    [entry] = harness.ledger().values()
    assert (entry["sha256"], entry["status"]) == (sha256_hex(content), "loaded")

    upload(raw, "drop.csv", content)  # the same file uploaded again: a new run, a duplicate
    [again] = tick()
    assert again.run_key != request.run_key
    dg.materialize(all_assets(), selection=["landed_files"], resources=harness.resources,
                   instance=harness.instance, run_config=again.run_config, tags=again.tags)
    assert harness.events("drop.csv").count("skipped_duplicate") == 1
    assert len(harness.sales_rows()) == 40


def test_sensor_skips_without_a_prefix(monkeypatch, data_dir, key, tmp_path):
    monkeypatch.delenv(settings.BLOB_INCOMING_PREFIX, raising=False)
    harness = Harness(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    with dg.build_sensor_context(instance=harness.instance, resources=harness.resources) as context:
        result = blob_dropzone_sensor(context)
    assert isinstance(result, dg.SkipReason) and settings.BLOB_INCOMING_PREFIX in result.skip_message
