"""The UI as a person uses it: headless Chromium (Playwright) against the real webserver and daemon.

Opens the asset graph, the `sales` partitions page and its Checks tab, then materializes one
partition from the asset page's Materialize dialog and sees it reported as materialized. After a
rollups_job run, the sales_report asset page shows its charts as decoded images (issue 17).
Screenshots land in a folder under the pytest tmp dir (its path is printed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from sales_platform_tests.conftest import skip_or_fail
from sales_platform_tests.e2e import IN_PROCESS, RUN_TIMEOUT_S, DagsterStack, generated_file

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
UI_DAY = "2024-03-05"
UPSTREAM = ["raw_sales", "cleaned_sales", "sales_rejects", "encrypted_sales"]
UI_TIMEOUT_MS = 30_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium page (own profile dir); closed even if the test fails."""
    if not CHROMIUM.exists():
        skip_or_fail("Chromium not installed: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright for Python not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def dismiss_community_dialog(page: Any) -> None:
    """The first visit to a new instance may ask to "Join the Dagster community": skip it, now or later."""
    skip = page.get_by_role("dialog").filter(has_text="Join the Dagster community").get_by_role(
        "button", name="Skip")
    page.add_locator_handler(skip, lambda button: button.click())
    try:
        skip.wait_for(state="visible", timeout=5_000)
        skip.click()
    except Exception:  # Playwright's TimeoutError: the dialog did not come up
        pass


def launch_partition_from_dialog(page: Any, partition: str) -> None:
    """Materialize… -> partition selection (all time, one key typed in) -> Launch 1 run."""
    from playwright.sync_api import expect

    page.get_by_role("button", name=re.compile(r"Materialize")).first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize sales")
    expect(dialog).to_be_visible()
    show_all = dialog.get_by_text("Show all partitions")
    if show_all.is_visible():  # by default the dialog offers only the last 90 days
        show_all.click()
    keys = dialog.get_by_role("textbox")
    keys.fill(partition)
    keys.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(dialog).to_be_hidden()


def wait_for_ui_run(stack: DagsterStack, partition: str, not_run: str) -> dict[str, Any]:
    """The run the dialog launched (tagged with the partition; not our upstream run) has succeeded."""
    def probe() -> dict[str, Any] | None:
        runs = [r for r in stack.runs(tags={"dagster/partition": partition}) if r["runId"] != not_run]
        return stack.wait_for_run(runs[0]["runId"]) if runs else None

    return stack.wait_until(f"a run for {partition} launched from the UI", probe, RUN_TIMEOUT_S)


@pytest.mark.slow
def test_materialize_a_partition_from_the_ui(products_loaded: DagsterStack, sensors_stopped: DagsterStack,
                                             page: Any, tmp_path: Path):
    from playwright.sync_api import expect

    stack = products_loaded
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    # Upstream of `sales` for the day, through GraphQL, so the UI run loads real rows; it runs
    # while the browser looks around.
    stack.drop(generated_file(UI_DAY))
    upstream = stack.launch_job("daily_sales_job", {"dagster/partition": UI_DAY}, UPSTREAM, IN_PROCESS)

    page.goto(f"{stack.url}/asset-groups")
    dismiss_community_dialog(page)
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    expect(page.get_by_text("sales", exact=True).first).to_be_visible()
    page.screenshot(path=str(shots / "1_asset_graph.png"))

    page.goto(f"{stack.url}/assets/sales")
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text(re.compile(r"Partitions Selected"))).to_be_visible()
    page.screenshot(path=str(shots / "2_partitions.png"))

    page.get_by_role("tab", name="Checks").click()
    for check in ("rows_conserved", "transaction_id_unique"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
    page.screenshot(path=str(shots / "3_checks.png"))

    stack.wait_for_run(upstream)
    launch_partition_from_dialog(page, UI_DAY)
    run = wait_for_ui_run(stack, UI_DAY, not_run=upstream)

    page.goto(f"{stack.url}/assets/sales?view=partitions&partition={UI_DAY}")
    expect(page.get_by_text(UI_DAY, exact=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.get_by_text(run["runId"][:8], exact=True)).to_be_visible()  # the latest run, shortened
    page.screenshot(path=str(shots / "4_after_success.png"))
    latest = max(stack.materializations("sales", [UI_DAY]), key=lambda m: int(m["timestamp"]))
    assert latest["runId"] == run["runId"]


REPORT_DAY = "2024-03-04"  # a generated day; loaded again harmlessly if another test did
SALES_DAY_ASSETS = [*UPSTREAM, "sales", "agg_sales_daily"]


def rendered_images(page: Any) -> list[dict[str, Any]]:
    """<img> elements showing inline (data:) or blob: URLs, with their decoded size."""
    return page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => /^(data|blob):/.test(i.src)).map(i => ({src: i.src.slice(0, 30), "
        "width: i.naturalWidth, height: i.naturalHeight, complete: i.complete}))")


@pytest.mark.slow
def test_sales_report_charts_show_on_the_asset_page(products_loaded: DagsterStack,
                                                     sensors_stopped: DagsterStack, page: Any,
                                                     tmp_path: Path):
    """rollups_job (launched through GraphQL) renders sales_report; its asset page shows the charts
    as images the browser decoded (naturalWidth > 0), one per chart file in blob storage."""
    from playwright.sync_api import expect

    stack = products_loaded
    shots = tmp_path / "screenshots"
    shots.mkdir()
    stack.drop(generated_file(REPORT_DAY))
    stack.wait_for_run(stack.launch_job("daily_sales_job", {"dagster/partition": REPORT_DAY},
                                        SALES_DAY_ASSETS, IN_PROCESS))
    run = stack.wait_for_run(stack.launch_job("rollups_job", run_config=IN_PROCESS))
    charts = sorted((stack.data_dir / "blob" / "reports").rglob("*.png"))
    assert len(charts) >= 3, charts  # daily revenue, revenue by category, reject reasons

    page.goto(f"{stack.url}/assets/sales_report")
    dismiss_community_dialog(page)
    # the latest materialization links to this run; the charts sit behind the metadata's markdown
    expect(page.locator(f'a[href*="/runs/{run["runId"]}"]').first).to_be_visible(timeout=UI_TIMEOUT_MS)
    # the bar tables show on the page itself, the full charts behind the metadata's button
    day = page.get_by_role("row").filter(has=page.get_by_role("cell", name="revenue_by_day", exact=True))
    shown_day = date.fromisoformat(REPORT_DAY).strftime("%d\u00a0%b")
    expect(day.get_by_role("cell", name=shown_day, exact=True)).to_be_visible()
    expect(day).to_contain_text("█")
    expect(day.get_by_text("Show Markdown")).to_have_count(0)
    page.screenshot(path=str(shots / "sales_report_page.png"), animations="disabled")
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="charts", exact=True))
    row.get_by_text("Show Markdown").click()
    images = stack.wait_until("the report charts decoded in the page", lambda: rendered_images(page),
                              timeout=UI_TIMEOUT_MS / 1000,
                              until=lambda found: len(found) >= 3 and all(i["width"] > 0 for i in found))
    page.screenshot(path=str(shots / "sales_report_charts.png"), animations="disabled")
    print(f"screenshot: {shots / 'sales_report_charts.png'}; images: {images}")
    assert all(i["width"] > 100 and i["height"] > 100 for i in images), images


TIMELINE_DAY = REPORT_DAY  # a generated day; a second drop of it is a harmless duplicate
RUN_ORIGIN = """
query RunOrigin($runId: ID!) {
  runOrError(runId: $runId) {
    __typename ... on Run { pipelineName repositoryOrigin { repositoryLocationName repositoryName } }
  }
}"""


@pytest.mark.slow
def test_cli_runs_show_on_the_timeline(products_loaded: DagsterStack, sensors_stopped: DagsterStack,
                                       page: Any, tmp_path: Path):
    """`sales-platform run` on the UI's instance: each of its runs carries the workspace's code
    location, so Overview -> Timeline lists them beside the UI's own runs."""
    import subprocess

    from playwright.sync_api import expect

    from sales_platform_tests.e2e import LOCATION, REPO, REPOSITORY, executable

    stack = products_loaded
    stack.drop(generated_file(TIMELINE_DAY))
    done = subprocess.run([executable("sales-platform"), "run", "--first", TIMELINE_DAY, "--last",
                           TIMELINE_DAY], env=stack.env, cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    run_ids = re.findall(r"\(run ([0-9a-f-]{36})\)", done.stdout)
    assert len(run_ids) == 4, done.stdout  # products, landing, daily, rollups
    for run_id in run_ids:
        run = stack.gql(RUN_ORIGIN, runId=run_id)["runOrError"]
        assert run["repositoryOrigin"] == {"repositoryLocationName": LOCATION,
                                           "repositoryName": REPOSITORY}, run

    page.goto(f"{stack.url}/overview/activity/timeline")
    dismiss_community_dialog(page)
    for job in ("products_job", "land_files_job", "daily_sales_job", "rollups_job"):
        expect(page.get_by_text(job, exact=True).first).to_be_visible()
    page.screenshot(path=str(tmp_path / "timeline.png"))
    print(f"screenshot: {tmp_path / 'timeline.png'}")
