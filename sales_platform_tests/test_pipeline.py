"""Real Dagster materializations of the sales chain, on SQLite and PostgreSQL."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.generator import GeneratorSettings, generate
from sales_platform.core.warehouse.engine import cached_engine
from sales_platform.core.warehouse.tables import agg_sales_daily, file_ledger, sales, sales_rejects
from sales_platform.partitions import partition_range_tags
from sales_platform_tests.helpers import (
    PRODUCTS,
    SALES_CHAIN,
    all_assets,
    check_results,
    count,
    materializations_of,
    materialize,
    resources_for,
    write_catalogue,
    write_csv,
)
from sales_platform_tests.integrity import Harness, assert_matches_oracle
from sales_platform_tests.oracle import Drop, Expected, catalogue_prices

DAY = "2024-03-01"


@pytest.fixture
def setup(data_dir, backend, key):
    resources = resources_for(data_dir, backend.url, key)
    engine = cached_engine(resources["warehouse"].url())
    return data_dir, resources, engine


def table_rows(engine, table, order_by) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(order_by)).all()]


def generated(data_dir, days=2, rows=400, defect_rate=0.08):
    """Generated days and catalogue; expectations come from the files it writes (see ``drops_in``),
    not from the row counts it reports."""
    return generate(data_dir / "incoming", data_dir / "catalogue" / "products.csv", date(2024, 3, 1),
                    days, rows, GeneratorSettings(seed=7, customers=300, products=40,
                                                  defect_rate=defect_rate))


def drops_in(folder: Path) -> list[Drop]:
    """The files of a folder as the oracle's drops (name order; the generated days share no id)."""
    return [Drop(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]


def known_products(data_dir: Path) -> set[str]:
    """The product ids of the catalogue the test loads into dim_products."""
    return set(catalogue_prices((data_dir / "catalogue" / "products.csv").read_bytes()))


def range_run(resources: dict, first: str, last: str, selection: list[str],
              raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """One run over the days ``first``..``last``, as a single-run backfill (the platform's tags)."""
    return dg.materialize(all_assets(), selection=selection, resources=resources,
                          tags=partition_range_tags(first, last), raise_on_error=raise_on_error)


def matches_oracle(data_dir: Path, url: str, key: str, drops: list[Drop], **rules) -> Expected:
    """The warehouse at ``url`` holds exactly the oracle's sales rows and rejects for ``drops``."""
    harness = Harness(data_dir, url, key)
    harness.drops.extend(drops)
    return assert_matches_oracle(harness, **rules)


def test_every_row_ends_in_exactly_one_place_and_reruns_change_nothing(setup, backend, key):
    data_dir, resources, engine = setup
    generated(data_dir)
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    materialize(resources, PRODUCTS)
    for day in ("2024-03-01", "2024-03-02"):
        result = materialize(resources, SALES_CHAIN, day)
        assert all(check_results(result).values()), check_results(result)
    expected = matches_oracle(data_dir, backend.url, key, drops, known_products=known)
    # the input holds the generator's defects: the rules must turn them into these reasons
    assert {"duplicate_identical", "duplicate_conflicting", "unknown_product", "invalid_timestamp",
            "quantity_not_positive"} <= set(expected.rejects_by_reason())
    before = table_rows(engine, sales, sales.c.transaction_id)

    again = materialize(resources, SALES_CHAIN, DAY)
    meta = materializations_of(again, "sales")[0].metadata
    assert meta["inserted"].value == 0 and meta["updated"].value == 0
    assert meta["unchanged"].value == expected.rows_by_day()[date(2024, 3, 1)]
    assert table_rows(engine, sales, sales.c.transaction_id) == before
    matches_oracle(data_dir, backend.url, key, drops, known_products=known)  # rejects: still one copy


def test_corrected_file_redropped_updates_and_removes_rows(setup):
    data_dir, resources, engine = setup
    write_catalogue(data_dir, ["P1", "P2"])
    rows = [[f"T{i}", f"C{i % 3}", "P1", "1", f"{DAY}T10:00:{i:02d}"] for i in range(10)]
    write_csv(data_dir / "incoming" / "day.csv", rows)
    materialize(resources, PRODUCTS)
    materialize(resources, SALES_CHAIN, DAY)
    assert count(engine, sales) == 10
    rows[0][3] = "7"
    rows[1][2] = "P2"
    write_csv(data_dir / "incoming" / "day.csv", rows[:-1])  # T9 removed in the correction
    result = materialize(resources, SALES_CHAIN, DAY)
    per_day = [m for m in materializations_of(result, "sales") if m.partition == DAY]
    meta = per_day[0].metadata
    # the 7 untouched rows now belong to the new version: relinked, not updated
    assert (meta["inserted"].value, meta["updated"].value, meta["relinked"].value,
            meta["deleted"].value) == (0, 2, 7, 1)
    with engine.connect() as conn:
        quantity = conn.execute(select(sales.c.quantity).where(sales.c.transaction_id == "T0")).scalar()
        statuses = sorted(conn.execute(select(file_ledger.c.status)).scalars())
    assert quantity == 7 and count(engine, sales) == 9
    assert statuses == ["loaded", "superseded"]


def test_bad_file_is_reported_and_other_files_of_the_day_still_load(setup):
    data_dir, resources, engine = setup
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "good.csv", [["T1", "C1", "P1", "2", f"{DAY}T09:00:00"]])
    (data_dir / "incoming" / "broken.csv").write_text("id;who;what\n1;2;3\n")
    materialize(resources, PRODUCTS)
    result = materialize(resources, SALES_CHAIN, DAY)
    assert result.success and count(engine, sales) == 1
    assert check_results(result)["no_quarantined_files"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations()
                      if e.check_name == "no_quarantined_files")
    assert evaluation.metadata["quarantined"].value == 1
    assert "broken.csv" in evaluation.metadata["files"].value
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert list((data_dir / "quarantine").glob("broken*.csv"))


def test_a_file_quarantined_on_the_sensor_path_warns_until_a_corrected_drop_clears_it(setup):
    """The drop sensor lands through landed_files: its no_quarantined_files check names the file
    and the reason, and holds while the file's newest version is in quarantine."""
    data_dir, resources, engine = setup
    (data_dir / "incoming" / "broken.csv").write_text("id;who;what\n1;2;3\n")
    landed = materialize(resources, ["landed_files"])
    evaluations = {e.check_name: e for e in landed.get_asset_check_evaluations()}
    assert evaluations["landing_reject_rate_below_threshold"].passed  # nothing landed, nothing lost
    evaluation = evaluations["no_quarantined_files"]
    assert (evaluation.asset_key.to_user_string(), evaluation.passed) == ("landed_files", False)
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["quarantined"].value == 1
    assert "broken.csv" in evaluation.metadata["files"].value
    assert "wrong delimiter" in evaluation.metadata["files"].value  # the reason, not only the name
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "broken.csv", [["T1", "C1", "P1", "2", f"{DAY}T09:00:00"]])
    cleared = next(e for e in materialize(resources, ["landed_files"]).get_asset_check_evaluations()
                   if e.check_name == "no_quarantined_files")
    assert cleared.passed and cleared.metadata["quarantined"].value == 0


def test_blocking_reject_rate_check_stops_the_load(data_dir, key, tmp_path):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.1)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "bad.csv",
              [["T1", "C1", "P1", "1", f"{DAY}T09:00:00"], ["T2", "C1", "P1", "-1", f"{DAY}T09:00:00"]])
    materialize(resources, PRODUCTS)
    result = materialize(resources, SALES_CHAIN, DAY, raise_on_error=False)
    assert check_results(result)["reject_rate_below_threshold"] is False
    assert count(engine, sales) == 0  # blocked: sales never ran
    assert not materializations_of(result, "sales")
    assert materializations_of(result, "cleaned_sales")  # the step ran; its sales stage did not


def test_a_long_range_run_logs_one_summary_and_keeps_each_days_numbers(data_dir, key, tmp_path):
    """A range run logs one summary line (each log line is an event Dagster stores); every day's
    own counts are in its partition's materialization."""
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key)
    write_catalogue(data_dir, ["P1"])
    days = [date(2024, 3, 1) + timedelta(days=n) for n in range(33)]
    for n, day in enumerate(days):  # n + 1 rows on the n-th day
        write_csv(data_dir / "incoming" / f"{day}.csv",
                  [[f"T{n}-{i}", "C1", "P1", "1", f"{day}T10:00:00"] for i in range(n + 1)])
    with dg.instance_for_test() as instance:
        materialize(resources, PRODUCTS, instance=instance)
        result = dg.materialize(all_assets(), selection=SALES_CHAIN, resources=resources,
                                instance=instance, tags=partition_range_tags("2024-03-01", "2024-04-02"))
        messages = [e.user_message for e in instance.all_logs(result.run_id) if not e.dagster_event]
    summaries = [m for m in messages if m.startswith("33 day(s) in ")]
    total = sum(n + 1 for n in range(33))
    assert len(summaries) == 1
    assert summaries[0].endswith(f": 33 loaded with {total} rows in sales, 0 blocked, 0 failed")
    counts = {m.partition: m.metadata["dagster/row_count"].value
              for m in materializations_of(result, "sales")}
    assert counts == {day.isoformat(): n + 1 for n, day in enumerate(days)}


def test_range_run_loads_each_day_and_daily_aggregates(setup, backend, key):
    data_dir, resources, engine = setup
    generated(data_dir, days=3, rows=200, defect_rate=0.0)
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    materialize(resources, PRODUCTS)
    result = range_run(resources, "2024-03-01", "2024-03-03", [*SALES_CHAIN, "agg_sales_daily"])
    assert result.success
    expected = matches_oracle(data_dir, backend.url, key, drops, known_products=known)
    per_day = expected.rows_by_day()
    assert sorted(d.isoformat() for d in per_day) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    with engine.connect() as conn:
        daily = conn.execute(select(agg_sales_daily.c.sale_date, agg_sales_daily.c.transactions)
                             .order_by(agg_sales_daily.c.sale_date)).all()
    assert [(d, n) for d, n in daily] == sorted(per_day.items())
    with engine.connect() as conn:
        ledger_days = sorted(conn.execute(select(file_ledger.c.days_touched)).scalars())
    assert ledger_days == ['["2024-03-01"]', '["2024-03-02"]', '["2024-03-03"]']


def test_no_plaintext_identifier_is_persisted(data_dir, key, tmp_path):
    """Byte search of the database, data dir (minus the user's drop files), Dagster storage, logs."""
    resources = resources_for(data_dir, f"sqlite:///{data_dir / 'warehouse.db'}", key)
    write_catalogue(data_dir, ["P1"])
    customers = [f"ZQXCUST{i:05d}" for i in range(20)]
    rows = [[f"T{i}", c, "P1", "1" if i % 10 else "-1", f"{DAY}T10:{i:02d}:00"]
            for i, c in enumerate(customers)]
    rows.append(["T99", "ZQXCUSTBADTS", "P1", "1", "garbage"])
    write_csv(data_dir / "incoming" / "pii.csv", rows)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        materialize(resources, PRODUCTS, instance=instance)
        materialize(resources, SALES_CHAIN, DAY, instance=instance)
    leaks = []
    for root in (data_dir, home):
        for path in root.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                leaks += [f"{path}: {c}" for c in [*customers, "ZQXCUSTBADTS"]
                          if c.encode() in content or c.lower().encode() in content]
    assert leaks == []
    assert count(cached_engine(resources["warehouse"].url()), sales) == 18


def markdown_cells(table: str) -> list[dict[str, str]]:
    """The rows of a pipe-table in markdown (header, separator, rows) as column -> whole cell value."""
    header, separator, *rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
                                for line in table.strip().splitlines()]
    assert all(cell and set(cell) <= set("-:") for cell in separator), table
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_materialization_metadata_and_checks_are_per_partition(setup, key):
    data_dir, resources, engine = setup
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "2", f"{DAY}T09:00:00"]])
    materialize(resources, PRODUCTS)
    result = materialize(resources, SALES_CHAIN, DAY)
    meta = materializations_of(result, "sales")[0].metadata
    assert "dagster/column_schema" in meta and meta["table"].value == "sales"
    # whole cell values: a token may contain "C1" by chance, but never equals it
    (row,) = markdown_cells(meta["preview"].value)
    tokenizer = Tokenizer(Keyring.from_secrets(key))
    assert row["transaction_id"] == "T1" and row["quantity"] == "2"
    assert row["customer_id"] != "C1" and tokenizer.decrypt(row["customer_id"]) == "C1"
    assert row["product_id"] != "P1" and tokenizer.decrypt(row["product_id"]) == "P1"
    assert meta["database"].value.split("/")[-1] in setup_url(resources)
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {"no_quarantined_files", "reject_rate_below_threshold",
                                                   "landing_reject_rate_below_threshold",
                                                   "rows_conserved", "transaction_id_unique",
                                                   "schema_unchanged"}
    assert {e.partition for e in evaluations} == {DAY}


def setup_url(resources) -> str:
    return resources["warehouse"].database_url


@pytest.fixture
def request_cleanup():
    """PostgreSQL databases a test created, dropped afterwards."""
    urls: list[str] = []
    yield urls
    from sqlalchemy import create_engine, text

    from sales_platform.core.warehouse.engine import dispose_all
    from sales_platform_tests.conftest import PG_ADMIN_URL

    dispose_all()
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for url in urls:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def test_sqlite_and_postgresql_end_with_identical_tables(data_dir, key, tmp_path, request_cleanup):
    """The same files and key give the same sales and rejects rows on both backends."""
    from sales_platform_tests.conftest import _pg_available

    if not _pg_available():
        from sales_platform_tests.conftest import skip_or_fail

        skip_or_fail("PostgreSQL not reachable at 127.0.0.1:5432")
    import shutil

    generated(data_dir, days=1, rows=500)
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    snapshot = tmp_path / "drop"
    shutil.copytree(data_dir, snapshot)
    results = {}
    pg_url = _fresh_pg_database()
    request_cleanup.append(pg_url)
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'w.db'}"), ("postgresql", pg_url)):
        folder = tmp_path / f"data_{name}"
        shutil.copytree(snapshot, folder)
        resources = resources_for(folder, url, key)
        materialize(resources, PRODUCTS)
        materialize(resources, SALES_CHAIN, DAY)
        expected = matches_oracle(folder, url, key, drops, known_products=known)  # each, exactly
        engine = cached_engine(resources["warehouse"].url())
        with engine.connect() as conn:
            results[name] = (
                [tuple(r) for r in conn.execute(
                    select(*(c for c in sales.columns if c.name != "loaded_at"))
                    .order_by(sales.c.transaction_id))],
                sorted(tuple(r) for r in conn.execute(select(sales_rejects.c.source_row,
                                                             sales_rejects.c.reason,
                                                             sales_rejects.c.customer_id))),
            )
    assert results["sqlite"] == results["postgresql"]  # and with each other, column by column
    assert len(results["sqlite"][0]) == len(expected.sales)
    assert len(results["sqlite"][1]) == len(expected.rejects)


def _fresh_pg_database() -> str:
    import uuid

    from sqlalchemy import create_engine, text

    from sales_platform_tests.conftest import PG_ADMIN_URL

    name = f"sp_same_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def twenty_sales_and_one_reject(data_dir: Path) -> None:
    """A catalogue with P1 and one file of DAY: 20 valid sales and one non-positive quantity."""
    write_catalogue(data_dir, ["P1"])
    rows = [[f"T{i}", "C1", "P1", "1", f"{DAY}T10:00:{i:02d}"] for i in range(20)] + \
           [["T99", "C1", "P1", "-4", f"{DAY}T11:00:00"]]
    write_csv(data_dir / "incoming" / "a.csv", rows)


def test_the_documented_selection_without_sales_rejects_loads_a_day_with_rejects(setup):
    """`--select raw_sales,cleaned_sales,encrypted_sales,sales` (the README's command) must pass its
    checks on a day with rejects, and the rejects still reach sales_rejects when that asset runs."""
    data_dir, resources, engine = setup
    twenty_sales_and_one_reject(data_dir)
    materialize(resources, PRODUCTS)
    result = materialize(resources, ["raw_sales", "cleaned_sales", "encrypted_sales", "sales"], DAY)
    assert result.success and check_results(result)["rows_conserved"] is True
    assert count(engine, sales) == 20
    materialize(resources, ["sales_rejects"], DAY)
    assert count(engine, sales_rejects, sales_rejects.c.reason == "quantity_not_positive") == 1


def step_outcome(result: dg.ExecuteInProcessResult) -> tuple[set[str], set[str]]:
    """(assets materialized, checks evaluated) by the sales_pipeline step of a run."""
    assets = {m.asset_key.to_user_string() for m in result.asset_materializations_for_node("sales_pipeline")}
    checks = {e.check_name for e in result.get_asset_check_evaluations()
              if e.asset_key.to_user_string() in {"cleaned_sales", "sales"}}
    return assets, checks


def test_each_selection_of_the_one_step_runs_exactly_its_stages(setup):
    """The four sales assets share one step: a selection of some runs only those stages (and
    their checks), one after another across runs, with the same end result as one run of all."""
    data_dir, resources, engine = setup
    twenty_sales_and_one_reject(data_dir)
    materialize(resources, PRODUCTS)
    encrypted_dir = data_dir / "staging" / "encrypted" / DAY

    cleaned = materialize(resources, ["raw_sales", "cleaned_sales"], DAY)
    assert step_outcome(cleaned) == ({"cleaned_sales"}, {"reject_rate_below_threshold"})
    assert not encrypted_dir.exists() and count(engine, sales) == 0
    assert count(engine, sales_rejects) == 1  # written by the step that decides it

    encrypted = materialize(resources, ["encrypted_sales"], DAY)
    assert step_outcome(encrypted) == ({"encrypted_sales"}, set())
    assert list(encrypted_dir.glob("*.parquet")) and count(engine, sales) == 0

    loaded = materialize(resources, ["sales"], DAY)
    assert step_outcome(loaded) == ({"sales"}, {"rows_conserved", "transaction_id_unique",
                                                "schema_unchanged"})
    assert count(engine, sales) == 20 and all(check_results(loaded).values())

    reported = materialize(resources, ["sales_rejects"], DAY)
    assert step_outcome(reported) == ({"sales_rejects"}, set())
    assert materializations_of(reported, "sales_rejects")[0].metadata["rows"].value == 1


def checks_only(resources: dict, selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
    """A run of checks without their assets ("Execute" on a check in the UI)."""
    job = dg.define_asset_job("checks_only", selection=selection)
    defs = dg.Definitions(assets=all_assets(), jobs=[job], resources=resources)
    # the partition as a run tag, as the UI launches it (execute_in_process's partition_key looks
    # for it among the selected assets, and a check-only run selects none)
    return defs.resolve_job_def("checks_only").execute_in_process(
        tags={"dagster/partition": DAY}, raise_on_error=False)


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    return str(next(e for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE").event_specific_data.error)


@pytest.mark.parametrize("checks", [
    [("sales", "rows_conserved")],
    [("cleaned_sales", "reject_rate_below_threshold")],
    [("cleaned_sales", "reject_rate_below_threshold"), ("sales", "transaction_id_unique")],
])
def test_a_check_without_its_asset_is_refused_and_changes_nothing(setup, checks):
    """The step's checks are verdicts of the stage that materializes their asset; run alone they
    would have nothing to judge (a check-only run passed silently, or judged a day against layers it
    was not loaded from). Refused with the reason, before any stage runs."""
    data_dir, resources, engine = setup
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "a.csv", [[f"T{i}", "C1", "P1", "1", f"{DAY}T10:00:{i:02d}"]
                                               for i in range(12)])
    materialize(resources, PRODUCTS)
    materialize(resources, ["raw_sales"], DAY)  # landed, not loaded
    result = checks_only(resources, dg.AssetSelection.checks(
        *(dg.AssetCheckKey(dg.AssetKey(asset), name) for asset, name in checks)))
    assert not result.success and not result.get_asset_check_evaluations()
    for asset, name in checks:
        assert f"{name} of {asset}" in step_failure(result)
    assert "select the asset with its checks" in step_failure(result)
    assert count(engine, sales) == 0 and not (data_dir / "staging" / "cleaned" / DAY).exists()


def two_good_days_around_a_bad_one(data_dir: Path) -> None:
    for n, day in enumerate(["2024-03-01", "2024-03-02", "2024-03-03"]):
        rows = [[f"T{n}-{i}", "C1", "P1", "1", f"{day}T10:00:{i:02d}"] for i in range(10)]
        if day == "2024-03-02":  # 5 of 10 rows rejected: 50 % > the 20 % threshold
            rows = [r[:3] + ["-1"] + r[4:] if i % 2 else r for i, r in enumerate(rows)]
        write_csv(data_dir / "incoming" / f"{day}.csv", rows)


def test_a_blocked_day_is_blocked_in_a_run_that_left_the_reject_check_out(data_dir, key, tmp_path):
    """A selection without checks (a job built `without_checks()`, an API launch with no check
    keys) still may not load a blocked day; the good days around it load."""
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.2)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    range_run(resources, "2024-03-01", "2024-03-03", ["raw_sales"])
    no_checks = dg.AssetSelection.assets("cleaned_sales", "sales_rejects", "encrypted_sales",
                                         "sales").without_checks()
    result = range_run(resources, "2024-03-01", "2024-03-03", no_checks, raise_on_error=False)
    assert result.success and not result.get_asset_check_evaluations()
    assert count(engine, sales) == 20  # the two good days, 10 rows each
    assert sorted(m.partition for m in materializations_of(result, "sales")) == [
        "2024-03-01", "2024-03-03"]
    assert count(engine, sales_rejects) == 5


def test_a_failed_load_still_reports_the_rejects_it_wrote(data_dir, key, tmp_path, monkeypatch):
    """The rejects are written by the cleaning before any load; a load that fails on one day must
    not leave sales_rejects reported as failed."""
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.6)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    from sales_platform.core.warehouse.loading import SalesLoader

    real = SalesLoader.load_day

    def failing_on_the_second_day(self, day, *args, **kwargs):
        if day.isoformat() == "2024-03-02":
            raise RuntimeError("disk full while loading 2024-03-02")
        return real(self, day, *args, **kwargs)

    monkeypatch.setattr(SalesLoader, "load_day", failing_on_the_second_day)
    result = range_run(resources, "2024-03-01", "2024-03-03", SALES_CHAIN, raise_on_error=False)
    assert not result.success and "2024-03-02: disk full while loading 2024-03-02" in step_failure(result)
    rejects = materializations_of(result, "sales_rejects")
    assert sorted(m.partition for m in rejects) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    # the failed day stops only itself: the days around it load
    assert count(engine, sales_rejects) == 5 and count(engine, sales) == 20
    assert sorted(m.partition for m in materializations_of(result, "sales")) == [
        "2024-03-01", "2024-03-03"]


def test_a_failed_blocking_sales_check_blocks_even_when_left_out(setup, monkeypatch):
    """A load whose conservation check fails stops the run whether or not the run selected it."""
    data_dir, resources, engine = setup
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "a.csv", [[f"T{i}", "C1", "P1", "1", f"{DAY}T10:00:{i:02d}"]
                                               for i in range(6)])
    materialize(resources, PRODUCTS)
    import sales_platform.defs.sales.assets as sales_assets

    real = sales_assets._conservation

    def with_a_lost_row(engine, day, snapshot):
        found = real(engine, day, snapshot)
        return {**found, "violations": {"a.csv (injected)": {"landed": 6, "accounted": 5}}}

    monkeypatch.setattr(sales_assets, "_conservation", with_a_lost_row)
    materialize(resources, ["raw_sales"], DAY)
    no_checks = dg.AssetSelection.assets(*SALES_CHAIN[1:]).without_checks()
    result = dg.materialize(all_assets(), selection=no_checks, partition_key=DAY,
                            resources=resources, raise_on_error=False)
    assert not result.success and not result.get_asset_check_evaluations()
    assert f"rows_conserved failed on {DAY}" in step_failure(result)


@pytest.mark.parametrize("workers", [1, 3])
def test_days_worked_concurrently_give_the_oracle_result(data_dir, backend, key, workers):
    """A range run with its days cleaned and encrypted `workers` at a time: the same tables as the
    oracle computes from the files alone (which the sequential run also matches), including a file
    spanning days and a transaction id on two days."""
    resources = resources_for(data_dir, backend.url, key, day_workers=workers)
    generated(data_dir, days=4, rows=150, defect_rate=0.08)
    second_day = sorted((data_dir / "incoming").iterdir())[1].read_text().splitlines()
    repeated_id = second_day[1].split(",")[0]  # an id of 2024-03-02, again on 03-01 and 03-04
    write_csv(data_dir / "incoming" / "late spanning days.csv", [
        [repeated_id, "C1", "P1", "1", "2024-03-01T23:59:59"],
        [repeated_id, "C1", "P1", "1", "2024-03-04T00:00:00+00:00"],
        ["LATE-1", "C2", "P1", "2", "2024-03-03T10:00:00+02:00"],
    ])
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    materialize(resources, PRODUCTS)
    result = range_run(resources, "2024-03-01", "2024-03-04", SALES_CHAIN, raise_on_error=False)
    assert result.success
    matches_oracle(data_dir, backend.url, key, drops, known_products=known)


def test_a_day_failing_among_concurrent_days_loses_nothing_and_a_rerun_completes(
        data_dir, backend, key, monkeypatch):
    """Day 2 of 4 fails while cleaned two at a time: the run fails, days already cleaned or
    running finish whole, and the same range run again (fault gone) ends in the oracle's tables."""
    import sales_platform.defs.sales.assets as sales_assets

    resources = resources_for(data_dir, backend.url, key, day_workers=2)
    generated(data_dir, days=4, rows=120, defect_rate=0.08)
    drops, known = drops_in(data_dir / "incoming"), known_products(data_dir)
    materialize(resources, PRODUCTS)
    real_clean_day = sales_assets.clean_day

    def failing_on_day_two(areas, keyring, day, *args, **kwargs):
        if day == "2024-03-02":
            raise OSError("disk went away while cleaning 2024-03-02")
        return real_clean_day(areas, keyring, day, *args, **kwargs)

    monkeypatch.setattr(sales_assets, "clean_day", failing_on_day_two)
    failed = range_run(resources, "2024-03-01", "2024-03-04", SALES_CHAIN, raise_on_error=False)
    assert not failed.success
    assert "disk went away while cleaning 2024-03-02" in str(
        next(e for e in failed.all_events if e.is_step_failure).event_specific_data.error)
    monkeypatch.setattr(sales_assets, "clean_day", real_clean_day)
    rerun = range_run(resources, "2024-03-01", "2024-03-04", SALES_CHAIN)
    assert rerun.success
    matches_oracle(data_dir, backend.url, key, drops, known_products=known)


# --- a day that fails, is superseded or is blocked tells nothing untrue, and stops only itself ----

def test_a_cleaning_that_fails_midway_reports_no_verdict_for_its_day(data_dir, key, tmp_path,
                                                                     monkeypatch):
    """The day's rejects could not be written: no cleaned materialization, no reject-rate verdict
    (it would say "passed" for rows never judged); the other days load."""
    import sales_platform.defs.sales.assets as sales_assets

    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.2)
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    real = sales_assets.replace_day_rejects

    def failing_on_the_bad_day(engine, day, *args, **kwargs):
        if day.isoformat() == "2024-03-02":
            raise RuntimeError("rejects table unreachable")
        return real(engine, day, *args, **kwargs)

    monkeypatch.setattr(sales_assets, "replace_day_rejects", failing_on_the_bad_day)
    result = range_run(resources, "2024-03-01", "2024-03-03", SALES_CHAIN, raise_on_error=False)
    assert not result.success and "2024-03-02: rejects table unreachable" in step_failure(result)
    assert sorted(m.partition for m in materializations_of(result, "cleaned_sales")) == [
        "2024-03-01", "2024-03-03"]
    verdicts = {e.partition: e.passed for e in result.get_asset_check_evaluations()
                if e.check_name == "reject_rate_below_threshold"}
    assert verdicts == {"2024-03-01": True, "2024-03-03": True}
    assert count(cached_engine(resources["warehouse"].url()), sales) == 20


def test_an_unreachable_alert_webhook_stops_no_day(data_dir, key, tmp_path, monkeypatch):
    from sales_platform_tests.ports import closed_port

    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.2)
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    with closed_port() as port:
        monkeypatch.setenv("SALES_PLATFORM_ALERT_WEBHOOK", f"http://127.0.0.1:{port}/hook")
        result = range_run(resources, "2024-03-01", "2024-03-03", SALES_CHAIN)
    assert result.success
    assert count(cached_engine(resources["warehouse"].url()), sales) == 20
    assert "2024-03-02 blocked" in (data_dir / "alerts" / "run_failures.jsonl").read_text()


def test_daily_aggregates_follow_rows_a_later_day_moves(data_dir, key, tmp_path):
    """T1 on 03-01 and on 03-02: the load of 03-02 rejects both copies (and takes 03-01's out of
    sales). 03-01's aggregate, written in the same run, must count what sales then holds."""
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.9)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    write_csv(data_dir / "incoming" / "a.csv", [["T1", "C1", "P1", "1", "2024-03-01T10:00:00"],
                                                ["T2", "C1", "P1", "1", "2024-03-01T11:00:00"]])
    write_csv(data_dir / "incoming" / "b.csv", [["T1", "C1", "P1", "1", "2024-03-02T10:00:00"],
                                                ["T3", "C1", "P1", "1", "2024-03-02T11:00:00"]])
    materialize(resources, PRODUCTS)
    range_run(resources, "2024-03-01", "2024-03-02", [*SALES_CHAIN, "agg_sales_daily"])
    with engine.connect() as conn:
        daily = dict(conn.execute(select(agg_sales_daily.c.sale_date,
                                         agg_sales_daily.c.transactions)).all())
        ids = sorted(conn.execute(select(sales.c.transaction_id)).scalars())
    assert ids == ["T2", "T3"]  # T1 is on two days: every copy rejected
    assert daily == {date(2024, 3, 1): 1, date(2024, 3, 2): 1}


def test_a_superseded_cleaning_blocks_nothing_and_reports_nothing(data_dir, key, tmp_path,
                                                                  monkeypatch):
    """A run whose cleaning of a day was not published (a run that read newer landed rows did it
    first) must not judge, block or load that day from its older rows."""
    import sales_platform.defs.sales.assets as sales_assets

    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.2)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    real = sales_assets.clean_day

    def not_published_on_the_bad_day(areas, keyring, day, *args, **kwargs):
        result = real(areas, keyring, day, *args, **kwargs)
        if day == "2024-03-02":
            result.published = False
        return result

    monkeypatch.setattr(sales_assets, "clean_day", not_published_on_the_bad_day)
    result = range_run(resources, "2024-03-01", "2024-03-03", SALES_CHAIN)
    assert "2024-03-02" not in {m.partition for m in result.asset_materializations_for_node(
        "sales_pipeline")}
    assert "2024-03-02" not in {e.partition for e in result.get_asset_check_evaluations()
                                if e.asset_key.to_user_string() != "raw_sales"}
    with engine.connect() as conn:
        assert "blocked" not in set(conn.execute(select(file_ledger.c.status)).scalars())
    assert count(engine, sales) == 20


def test_a_blocked_day_stays_blocked_in_a_run_that_does_not_clean_it(data_dir, key, tmp_path):
    resources = resources_for(data_dir, f"sqlite:///{tmp_path / 'w.db'}", key, max_reject_rate=0.2)
    engine = cached_engine(resources["warehouse"].url())
    write_catalogue(data_dir, ["P1"])
    two_good_days_around_a_bad_one(data_dir)
    materialize(resources, PRODUCTS)
    range_run(resources, "2024-03-01", "2024-03-03", SALES_CHAIN)
    again = range_run(resources, "2024-03-01", "2024-03-03", ["encrypted_sales", "sales"])
    assert sorted(m.partition for m in materializations_of(again, "sales")) == [
        "2024-03-01", "2024-03-03"]
    with engine.connect() as conn:
        loaded_days = set(conn.execute(select(sales.c.sale_date)).scalars())
        statuses = sorted(conn.execute(select(file_ledger.c.status)).scalars())
    assert loaded_days == {date(2024, 3, 1), date(2024, 3, 3)}
    assert statuses == ["blocked", "loaded", "loaded"]
