"""Platform settings: data dir, keys, quality thresholds."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from sales_platform.core import settings
from sales_platform.core.crypto import Keyring, parse_master_key
from sales_platform.core.keyset import KEYSET_FILE, Keyset, load_keyset, load_or_create, read_demo_key
from sales_platform.core.quality import QualityRules
from sales_platform.core.rotation.files import sealed_files
from sales_platform.core.schema import SchemaContract
from sales_platform.core.store import DataAreas

log = logging.getLogger(__name__)
DEMO_KEY_FILE = settings.DEMO_KEY_FILE
_warned_demo_keys: set[Path] = set()


def demo_key(data_dir: Path, create: bool = True) -> str:
    """The demo key under the data dir (demo mode only): made once, 0600, refused if another account
    owns it or could read it."""
    path = data_dir / DEMO_KEY_FILE
    key = read_demo_key(path, create=create)
    if path not in _warned_demo_keys:  # once per process, not once per step or resource use
        _warned_demo_keys.add(path)
        log.warning("%s=1 and %s is not set: using the demo key in %s. Production must set %s.",
                    settings.DEMO, settings.ENCRYPTION_KEY, path, settings.ENCRYPTION_KEY)
    return key


def missing_key_message() -> str:
    return (f"{settings.ENCRYPTION_KEY} is not set: set it (or {settings.ENCRYPTION_KEY_FILE}) to the "
            "master key (make one with: python -c 'from sales_platform.core.crypto import generate_key; "
            f"print(generate_key())'), or {settings.DEMO}=1 for a demo with a key kept under the data dir")


class PlatformResource(dg.ConfigurableResource):
    """Where the platform keeps its files, which keys it uses and how strict its rules are.

    Files are created at one point: ``prepare`` (the data folders, the demo key when no key is
    configured, the keyset on first use), which ``setup_for_execution`` calls when Dagster
    initialises the resource for a run, step or sensor (and ``resources.factory.resolved`` for
    the CLI). The getters (``areas``, ``master_key``, ``keyset``, ``keyring``) only read.
    """

    data_dir: str = Field(description="Root of incoming/, archive/, quarantine/, staging/.")
    encryption_key: str | None = Field(
        default=None, description="Base64 master key wrapping the keyset (SALES_PLATFORM_ENCRYPTION_KEY).")
    encryption_key_file: str | None = Field(
        default=None, description="A file holding the master key (SALES_PLATFORM_ENCRYPTION_KEY_FILE).")
    keyset_file: str | None = Field(
        default=None, description="The wrapped keyset (default <data_dir>/keys/keyset.json).")
    retired_keys: str | None = Field(
        default=None, description="Comma-separated keys of the previous format (read for the migration).")
    demo: bool = Field(
        default=False, description="Demo mode (SALES_PLATFORM_DEMO): without a key, a demo key under "
        "the data dir; a new keyset's first key derived from the master key. Never in production.")
    start_date: str = settings.DEFAULT_START_DATE
    max_quantity: int = 1000
    max_reject_rate: float = Field(
        default=0.2, description="Blocking check: share of rows rejected for quality failures.")
    source_timezone: str = Field(
        default="UTC", description="IANA zone naive timestamps in the files are read in.")
    settle_s: float = Field(default=2.0, description="A drop is taken once unchanged this long.")
    max_columns: int = Field(default=200, description="Wider files are quarantined.")
    max_file_bytes: int = Field(default=20 << 30, description="Larger files are quarantined.")
    day_workers: int = Field(
        default=settings.DEFAULT_DAY_WORKERS, ge=1, le=32,
        description="Days of a range run cleaned and encrypted at once (SALES_PLATFORM_DAY_WORKERS).")
    schema_contract: str | None = Field(
        default=None, description="Path of a JSON schema contract (aliases, policy, sensitive).")
    schema_policy: str | None = Field(
        default=None, description="evolve | freeze | rescue (overrides the contract's policy).")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.prepare()

    def prepare(self) -> None:
        """Create the data folders, the demo key (no key configured) and the keyset if absent.
        Its first version also holds the previous format's keys (the master key and
        SALES_PLATFORM_RETIRED_KEYS) so older data migrates."""
        self.areas.ensure()
        master = self._master_key(create=True)
        retired = [parse_master_key(k) for k in (self.retired_keys or "").split(",") if k.strip()]
        # a new keyset is bound from the start when no sealed file predates it
        fresh = not self.keyset_path.exists() and not sealed_files(self.areas)
        load_or_create(self.keyset_path, master, (master, *retired), files_bound=fresh,
                       derive_first=self.demo)

    @property
    def areas(self) -> DataAreas:
        return DataAreas(Path(self.data_dir).expanduser().resolve())

    def master_key(self) -> bytes:
        """From the setting, else the key file, else (demo only) the key under the data dir."""
        return self._master_key(create=False)

    def _master_key(self, create: bool) -> bytes:
        if self.encryption_key:
            return parse_master_key(self.encryption_key)
        if self.encryption_key_file:
            return parse_master_key(Path(self.encryption_key_file).expanduser().read_text())
        if not self.demo:
            raise settings.SettingError(missing_key_message())
        return parse_master_key(demo_key(self.areas.root, create=create))

    @property
    def keyset_path(self) -> Path:
        return Path(self.keyset_file).expanduser() if self.keyset_file else self.areas.root / KEYSET_FILE

    def keyset(self) -> Keyset:
        """The wrapped keyset (``prepare`` creates it on first use)."""
        if not self.keyset_path.exists():
            raise FileNotFoundError(f"{self.keyset_path}: no keyset yet (PlatformResource.prepare "
                                    "creates it)")
        return load_keyset(self.keyset_path, self.master_key())

    def keyring(self) -> Keyring:
        return self.keyset().keyring()

    def rules(self) -> QualityRules:
        return QualityRules(max_quantity=self.max_quantity, future_tolerance=timedelta(hours=1),
                            start_date=date.fromisoformat(self.start_date),
                            source_timezone=self.source_timezone)

    def intake(self, engine, code_version: str, archive_sink=None):
        """The one way files land (sensor runs, daily job, backfills, CLI share its rules)."""
        from sales_platform.core.intake import Intake

        return Intake(self.areas, engine, self.keyring(), self.contract(), self.rules(),
                      code_version=code_version, archive_sink=archive_sink,
                      settle_s=self.settle_s, max_file_bytes=self.max_file_bytes,
                      max_columns=self.max_columns, max_reject_rate=self.max_reject_rate,
                      batch_files=int(settings.env_number(
                          settings.LANDING_BATCH_FILES, settings.DEFAULT_LANDING_BATCH_FILES, 1,
                          integer=True)))

    def contract(self) -> SchemaContract:
        contract = SchemaContract.from_file(self.schema_contract) if self.schema_contract \
            else SchemaContract()
        if self.schema_policy:
            contract = dataclasses.replace(contract, policy=self.schema_policy)
        return contract
