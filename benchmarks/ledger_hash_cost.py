"""What recording the hot-path artifacts costs: the sha256 of each landed fragment and layer file.

    .venv/bin/python benchmarks/ledger_hash_cost.py [--rows 1000000]

Generates one day (seed 42), lands it, cleans and encrypts it on a fresh SQLite warehouse, and
prints per stage its seconds, the seconds spent hashing its files (read once, after writing) and
the bytes hashed. Issue 17 item 5 asked for hashing while writing if this were over 5% of a stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import DEFAULT_DAY, generate_day, remove_tree, scratch_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from sales_platform.core.crypto import Keyring, generate_key
    from sales_platform.core.intake import Intake
    from sales_platform.core.pipeline import clean_day, encrypt_day
    from sales_platform.core.quality import QualityRules
    from sales_platform.core.schema import SchemaContract
    from sales_platform.core.store import DataAreas
    from sales_platform.core.warehouse import artifacts
    from sales_platform.core.warehouse.engine import make_engine

    hashed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    stage = ["land"]
    original = artifacts.sha256_file

    def timed(path: Path, block: int = 1 << 20) -> str:
        started = time.perf_counter()
        digest = original(path, block)
        hashed[stage[0]][0] += time.perf_counter() - started
        hashed[stage[0]][1] += path.stat().st_size
        return digest

    artifacts.sha256_file = timed
    work = scratch_dir("ledger-hash-")
    try:
        csv, _, _ = generate_day(work, args.rows)
        areas = DataAreas(work / "data")
        areas.ensure()
        csv.rename(areas.incoming / csv.name)
        engine = make_engine(f"sqlite:///{work / 'w.db'}")
        keyring, rules, day = Keyring.from_secrets(generate_key()), QualityRules(), DEFAULT_DAY.isoformat()
        seconds = {}
        for name, run in (
                ("land", lambda: Intake(areas, engine, keyring, SchemaContract(), rules, "bench",
                                        datetime.now(), settle_s=0).run()),
                ("clean", lambda: clean_day(areas, keyring, day, rules, None)),
                ("encrypt", lambda: encrypt_day(areas, keyring, day))):
            stage[0] = name
            started = time.perf_counter()
            run()
            seconds[name] = time.perf_counter() - started
        print(f"{args.rows} rows, {day}")
        print(f"{'stage':8} {'stage s':>8} {'hash s':>7} {'share':>6} {'MB hashed':>10}")
        for name, total in seconds.items():
            spent, size = hashed[name]
            print(f"{name:8} {total:8.2f} {spent:7.3f} {spent / total:6.1%} {size / 1e6:10.1f}")
    finally:
        artifacts.sha256_file = original
        remove_tree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
