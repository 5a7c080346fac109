"""The whole Definitions loads, and the graph is what the README promises."""

import dagster as dg
import pytest

from sales_platform.definitions import defs


def test_definitions_load_and_hold_the_sales_graph():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_sales", "cleaned_sales", "encrypted_sales", "sales", "sales_rejects",
            "agg_sales_daily", "agg_sales_yearly", "dim_products"} <= keys
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert "raw_sales" in parents["cleaned_sales"]
    assert parents["encrypted_sales"] == {"cleaned_sales"}
    assert parents["sales"] == {"encrypted_sales"}
    assert "sales" in parents["agg_sales_daily"]


def test_every_asset_has_group_description_owner_and_code_version():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        assert node.owners, key
        assert node.code_version, key


def test_partitioned_assets_have_a_backfill_policy_and_checks_are_partitioned():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is not None:
            assert node.backfill_policy is not None, key
    checks = {k.name for k in graph.asset_check_keys}
    assert {"no_quarantined_files", "reject_rate_below_threshold", "rows_conserved",
            "transaction_id_unique"} <= checks


def test_jobs_resolve():
    for name in ("daily_sales_job", "land_files_job", "products_job", "rollups_job"):
        assert defs.resolve_job_def(name) is not None


@pytest.mark.parametrize(("choice", "name"), [("", "in_process"),
                                              ("multiprocess", "multiprocess_forkserver"),
                                              ("in_process", "in_process")])
def test_the_executor_follows_the_setting(monkeypatch, choice, name):
    from sales_platform.resources.factory import executor

    monkeypatch.setenv("SALES_PLATFORM_EXECUTOR", choice)
    assert executor().name == name


def test_an_unknown_executor_is_refused_with_its_variable(monkeypatch):
    from sales_platform.resources.factory import executor

    monkeypatch.setenv("SALES_PLATFORM_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="SALES_PLATFORM_EXECUTOR='dask'"):
        executor()


def test_every_setting_the_code_reads_is_in_the_configuration_reference():
    """Each SALES_PLATFORM_* name in the code has its own row in docs/configuration.md's tables."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    in_code = {name for path in (root / "sales_platform").rglob("*.py")
               for name in re.findall(r"SALES_PLATFORM_[A-Z0-9_]+[A-Z0-9]", path.read_text())}
    rows = {m for line in (root / "docs" / "configuration.md").read_text().splitlines()
            if line.startswith("| `") for m in re.findall(r"^\| `(SALES_PLATFORM_[A-Z0-9_]+)`", line)}
    assert in_code, "no settings found: the scan is wrong"
    assert sorted(in_code - rows) == []
    # each row renders as three cells (an unescaped | would shift them)
    for line in (root / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `SALES_PLATFORM_"):
            assert len(re.split(r"(?<!\\)\|", line)) == 5, line
