"""Four days with one blocked: files written by a test, and what each day must show.

Days hold ``good`` rows that pass every rule and ``bad`` rows with a non-positive quantity. With
the default reject rate of 20 % a day is blocked when bad / (good + bad) > 0.2: the plans below put
one day one row over it (3 of 14) and one exactly at it (2 of 10, not blocked).
"""

from __future__ import annotations

import csv
import os
from datetime import date, timedelta
from pathlib import Path

HEADER = ["transaction_id", "customer_id", "product_id", "quantity", "timestamp"]


def four_day_plan(first: str) -> tuple[dict[str, tuple[int, int]], str]:
    """(good, bad) rows per day for four days from ``first``; the third day is the blocked one."""
    days = [(date.fromisoformat(first) + timedelta(days=i)).isoformat() for i in range(4)]
    plan = dict(zip(days, [(11, 0), (8, 2), (11, 3), (9, 0)], strict=True))
    return plan, days[2]


def day_rows(day: str, good: int, bad: int, product: str = "P1") -> list[list[str]]:
    """Good rows with customer ids in lower case and a trailing space (normalized on the way in),
    then bad rows (quantity -1)."""
    rows = [[f"T{day}-{i}", f"c{i % 7} ", product, str(1 + i % 3), f"{day}T10:{i % 60:02d}:00"]
            for i in range(good)]
    return rows + [[f"B{day}-{i}", "C1", product, "-1", f"{day}T11:00:00"] for i in range(bad)]


def write_plan(incoming: Path, plan: dict[str, tuple[int, int]], product: str = "P1") -> list[str]:
    """One file per day, written under a temporary name and renamed whole; returns the names."""
    incoming.mkdir(parents=True, exist_ok=True)
    names = []
    for day, (good, bad) in plan.items():
        name = f"plan_{day}.csv"
        partial = incoming / f"{name}.tmp"
        with open(partial, "w", newline="") as handle:
            csv.writer(handle).writerows([HEADER, *day_rows(day, good, bad, product)])
        os.replace(partial, incoming / name)
        names.append(name)
    return names
