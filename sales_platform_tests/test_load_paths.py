"""The load's two paths give the same result: a fresh day written straight into ``sales`` and the
staging + merge path (a day with rows, or a fresh day whose ids collide with another day).

Expectations come from the input rows, written out in plain Python.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import insert, select, text

from sales_platform.core.warehouse.engine import make_engine
from sales_platform.core.warehouse.loading import SalesLoader
from sales_platform.core.warehouse.tables import file_ledger, sales, sales_rejects

D1, D2 = date(2024, 3, 5), date(2024, 3, 6)
LOADED_AT = datetime(2024, 3, 7, 8, 9, 10, 123456)
SHA = "a" * 64


def _frame(day: date, rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame({
        "transaction_id": [t for t, _, _ in rows], "customer_id": [c for _, c, _ in rows],
        "product_id": ["P1"] * len(rows), "quantity": [q for _, _, q in rows],
        "sale_ts": pd.to_datetime([f"{day} 10:00:0{i % 10}" for i in range(len(rows))]),
        "source_file": [f"{day}.csv"] * len(rows), "source_sha256": [SHA] * len(rows),
        "source_row": list(range(1, len(rows) + 1)),
    })


class Source:
    """A re-readable batch source that counts how often it was read."""

    def __init__(self, frames: list[pd.DataFrame]) -> None:
        self.frames, self.reads = frames, 0

    def __call__(self):
        self.reads += 1
        return iter(self.frames)


def _engine(backend):
    engine = make_engine(backend.url)
    with engine.begin() as conn:  # both days' files are live versions
        for day in (D1, D2):
            conn.execute(insert(file_ledger).values(file_name=f"{day}.csv", sha256=SHA,
                                                    size_bytes=1, status="loaded", received_at=LOADED_AT))
    return engine


def _sales(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(sales.c.transaction_id, sales.c.customer_id, sales.c.quantity,
                                   sales.c.sale_date, sales.c.source_row, sales.c.loaded_at)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _rejects(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(sales_rejects.c.transaction_id, sales_rejects.c.sale_date,
                                          sales_rejects.c.reason)).all())


def _reads_with_fallback(backend) -> int:
    return 1 if backend.name == "sqlite" else 2


def test_a_fresh_day_goes_straight_into_sales_with_every_column(backend):
    engine = _engine(backend)
    rows = [(f"T{i}", f"C{i % 7}", 1 + i % 5) for i in range(250)]
    source = Source([_frame(D1, rows[:100]), _frame(D1, rows[100:])])
    stats = SalesLoader(engine).load_day(D1, source, LOADED_AT)
    assert source.reads == 1
    assert (stats.staged, stats.inserted, stats.updated, stats.deleted) == (250, 250, 0, 0)
    expected = {t: (c, q, D1, 1 + (i if i < 100 else i - 100), LOADED_AT)
                for i, (t, c, q) in enumerate(rows)}
    assert _sales(engine) == expected
    engine.dispose()


def test_a_fresh_day_with_an_id_of_another_day_falls_back_and_both_copies_are_rejected(backend):
    engine = _engine(backend)
    SalesLoader(engine).load_day(D1, Source([_frame(D1, [("A", "C1", 1), ("B", "C2", 2)])]), LOADED_AT)
    source = Source([_frame(D2, [("B", "C9", 3), ("C", "C3", 4)])])
    stats = SalesLoader(engine).load_day(D2, source, LOADED_AT)
    # the direct write hit B's primary key and was rolled back; SQLite's fallback takes the rows
    # from the load's scratch file again, PostgreSQL's reads the layer a second time
    assert source.reads == _reads_with_fallback(backend)
    assert (stats.inserted, stats.conflicts_rejected, stats.conflicts_evicted) == (1, 1, 1)
    assert sorted(_sales(engine)) == ["A", "C"]
    assert _rejects(engine) == [("B", D1, "duplicate_across_days"), ("B", D2, "duplicate_across_days")]
    engine.dispose()


def test_a_fresh_day_whose_id_was_rejected_as_a_copy_on_another_day_falls_back(backend):
    engine = _engine(backend)
    with engine.begin() as conn:  # a duplicate of X rejected within D1 (no copy of X in sales)
        conn.execute(insert(sales_rejects).values(
            stage="cleaning", sale_date=D1, source_file=f"{D1}.csv", source_sha256=SHA, source_row=3,
            reason="duplicate_conflicting", transaction_id="X", rejected_at=LOADED_AT))
    source = Source([_frame(D2, [("X", "C1", 1), ("Y", "C2", 2)])])
    stats = SalesLoader(engine).load_day(D2, source, LOADED_AT)
    assert source.reads == _reads_with_fallback(backend)
    assert (stats.inserted, stats.conflicts_rejected) == (1, 1)
    assert sorted(_sales(engine)) == ["Y"]
    assert _rejects(engine) == [("X", D1, "duplicate_across_days"), ("X", D2, "duplicate_across_days")]
    engine.dispose()


def test_a_day_with_rows_takes_the_merge_path_and_matches_a_plain_iterable(backend):
    engine = _engine(backend)
    first = [("A", "C1", 1), ("B", "C2", 2), ("C", "C3", 3)]
    SalesLoader(engine).load_day(D1, Source([_frame(D1, first)]), LOADED_AT)
    changed = [("A", "C1", 1), ("B", "C2", 5), ("D", "C4", 4)]  # B changed, C gone, D new
    source = Source([_frame(D1, changed)])
    later = datetime(2024, 3, 8)
    stats = SalesLoader(engine).load_day(D1, source, later)
    assert source.reads == 1
    assert (stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (1, 1, 1, 1)
    assert _sales(engine) == {"A": ("C1", 1, D1, 1, LOADED_AT), "B": ("C2", 5, D1, 2, later),
                              "D": ("C4", 4, D1, 3, later)}
    engine.dispose()


# The sales asset hands the loader Arrow tables read from the encrypted layer; other callers hand
# pandas frames. Awkward values: an empty string next to a NULL in a later-added column, a batch
# without that column, sub-second and UTC-zoned timestamps, a missing source row.
AWKWARD = [  # transaction_id, customer_id, quantity, timestamp (ISO, maybe zoned), source_row, email
    ("A", "C1", 1, "2024-03-05T10:00:00.900", 1, "a@example.com"),
    ("B", "C2", 2, "2024-03-05T23:59:59.999999", None, ""),
    ("C", "C3", 3, "2024-03-05T00:00:00", 3, None),
]
LATER_BATCH = [("D", "C4", 4, "2024-03-05T12:30:00", 4)]  # written before the email column existed


def _awkward_batches(kind: str, zone: str | None):
    def stamps(values):
        parsed = pd.to_datetime(list(values), format="ISO8601")
        return parsed.tz_localize(zone) if zone else parsed

    first = pd.DataFrame({
        "transaction_id": [r[0] for r in AWKWARD], "customer_id": [r[1] for r in AWKWARD],
        "product_id": ["P1"] * 3, "quantity": [r[2] for r in AWKWARD],
        "sale_ts": stamps(r[3] for r in AWKWARD), "source_file": ["f.csv"] * 3,
        "source_sha256": [SHA] * 3, "source_row": pd.array([r[4] for r in AWKWARD], dtype="Int64"),
        "email": [r[5] for r in AWKWARD]})
    later = pd.DataFrame({
        "transaction_id": ["D"], "customer_id": ["C4"], "product_id": ["P1"], "quantity": [4],
        "sale_ts": stamps(["2024-03-05T12:30:00"]), "source_file": ["f.csv"],
        "source_sha256": [SHA], "source_row": pd.array([4], dtype="Int64")})
    frames = [first, later]
    if kind == "arrow":
        return [pa.Table.from_pandas(f, preserve_index=False) for f in frames]
    return frames


@pytest.mark.parametrize("kind", ["arrow", "pandas"])
@pytest.mark.parametrize("zone", [None, "UTC"])
def test_arrow_and_pandas_batches_load_the_same_values(backend, kind, zone):
    engine = _engine(backend)
    SalesLoader(engine, ["email"]).load_day(D1, Source(_awkward_batches(kind, zone)), LOADED_AT)
    with engine.connect() as conn:
        got = {r[0]: tuple(r[1:]) for r in conn.execute(text(
            "SELECT transaction_id, customer_id, quantity, sale_ts, source_row, email FROM sales"))}
    # expected from the input alone: timestamps cut to the second, written without a zone
    expected = {t: (c, q, datetime.fromisoformat(ts[:19]), row, email)
                for t, c, q, ts, row, email in AWKWARD}
    expected.update({t: (c, q, datetime.fromisoformat(ts), row, None) for t, c, q, ts, row in LATER_BATCH})
    got = {t: (c, q, ts if isinstance(ts, datetime) else datetime.fromisoformat(ts), row, email)
           for t, (c, q, ts, row, email) in got.items()}
    assert got == expected
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_psycopg2_loads_the_same_rows_through_copy_expert(backend):
    """The most common PostgreSQL URL spelling reaches the COPY path through psycopg2's API."""
    engine = _engine(type(backend)(backend.name, backend.url.replace("+psycopg:", "+psycopg2:", 1)))
    assert engine.dialect.driver == "psycopg2"
    rows = [(f"T{i}", f"C{i % 3}", 1 + i % 4) for i in range(30)]
    SalesLoader(engine).load_day(D1, Source([_frame(D1, rows[:10]), _frame(D1, rows[10:])]), LOADED_AT)
    changed = [*rows[:20], ("NEW", "C9", 9)]  # 10 gone, one new: the staging + merge path
    stats = SalesLoader(engine).load_day(D1, Source([_frame(D1, changed)]), LOADED_AT)
    assert (stats.inserted, stats.deleted) == (1, 10)
    assert _sales(engine) == {t: (c, q, D1, 1 + i, LOADED_AT) for i, (t, c, q) in enumerate(changed)}
    engine.dispose()



def test_the_merge_counts_and_writes_each_kind_of_row_once(backend):
    """New, changed, relinked (same content, another source row), unchanged and vanished rows in
    one reload: the counts and the table follow from the two inputs, computed here in Python."""
    engine = _engine(backend)
    first = [(f"T{i}", f"C{i % 4}", 1 + i % 3) for i in range(40)]
    SalesLoader(engine).load_day(D1, Source([_frame(D1, first)]), LOADED_AT)
    # the last six rows vanish, every fifth changes its customer, three pairs ten places apart
    # swap places (same time stamp: _frame's second is the position mod 10; another source row:
    # relinked), three rows are new
    reordered = [(t, "C9" if i % 5 == 0 else c, q) for i, (t, c, q) in enumerate(first[:34])]
    for a, b in ((1, 11), (3, 13), (7, 17)):
        reordered[a], reordered[b] = reordered[b], reordered[a]
    reordered += [(f"N{i}", "C1", 2) for i in range(3)]
    later = datetime(2024, 3, 8)
    stats = SalesLoader(engine).load_day(D1, Source([_frame(D1, reordered)]), later)

    before = {t: (c, q, i % 10, i + 1) for i, (t, c, q) in enumerate(first)}
    after = {t: (c, q, i % 10, i + 1) for i, (t, c, q) in enumerate(reordered)}
    new = [t for t in after if t not in before]
    changed = [t for t in after if t in before and after[t][:3] != before[t][:3]]
    relinked = [t for t in after if t in before and after[t][:3] == before[t][:3]
                and after[t][3] != before[t][3]]
    unchanged = [t for t in after if t in before and after[t] == before[t]]
    vanished = [t for t in before if t not in after]
    assert len(relinked) > 0 and len(changed) > 0 and len(vanished) > 0  # the case is exercised
    assert (stats.staged, stats.inserted, stats.updated, stats.relinked, stats.unchanged,
            stats.deleted) == (len(after), len(new), len(changed), len(relinked), len(unchanged),
                               len(vanished))
    written = set(new) | set(changed) | set(relinked)
    assert _sales(engine) == {t: (c, q, D1, row, later if t in written else LOADED_AT)
                              for t, (c, q, _, row) in after.items()}
    engine.dispose()


ODD_NOTES = ["a\tb", "line\nbreak", "cr\rhere", "back\\slash", 'say "hi"', "", None, "\\.", "plain"]


def test_values_that_need_escaping_load_exactly_in_either_copy_format(backend):
    """A batch of plain values goes to COPY as text, a batch with tabs, newlines, backslashes,
    quotes or empty strings as CSV; both load every value as it was (empty string is not NULL)."""
    from sales_platform.core.warehouse.loading import COPY_CSV, COPY_TEXT, copy_payload

    engine = _engine(backend)
    plain = _frame(D1, [(f"P{i}", f"C{i}", 1) for i in range(5)]).assign(note="ok")
    odd = _frame(D1, [(f"O{i}", f"C{i}", 2) for i in range(len(ODD_NOTES))]).assign(note=ODD_NOTES)
    odd.loc[0, "customer_id"] = "tab\tin id"
    assert copy_payload(plain, ["note"])[0] == COPY_TEXT
    for i in range(len(ODD_NOTES)):
        one = odd.iloc[[i]]
        expected = COPY_TEXT if ODD_NOTES[i] in (None, "plain") and i else COPY_CSV
        assert copy_payload(one, ["note"])[0] == expected, ODD_NOTES[i]
    SalesLoader(engine, ["note"]).load_day(D1, Source([plain, odd]), LOADED_AT)
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT transaction_id, note FROM sales")).all())
        customer = conn.execute(text("SELECT customer_id FROM sales WHERE transaction_id = 'O0'")
                                ).scalar_one()
    assert stored == {**{f"P{i}": "ok" for i in range(5)},
                      **{f"O{i}": note for i, note in enumerate(ODD_NOTES)}}
    assert customer == "tab\tin id"
    engine.dispose()


@pytest.mark.parametrize("extra", ["sp_present", "changed", "relinked", "on_day"])
def test_a_source_column_named_like_a_merge_flag_reloads(backend, extra):
    """Evolved source columns are plain identifiers: one named like the merge's own flags must not
    break a reload of its day."""
    engine = _engine(backend)
    first = _frame(D1, [("A", "C1", 1), ("B", "C2", 2)]).assign(**{extra: ["x", "y"]})
    SalesLoader(engine, [extra]).load_day(D1, Source([first]), LOADED_AT)
    second = _frame(D1, [("A", "C1", 1), ("B", "C2", 5), ("C", "C3", 3)]).assign(**{extra: ["x", "z", None]})
    stats = SalesLoader(engine, [extra]).load_day(D1, Source([second]), datetime(2024, 3, 8))
    assert (stats.inserted, stats.updated, stats.unchanged, stats.deleted) == (1, 1, 1, 0)
    with engine.connect() as conn:
        stored = dict(conn.execute(text(f'SELECT transaction_id, "{extra}" FROM sales')).all())
    assert stored == {"A": "x", "B": "z", "C": None}
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_jit_is_off_in_the_load_transaction_only(backend):
    """JIT compiling cost the cross-day check of a 1M-row reload 1.6 of its 1.63 s: the load turns
    it off for its own transaction (fresh and merge path) and leaves the session setting alone."""
    engine = _engine(backend)
    with engine.begin() as conn:  # on, as the server default is since PostgreSQL 12
        conn.execute(text("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = on', "
                          "current_database()); END $$"))
    engine.dispose()
    engine = make_engine(backend.url)
    seen: list[str] = []

    def jit_inside(conn, _stats) -> None:
        seen.append(conn.execute(text("SHOW jit")).scalar_one())

    rows = [(f"T{i}", "C1", 1) for i in range(5)]
    SalesLoader(engine).load_day(D1, Source([_frame(D1, rows)]), LOADED_AT, after=jit_inside)
    SalesLoader(engine).load_day(D1, Source([_frame(D1, rows[:3])]), LOADED_AT, after=jit_inside)
    with engine.connect() as conn:
        after = conn.execute(text("SHOW jit")).scalar_one()
    assert seen == ["off", "off"]  # the fresh day's direct write, then the staging + merge path
    assert after == "on"
    engine.dispose()
