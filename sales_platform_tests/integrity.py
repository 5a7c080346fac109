"""A test harness that drops files like an operator, drives the real assets and sensors, and reads
the warehouse back in plain values, so tests can compare it with the independent oracle."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
from sqlalchemy import select

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import file_events, file_ledger, sales, sales_rejects
from sales_platform.defs.ingestion.sensors import landed_days_sensor
from sales_platform_tests.helpers import SALES_CHAIN, all_assets, materialize, resources_for
from sales_platform_tests.oracle import Drop, Expected, expected_state

LOAD_CHAIN = [a for a in SALES_CHAIN if a != "sales_rejects"] + ["sales_rejects"]


@dataclass
class Harness:
    data_dir: Path
    db_url: str
    key: str
    platform: dict = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resources = resources_for(self.data_dir, self.db_url, self.key, **self.platform)
        self.engine = cached_engine(self.resources["warehouse"].url())
        self.tokenizer = Tokenizer(Keyring.from_secrets(self.key))
        self.instance = dg.DagsterInstance.ephemeral()

    @property
    def incoming(self) -> Path:
        return self.data_dir / "incoming"

    def drop(self, name: str, content: bytes) -> None:
        """Write under a temp name and rename, as the README tells operators to."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        tmp = self.incoming / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, self.incoming / name)
        self.drops.append(Drop(name, content))

    def land(self) -> dg.ExecuteInProcessResult:
        return materialize(self.resources, ["landed_files"], instance=self.instance)

    def run_day(self, day: str, selection: list[str] | None = None,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return materialize(self.resources, selection or LOAD_CHAIN, day, instance=self.instance,
                           raise_on_error=raise_on_error)

    def load_requested(self, rounds: int = 4) -> list[tuple[str, str]]:
        """Run what the load sensor asks for until it asks for nothing new (bounded). A run key
        is launched once, as the daemon does: a blocked day's request is not retried."""
        ran: list[tuple[str, str]] = []
        launched: set[str] = set()
        for _ in range(rounds):
            context = dg.build_sensor_context(instance=self.instance, resources=self.resources)
            requests = landed_days_sensor(context)
            if isinstance(requests, dg.SkipReason):
                return ran
            new = [r for r in requests if r.run_key not in launched]
            if not new:
                return ran
            for request in new:
                launched.add(request.run_key)
                dg.materialize(all_assets(), selection=LOAD_CHAIN, resources=self.resources,
                               instance=self.instance, tags=request.tags, raise_on_error=False)
                ran.append((request.tags["dagster/asset_partition_range_start"],
                            request.tags["dagster/asset_partition_range_end"]))
        raise AssertionError(f"the load sensor kept asking for runs after {rounds} rounds: {ran}")

    def expected(self, **rules) -> Expected:
        """The oracle under the platform's reject rate (0.2 unless the harness sets it)."""
        rules.setdefault("max_reject_rate", self.platform.get("max_reject_rate", 0.2))
        return expected_state(self.drops, now=datetime.now(UTC), **rules)

    def sales_rows(self) -> dict[str, tuple]:
        """transaction id -> (customer, product, quantity, sale_ts, sale_date, file, row), plain."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(sales)).mappings().all()
        return {r["transaction_id"]: (
            self.tokenizer.decrypt(r["customer_id"]), self.tokenizer.decrypt(r["product_id"]),
            r["quantity"], r["sale_ts"].replace(microsecond=0), r["sale_date"], r["source_file"],
            r["source_row"]) for r in rows}

    def reject_rows(self) -> list[tuple]:
        """(file, row, reason, sale date) of every reject, sorted."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(sales_rejects.c.source_file, sales_rejects.c.source_row,
                                       sales_rejects.c.reason, sales_rejects.c.sale_date)).all()
        return sorted((f, r, reason, d) for f, r, reason, d in rows)

    def reject_ids(self) -> list[tuple]:
        """(file, row, reason, sale date, customer, product) of every reject, its ids decrypted."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(sales_rejects.c.source_file, sales_rejects.c.source_row,
                                       sales_rejects.c.reason, sales_rejects.c.sale_date,
                                       sales_rejects.c.customer_id, sales_rejects.c.product_id)).all()
        return sorted(((f, r, reason, d, self._plain(c, "customer_id"), self._plain(p, "product_id"))
                       for f, r, reason, d, c, p in rows), key=_reject_order)

    def _plain(self, token: str | None, column: str) -> str | None:
        return None if token is None else self.tokenizer.decrypt(token, column)

    def ledger(self) -> dict[tuple[str, str], dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(file_ledger)).mappings().all()
        return {(r["file_name"], r["sha256"]): dict(r) for r in rows}

    def events(self, name: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(file_events.c.status).where(file_events.c.file_name == name)
                                     .order_by(file_events.c.event_id)).scalars())


def expected_sales(expected: Expected) -> dict[str, tuple]:
    return {tid: (s.customer_id, s.product_id, s.quantity, s.sale_ts, s.sale_date, s.source_file,
                  s.source_row) for tid, s in expected.sales.items()}


def expected_rejects(expected: Expected) -> list[tuple]:
    return sorted((r.source_file, r.source_row, r.reason, r.sale_date) for r in expected.rejects)


def expected_reject_ids(expected: Expected) -> list[tuple]:
    return sorted(((r.source_file, r.source_row, r.reason, r.sale_date, r.customer_id, r.product_id)
                   for r in expected.rejects), key=_reject_order)


def _reject_order(reject: tuple) -> tuple:
    return reject[0], reject[1] or 0, reject[2]


def assert_matches_oracle(harness: Harness, **rules) -> Expected:
    """The warehouse holds exactly what the oracle computes from the files dropped."""
    expected = harness.expected(**rules)
    actual_sales, want_sales = harness.sales_rows(), expected_sales(expected)
    missing = {k: v for k, v in want_sales.items() if actual_sales.get(k) != v}
    extra = {k: v for k, v in actual_sales.items() if want_sales.get(k) != v}
    assert not missing and not extra, f"sales differ: expected {missing}, found {extra}"
    assert harness.reject_rows() == expected_rejects(expected)
    # ... and each reject holds the ids it was rejected with, as tokens
    assert harness.reject_ids() == expected_reject_ids(expected)
    return expected


def days_of(expected: Expected) -> list[str]:
    return sorted({d.isoformat() for d in expected.rows_by_day()}
                  | {r.sale_date.isoformat() for r in expected.rejects if r.sale_date})


def aged(path: Path, seconds: float = 60) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def day(value: str) -> date:
    return date.fromisoformat(value)
