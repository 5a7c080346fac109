"""Layer rules, read from the source: ``core/`` is Dagster-free and imports nothing from the Dagster
wiring (resources, domains, definitions), so its data logic runs and is tested without Dagster.

The test parses every module (imports inside functions included) instead of importing it, so a lazy
import in a rarely used function cannot hide."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sales_platform"
WIRING = ("dagster", "dagster_", "sales_platform.resources", "sales_platform.defs",
          "sales_platform.api", "sales_platform.uploads", "sales_platform.definitions",
          "sales_platform.partitions", "sales_platform.metadata", "sales_platform.checks",
          "sales_platform.versioning", "sales_platform.cli", "sales_platform.rotation_cli")
# resources sit between core and the definitions: they may use core (and the HTTP services they run
# in-process), never the domains that use them or the CLI
ABOVE_RESOURCES = ("sales_platform.defs", "sales_platform.definitions", "sales_platform.cli",
                   "sales_platform.rotation_cli")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def forbidden(module: str) -> bool:
    return any(module == rule or module.startswith(rule if rule.endswith("_") else rule + ".")
               or (rule == "dagster" and module == "dagster") for rule in WIRING)


def test_core_imports_no_dagster_and_no_wiring():
    offences = {f"{path.relative_to(PACKAGE.parent)}: {module}"
                for path in sorted((PACKAGE / "core").rglob("*.py"))
                for module in imported_modules(path) if forbidden(module)}
    assert not offences, "core/ must stay Dagster-free:\n" + "\n".join(sorted(offences))


def test_resources_import_no_domain():
    offences = {f"{path.relative_to(PACKAGE.parent)}: {module}"
                for path in sorted((PACKAGE / "resources").rglob("*.py"))
                for module in imported_modules(path)
                if any(module == rule or module.startswith(rule + ".") for rule in ABOVE_RESOURCES)}
    assert not offences, "resources/ must not depend on the definitions:\n" + "\n".join(sorted(offences))


def test_the_rule_catches_what_it_should():
    assert forbidden("dagster") and forbidden("dagster._core.storage") and forbidden("dagster_celery")
    assert forbidden("sales_platform.resources.factory") and forbidden("sales_platform.defs.sales.assets")
    assert not forbidden("sales_platform.core.crypto") and not forbidden("dagsterish")


def test_the_environment_is_read_in_the_settings_module_only():
    """One source of truth for configuration: other modules ask core/settings.py (value, flag,
    env_number...). The CLI may only *set* DAGSTER_HOME for the runs it starts."""
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "core" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    allowed = {"sales_platform/cli.py"}  # os.environ["DAGSTER_HOME"] = … (a write, for Dagster)
    assert [r for r in readers if r.split(":")[0] not in allowed] == []
