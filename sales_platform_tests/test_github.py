"""The GitHub files: valid against GitHub's published schemas, and CI doing what .ci/run does.

The schemas are SchemaStore's, as vendored by check-jsonschema (``--builtin-schema vendor.*``):
no network. Each schema is also shown to reject a broken file, so a check that always passes
cannot hide here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from check_jsonschema import main as check_jsonschema
from click.testing import CliRunner
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github"
WORKFLOW = GITHUB / "workflows" / "ci.yml"
DEPENDABOT = GITHUB / "dependabot.yml"
CI_RUN = ROOT / ".ci" / "run"


def _validate(schema: str, *files: Path) -> tuple[int, str]:
    result = CliRunner().invoke(check_jsonschema,
                                ["--builtin-schema", schema, *(str(f) for f in files)])
    return result.exit_code, result.output


def _yaml(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())  # YAML 1.2: the key `on` stays a string


@pytest.mark.parametrize(("schema", "files"), [
    ("vendor.github-workflows", [WORKFLOW]),
    ("vendor.dependabot", [DEPENDABOT]),
    ("vendor.github-issue-forms", sorted((GITHUB / "ISSUE_TEMPLATE").glob("*_*.yml"))),
    ("vendor.github-issue-config", [GITHUB / "ISSUE_TEMPLATE" / "config.yml"]),
])
def test_github_files_match_the_published_schemas(schema: str, files: list[Path]):
    assert files and all(f.exists() for f in files), files
    code, output = _validate(schema, *files)
    assert code == 0, output


def test_the_schemas_reject_broken_files(tmp_path: Path):
    workflow = WORKFLOW.read_text()
    no_runner = tmp_path / "ci.yml"
    no_runner.write_text(re.sub(r"(?m)^    runs-on: .*\n", "", workflow, count=2))
    code, output = _validate("vendor.github-workflows", no_runner)
    assert code == 1 and "runs-on" in output, output
    hourly = tmp_path / "dependabot.yml"
    hourly.write_text(DEPENDABOT.read_text().replace("interval: weekly", "interval: hourly"))
    code, output = _validate("vendor.dependabot", hourly)
    assert code == 1 and "hourly" in output, output


def _ci_run_packages() -> set[str]:
    (line,) = re.findall(r"^for pkg in ([^;]+);", CI_RUN.read_text(), flags=re.M)
    return set(line.split())


def test_the_workflow_runs_the_same_steps_as_ci_run():
    jobs = _yaml(WORKFLOW)["jobs"]
    test = jobs["test"]
    script = "\n".join(step.get("run", "") for step in test["steps"])
    command = script.replace("\\\n", " ").split("apt-get install", 1)[1].split("\n", 1)[0]
    installed = {word for word in command.split() if not word.startswith("-")}
    assert _ci_run_packages() <= installed, _ci_run_packages() - installed
    azurite = re.findall(r"azurite@[\d.]+", CI_RUN.read_text())
    assert azurite and azurite[0] in script, (azurite, script)
    # make install-dev installs the same Azurite for the dev setup
    assert re.findall(r"azurite@[\d.]+", (ROOT / "Makefile").read_text()) == azurite[:1]
    assert "odbcinst -i -d -f /usr/share/tdsodbc/odbcinst.ini" in script
    assert script.strip().splitlines()[-1] == "make test"
    assert test["env"]["CI"] == "true"
    assert {"postgres", "rabbitmq"} <= set(test["services"])
    # the suite finds the service containers through the variables its fixtures read
    conftest = (ROOT / "sales_platform_tests" / "conftest.py").read_text()
    celery = (ROOT / "sales_platform_tests" / "test_e2e_celery.py").read_text()
    assert "@postgres:5432/" in test["env"]["SALES_PLATFORM_TEST_PG_URL"]
    assert '"SALES_PLATFORM_TEST_PG_URL"' in conftest
    assert "@rabbitmq:5672/" in test["env"]["SALES_PLATFORM_TEST_AMQP_URL"]
    assert '"SALES_PLATFORM_TEST_AMQP_URL"' in celery
    # the whole CI budget, like .ci/run's
    assert test["timeout-minutes"] <= 90


def test_dependabot_watches_pip_and_the_actions():
    ecosystems = {u["package-ecosystem"] for u in _yaml(DEPENDABOT)["updates"]}
    assert ecosystems == {"pip", "github-actions"}


def test_codeowners_paths_exist_and_templates_are_there():
    for line in (GITHUB / "CODEOWNERS").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pattern, *owners = line.split()
        assert owners and all(o.startswith("@") for o in owners), line
        if pattern != "*":
            assert (ROOT / pattern.strip("/")).exists(), f"CODEOWNERS names a missing path: {line}"
    assert (GITHUB / "pull_request_template.md").read_text().strip()
    assert "## Branches" in (ROOT / "CONTRIBUTING.md").read_text()
