"""Realistic mock sales data: a Faker-built catalogue and customer base, vectorized daily rows.

Deterministic for a seed. Rows are generated and written in bounded chunks, so a 10-million-row
day never sits in memory. Files are written as ``<name>.tmp`` and renamed when complete, so a
watcher never picks a half-written file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from faker import Faker

CATEGORIES = ("Electronics", "Home", "Garden", "Toys", "Books", "Grocery", "Sports", "Beauty",
              "Clothing", "Office")
# Relative traffic per hour of day (shops open mid-morning, peaks at lunch and after work).
HOURLY_WEIGHTS = np.array([1, 1, 1, 1, 1, 2, 4, 8, 14, 20, 24, 28, 34, 32, 26, 24, 26, 32, 38,
                           36, 28, 18, 8, 3], dtype=float)
WEEKDAY_FACTOR = (0.9, 0.85, 0.9, 1.0, 1.15, 1.4, 1.2)  # Monday .. Sunday
QUANTITY_WEIGHTS = np.array([55, 22, 10, 6, 3, 2, 1, 0.5, 0.3, 0.2])  # 1..10 units
DEFECT_KINDS = ("missing_value", "bad_quantity", "unknown_product", "duplicate_identical",
                "duplicate_conflicting", "bad_timestamp", "future_timestamp", "messy_identifier")
CHUNK_ROWS = 500_000
HEADER = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp")


@dataclass(frozen=True)
class Catalogue:
    product_ids: np.ndarray
    names: list[str]
    categories: list[str]
    unit_prices: np.ndarray
    popularity: np.ndarray  # sampling probabilities


def build_catalogue(seed: int, products: int = 500) -> Catalogue:
    fake = Faker()
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    editions = ("Pro", "Lite", "Max", "Mini", "Classic", "Plus")
    names = [f"{fake.color_name()} {fake.word().capitalize()} {fake.random_element(editions)}"
             for _ in range(products)]
    categories = [CATEGORIES[i] for i in rng.integers(0, len(CATEGORIES), products)]
    prices = np.round(np.exp(rng.normal(3.2, 0.9, products)), 2).clip(0.5, 2500)
    popularity = rng.pareto(1.2, products) + 0.05
    return Catalogue(
        product_ids=np.array([f"P{i:05d}" for i in range(1, products + 1)], dtype=object),
        names=names, categories=categories, unit_prices=prices,
        popularity=popularity / popularity.sum(),
    )


def write_catalogue(catalogue: Catalogue, path: Path, updated_at: datetime) -> Path:
    table = pa.table({
        "product_id": catalogue.product_ids.tolist(),
        "name": catalogue.names,
        "category": catalogue.categories,
        "unit_price": catalogue.unit_prices,
        "updated_at": [updated_at.isoformat(timespec="seconds")] * len(catalogue.names),
    })
    _write_atomically(path, lambda tmp: pacsv.write_csv(table, tmp))
    return path


def customer_weights(customers: int, seed: int) -> np.ndarray:
    """Skewed buying frequency: a few customers buy a lot (Zipf-like)."""
    rng = np.random.default_rng([seed, 1])
    ranks = rng.permutation(customers) + 1
    weights = 1.0 / ranks**0.9
    return weights / weights.sum()


@dataclass
class GeneratorSettings:
    seed: int = 42
    customers: int = 20_000
    products: int = 500
    defect_rate: float = 0.0
    max_future: datetime | None = None


class SalesGenerator:
    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.catalogue = build_catalogue(settings.seed, settings.products)
        self.customer_p = customer_weights(settings.customers, settings.seed)

    def rows_for_day(self, day: date, average: int) -> int:
        rng = np.random.default_rng([self.settings.seed, day.toordinal(), 7])
        season = 1.0 + 0.25 * np.cos((day.month - 12) / 12 * 2 * np.pi)  # December peak
        expected = average * WEEKDAY_FACTOR[day.weekday()] * season / 1.1
        return max(1, int(rng.normal(expected, expected * 0.03)))

    def chunks(self, day: date, rows: int) -> Iterator[pa.Table]:
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            rng = np.random.default_rng([self.settings.seed, day.toordinal(), start])
            yield self._chunk(day, start, count, rng)

    def _chunk(self, day: date, start: int, count: int, rng: np.random.Generator) -> pa.Table:
        seq = np.arange(start + 1, start + count + 1)
        tid = np.char.add(f"T{day:%Y%m%d}-", np.char.zfill(seq.astype(str), 8)).astype(object)
        cust_idx = rng.choice(len(self.customer_p), size=count, p=self.customer_p) + 1
        customer = np.char.add("C", np.char.zfill(cust_idx.astype(str), 7)).astype(object)
        product = self.catalogue.product_ids[
            rng.choice(len(self.catalogue.product_ids), size=count, p=self.catalogue.popularity)]
        quantity = (rng.choice(10, size=count, p=QUANTITY_WEIGHTS / QUANTITY_WEIGHTS.sum()) + 1
                    ).astype(str).astype(object)
        hours = rng.choice(24, size=count, p=HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum())
        seconds = np.sort(hours * 3600 + rng.integers(0, 3600, size=count))
        stamps = np.datetime64(day.isoformat()) + seconds.astype("timedelta64[s]")
        timestamp = np.datetime_as_string(stamps, unit="s").astype(object)
        columns = {"transaction_id": tid, "customer_id": customer, "product_id": product,
                   "quantity": quantity, "timestamp": timestamp}
        if self.settings.defect_rate > 0:
            self._inject_defects(columns, rng, day)
        return pa.table({name: pa.array(columns[name], pa.string()) for name in HEADER})

    def _inject_defects(self, cols: dict[str, np.ndarray], rng: np.random.Generator,
                        day: date) -> None:
        count = len(cols["transaction_id"])
        hit = np.flatnonzero(rng.random(count) < self.settings.defect_rate)
        hit = hit[hit > 0]  # duplicates copy the previous row
        kinds = rng.integers(0, len(DEFECT_KINDS), size=len(hit))
        for kind_index, kind in enumerate(DEFECT_KINDS):
            rows = hit[kinds == kind_index]
            if len(rows):
                getattr(self, f"_defect_{kind}")(cols, rows, rng, day)

    @staticmethod
    def _defect_missing_value(cols, rows, rng, day) -> None:
        names = ("transaction_id", "customer_id", "product_id", "quantity", "timestamp")
        for row, which in zip(rows, rng.integers(0, len(names), len(rows)), strict=True):
            cols[names[which]][row] = ""

    @staticmethod
    def _defect_bad_quantity(cols, rows, rng, day) -> None:
        bad = np.array(["0", "-3", "99999", "three", "3 units", "2.5", "1e9"], dtype=object)
        cols["quantity"][rows] = bad[rng.integers(0, len(bad), len(rows))]

    @staticmethod
    def _defect_unknown_product(cols, rows, rng, day) -> None:
        cols["product_id"][rows] = np.char.add(
            "P9", np.char.zfill(rng.integers(0, 9999, len(rows)).astype(str), 4)).astype(object)

    @staticmethod
    def _defect_duplicate_identical(cols, rows, rng, day) -> None:
        for name in HEADER:
            cols[name][rows] = cols[name][rows - 1]

    @staticmethod
    def _defect_duplicate_conflicting(cols, rows, rng, day) -> None:
        for name in HEADER:
            cols[name][rows] = cols[name][rows - 1]
        cols["quantity"][rows] = (rng.integers(11, 40, len(rows))).astype(str).astype(object)

    @staticmethod
    def _defect_bad_timestamp(cols, rows, rng, day) -> None:
        bad = np.array([f"{day:%d/%m/%Y} 25:61", "yesterday", f"{day:%Y}-13-45T10:00:00", "N/A"],
                       dtype=object)
        cols["timestamp"][rows] = bad[rng.integers(0, len(bad), len(rows))]

    def _defect_future_timestamp(self, cols, rows, rng, day) -> None:
        cols["timestamp"][rows] = f"{date.today().year + 5}-01-01T12:00:00"

    @staticmethod
    def _defect_messy_identifier(cols, rows, rng, day) -> None:
        cols["customer_id"][rows] = np.char.add(
            "  ", np.char.lower(cols["customer_id"][rows].astype(str))).astype(object)
        cols["product_id"][rows] = np.char.add(
            cols["product_id"][rows].astype(str), " ").astype(object)

    def write_day(self, folder: Path, day: date, rows: int) -> Path:
        return self.write_days(folder / f"sales_{day:%Y-%m-%d}.csv", [(day, rows)])

    def write_days(self, path: Path, days: list[tuple[date, int]]) -> Path:
        """One CSV holding the given days' rows (written to a temporary name, then renamed)."""

        def write(tmp: Path) -> None:
            writer = None
            tables = (table for day, rows in days for table in self.chunks(day, rows))
            for table in tables:
                if writer is None:
                    writer = pacsv.CSVWriter(
                        tmp, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
                writer.write_table(table)
            if writer is not None:
                writer.close()

        _write_atomically(path, write)
        return path


def _write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def generate(folder: Path, catalogue_path: Path, start: date, days: int, rows_per_day: int,
             settings: GeneratorSettings, out: Path | None = None,
             progress: Callable[[Path, int], None] | None = None) -> list[tuple[Path, int]]:
    """Write the catalogue and one CSV per day into ``folder`` (or all days into the one file
    ``out``); returns (path, rows) per file written. ``progress`` is called after each file.

    With ``out`` an existing catalogue is left as it is: one more file of sales must not look like a
    catalogue change (a new updated_at) to dim_products."""
    generator = SalesGenerator(settings)
    if out is None or not catalogue_path.exists():
        write_catalogue(generator.catalogue, catalogue_path,
                        datetime.combine(start, datetime.min.time()))
    plan = [(day, generator.rows_for_day(day, rows_per_day))
            for day in (start + timedelta(days=offset) for offset in range(days))]
    if out is not None:
        jobs = [(lambda: generator.write_days(out, plan), sum(rows for _, rows in plan))]
    else:
        jobs = [((lambda d=day, r=rows: generator.write_day(folder, d, r)), rows) for day, rows in plan]
    written = []
    for write, rows in jobs:
        written.append((write(), rows))
        if progress:
            progress(*written[-1])
    return written
