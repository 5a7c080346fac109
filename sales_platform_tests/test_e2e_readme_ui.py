"""README "Operating from the UI", steps 1-5, done as written: clicks in headless Chromium where the
README says to click, its shell command in a subprocess, on the real webserver and daemon.

What must be in the warehouse is computed from the generated file and the catalogue by the oracle
(plain Python), never from the platform's own counts. Screenshots: one per step, folder printed.
"""

from __future__ import annotations

import csv
import re
import shlex
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sales_platform.core import settings
from sales_platform.core.crypto import Keyring, Tokenizer
from sales_platform.core.warehouse.tables import dim_products
from sales_platform_tests.e2e import REPO, DagsterStack, check_passed, executable, expect_type
from sales_platform_tests.helpers import SALES_CHAIN
from sales_platform_tests.oracle import Drop
from sales_platform_tests.test_e2e_browser import dismiss_community_dialog, page  # noqa: F401 (fixture)
from sales_platform_tests.test_e2e_daemon import (
    LOAD_TIMEOUT_S,
    assert_files_match_oracle,
    ledger_statuses,
)

README = REPO / "README.md"
SECTION = "## Operating from the UI"
FEBRUARY = "february.csv"
FEBRUARY_DAYS = ["2024-02-01", "2024-02-02", "2024-02-03"]
# README step 4: what to type into the lineage filter; the range is of the days step 3 loaded.
LINEAGE_FILTER = "key:raw_sales or group:sales"
BACKFILL_RANGE = "[2024-02-01...2024-02-03]"
# What this test clicks or types, as the section writes it (whitespace collapsed).
README_WORDS = ("**Jobs → products_job → Materialize all**", "Under **Automation**, switch on",
                "`incoming_files_sensor` and `landed_days_sensor`", "**Runs** shows one `land_files_job` run",
                f"**Lineage** → type `{LINEAGE_FILTER}` into *Search and filter assets* and press Enter",
                "→ **Materialize all…** → *Partition selection* (click *Show all partitions*",
                "and press Enter → **Launch backfill**", "open **Checks**")
CHECKS_BY_ASSET = {"sales": ("rows_conserved", "transaction_id_unique", "schema_unchanged"),
                   "cleaned_sales": ("reject_rate_below_threshold",),
                   "raw_sales": ("no_quarantined_files",)}
SENSORS_TO_SWITCH_ON = ("incoming_files_sensor", "landed_days_sensor")

BACKFILLS = """
query Backfills {
  partitionBackfillsOrError(limit: 10) {
    __typename ... on PartitionBackfills { results { id status assetSelection { path } } }
  }
}"""


# ---- the README -------------------------------------------------------------------------------------

def readme_ui_section() -> str:
    """The section's text, whitespace collapsed (so line wrapping does not matter)."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return " ".join(text[start:end].split())


def readme_generate_command(section: str, data_dir: Path) -> list[str]:
    """Step 3's `sales-platform generate …` exactly as written, its `data/` path in the stack's data dir."""
    found = re.search(r"`(?:\.venv/bin/)?sales-platform (generate [^`]+)`", section)
    assert found, f"no sales-platform generate command in README section {SECTION!r}"
    words = shlex.split(found.group(1))
    return [str(data_dir / w.removeprefix("data/")) if w.startswith("data/") else w for w in words]


# ---- independent expectations ------------------------------------------------------------------------

def cents(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def catalogue_products(path: Path) -> set[tuple[str, str, str, Decimal]]:
    """(product_id, name, category, unit_price) of every product in the catalogue CSV."""
    with open(path, newline="") as handle:
        return {(r["product_id"], r["name"], r["category"], cents(r["unit_price"]))
                for r in csv.DictReader(handle)}


def warehouse_products(stack: DagsterStack) -> set[tuple[str, str, str, Decimal]]:
    """dim_products with the product tokens decrypted."""
    tokenizer = Tokenizer(Keyring.from_secrets(stack.env[settings.ENCRYPTION_KEY]))
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(dim_products.c.product_token, dim_products.c.name,
                                       dim_products.c.category, dim_products.c.unit_price)).all()
    finally:
        engine.dispose()
    return {(tokenizer.decrypt(t), n, c, cents(p)) for t, n, c, p in rows}


# ---- UI helpers --------------------------------------------------------------------------------------

def nav(ui: Any, name: str) -> None:
    """Click an entry of the left navigation (Jobs, Automation, Lineage, …)."""
    ui.get_by_role("navigation").get_by_text(name, exact=True).click()


def automation_row(ui: Any, name: str) -> Any:
    return ui.locator("[data-index]").filter(has_text=name)


def switch_on(ui: Any, name: str) -> None:
    """The row's toggle (the last checkbox; the first selects the row). Its input is hidden under the
    drawn switch, so click the switch's label as a person clicks the switch."""
    from playwright.sync_api import expect

    row = automation_row(ui, name)
    toggle = row.get_by_role("checkbox").last
    expect(toggle).not_to_be_checked()
    row.locator("label").last.click()
    expect(toggle).to_be_checked()


def latest_backfill(stack: DagsterStack, known: set[str]) -> str | None:
    result = stack.gql(BACKFILLS)["partitionBackfillsOrError"]
    expect_type(result, "PartitionBackfills")
    new = [b["id"] for b in result["results"] if b["id"] not in known]
    return new[0] if new else None


def backfill_ids(stack: DagsterStack) -> set[str]:
    return {b["id"] for b in stack.gql(BACKFILLS)["partitionBackfillsOrError"]["results"]}


def row_counts(materializations: list[dict[str, Any]]) -> dict[str, int]:
    return {m["partition"]: next(e["intValue"] for e in m["metadataEntries"]
                                 if e["label"] == "dagster/row_count")
            for m in materializations}


# ---- the walkthrough ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_readme_ui_walkthrough(dagster_stack: DagsterStack, page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    section = readme_ui_section()
    missing = [words for words in README_WORDS if words not in section]
    assert not missing, f"README {SECTION!r} no longer says what this test does: {missing}"
    stack = dagster_stack
    generate = readme_generate_command(section, stack.data_dir)
    february = stack.data_dir / "incoming" / FEBRUARY
    assert generate[-2:] == ["--out", str(february)], generate
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    catalogue = stack.data_dir / "catalogue" / "products.csv"
    # The catalogue as step 1 loads it (step 3's generate rewrites the file with a new updated_at).
    loaded_catalogue = tmp_path / "products_as_loaded.csv"
    loaded_catalogue.write_bytes(catalogue.read_bytes())

    # 1. Jobs -> products_job -> Materialize all
    products_before = {r["runId"] for r in stack.runs("products_job")}
    page.goto(stack.url)
    dismiss_community_dialog(page)
    nav(page, "Jobs")
    page.get_by_role("link", name="products_job").first.click()
    page.get_by_role("button", name="Materialize all").click()
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    page.screenshot(path=str(shots / "1_products_job.png"))
    run = stack.wait_until("the products_job run launched from the UI",
                           lambda: next((r for r in stack.runs("products_job")
                                         if r["runId"] not in products_before), None))
    stack.wait_for_run(run["runId"], timeout=LOAD_TIMEOUT_S)
    want_products = catalogue_products(loaded_catalogue)
    assert want_products, "the catalogue is empty: the comparison would be vacuous"
    assert warehouse_products(stack) == want_products

    try:
        # 2. Automation: switch the two sensors on; the alert sensor is on, the schedule listed.
        # The stack is shared: the sensors start from off, as on a fresh instance
        stack.stop_sensors_settled(SENSORS_TO_SWITCH_ON)
        nav(page, "Automation")
        expect(automation_row(page, "aggregates_schedule")).to_be_visible()
        expect(automation_row(page, "run_failure_alert_sensor").get_by_role("checkbox").last).to_be_checked()
        for name in SENSORS_TO_SWITCH_ON:
            switch_on(page, name)
        page.screenshot(path=str(shots / "2_automation.png"))
        for name in (*SENSORS_TO_SWITCH_ON, "run_failure_alert_sensor"):
            assert stack.sensor(name)["sensorState"]["status"] == "RUNNING", name

        # 3. The README's generate command; the sensors land and load the file
        subprocess.run([executable("sales-platform"), *generate], env=stack.env, cwd=REPO, check=True,
                       capture_output=True, timeout=120)
        content = february.read_bytes()  # before the landing moves it away
        by_file = {"sales_platform/file": FEBRUARY}
        stack.wait_for_successful_run(f"the landing run for {FEBRUARY}", "land_files_job", by_file)
        stack.wait_for_successful_run(f"the load run for {FEBRUARY}", "daily_sales_job", by_file,
                                      timeout=LOAD_TIMEOUT_S)
        stack.wait_until(f"{FEBRUARY} loaded in file_ledger", lambda: ledger_statuses(stack, FEBRUARY),
                         until=lambda statuses: statuses == ["loaded"], timeout=LOAD_TIMEOUT_S)
        nav(page, "Runs")
        expect(page.get_by_text("land_files_job").first).to_be_visible()
        page.screenshot(path=str(shots / "3_runs.png"))
    finally:
        for name in SENSORS_TO_SWITCH_ON:  # the stack is shared by the session's other tests
            stack.stop_sensor(name)
    landings = stack.runs("land_files_job", by_file)
    assert [r["status"] for r in landings] == ["SUCCESS"], f"{FEBRUARY} landed more than once: {landings}"
    drops = [Drop(FEBRUARY, content)]
    expected = assert_files_match_oracle(stack.db_url, stack.env[settings.ENCRYPTION_KEY], drops,
                                         loaded_catalogue)
    want_by_day = {d.isoformat(): n for d, n in expected.rows_by_day().items()}
    assert sorted(want_by_day) == FEBRUARY_DAYS

    # 4. Lineage -> filter -> Materialize all… -> partition range -> Launch backfill
    known_backfills = backfill_ids(stack)
    nav(page, "Lineage")
    page.locator(".CodeMirror:visible").first.click()
    page.keyboard.type(LINEAGE_FILTER)
    page.keyboard.press("Enter")
    page.get_by_role("button", name=re.compile("Materialize all")).click()
    dialog = page.get_by_role("dialog").filter(
        has_text=f"Launch runs to materialize {len(SALES_CHAIN)} assets")
    expect(dialog).to_be_visible()
    dialog.get_by_text("Show all partitions").click()  # February 2024 is older than the last 90 days
    keys = dialog.get_by_role("textbox")
    keys.fill(BACKFILL_RANGE)
    keys.press("Enter")
    expect(dialog.get_by_text(f"{len(FEBRUARY_DAYS)} partitions", exact=True)).to_be_visible()
    page.screenshot(path=str(shots / "4_backfill_dialog.png"))
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(dialog).to_be_hidden()
    backfill_id = stack.wait_until("the backfill launched from the UI",
                                   lambda: latest_backfill(stack, known_backfills))
    backfill = stack.wait_for_backfill(backfill_id, timeout=LOAD_TIMEOUT_S)
    assert sorted(backfill["partitionNames"]) == FEBRUARY_DAYS
    runs = stack.runs(tags={"dagster/backfill": backfill_id})
    assert [r["status"] for r in runs] == ["SUCCESS"], f"one run for the range expected: {runs}"
    from_backfill = [m for m in stack.materializations("sales", FEBRUARY_DAYS)
                     if m["runId"] == runs[0]["runId"]]
    assert row_counts(from_backfill) == want_by_day  # each day its own count, not the range's
    assert_files_match_oracle(stack.db_url, stack.env[settings.ENCRYPTION_KEY], drops, loaded_catalogue)

    # 5. Checks tab on sales (and its upstreams); a verdict per day from the range run
    for asset, checks in CHECKS_BY_ASSET.items():
        page.goto(f"{stack.url}/assets/{asset}")
        page.get_by_role("tab", name="Checks").click()
        for check in checks:
            expect(page.get_by_text(check, exact=True).first).to_be_visible()
        page.screenshot(path=str(shots / f"5_checks_{asset}.png"))
    for check in CHECKS_BY_ASSET["sales"]:
        for day in FEBRUARY_DAYS:
            verdicts = [e for e in stack.check_executions("sales", check, partition=day)
                        if e["runId"] == runs[0]["runId"]]
            assert verdicts and all(check_passed(e) for e in verdicts), f"sales/{check} {day}: {verdicts}"
