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


# --- no import circles -----------------------------------------------------------------------------
# Every import counts, wherever it stands (inside a function, under TYPE_CHECKING): a circle hidden
# behind a lazy import is still a circle. ``from pkg import name`` is an edge to the submodule
# ``pkg.name`` when there is one, else to ``pkg``; ``import a.b.c`` is an edge to ``a.b.c`` (not to the
# packages ``a`` and ``a.b`` Python sets up on the way); an import from outside the package is none.
TOP_PACKAGES = ("api", "resources", "uploads", "defs", "core")

Edges = dict[str, dict[str, list[str]]]  # module -> imported module -> where ("path:line")


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its __init__.py)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(root: Path) -> Edges:
    """The module import graph of the package at ``root``, read with ``ast`` (nothing imported)."""
    modules = package_modules(root)

    def inside(name: str) -> str | None:  # the module that ``name`` (or its longest prefix) is
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: Edges = {module: {} for module in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [inside(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else inside(base)
                           for alias in node.names]
            for target in targets:
                if target is not None:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    written = edges[module].setdefault(target, [])
                    if where not in written:  # one line may import several names of a module
                        written.append(where)
    return edges


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def describe(component: list[str], edges: Edges, node_of=lambda module: module) -> str:
    """A circle and the imports that make it (each edge inside it, with where it is written)."""
    members = set(component)
    lines = [" <-> ".join(component)]
    for module in sorted(edges):
        for target, where in sorted(edges[module].items()):
            a, b = node_of(module), node_of(target)
            if a != b and a in members and b in members:
                written = sorted(where, key=lambda w: (w.rpartition(":")[0], int(w.rpartition(":")[2])))
                lines.append(f"    {module} -> {target}  ({', '.join(written)})")
    return "\n".join(lines)


def module_circles(root: Path) -> list[str]:
    edges = import_graph(root)
    found = [describe(c, edges) for c in circles({m: set(t) for m, t in edges.items()})]
    found += [f"{m} imports itself ({', '.join(t[m])})" for m, t in sorted(edges.items()) if m in t]
    return found


def package_circles(root: Path, packages: tuple[str, ...] = TOP_PACKAGES) -> list[str]:
    """Circles once each of ``packages`` is one node (an import between two of its modules is
    inside it); the package's other modules (cli.py, metadata.py...) stay nodes of their own, so
    a way round through one of them counts too."""
    prefixes = [f"{root.name}.{p}" for p in packages]

    def node_of(module: str) -> str:
        return next((p for p in prefixes if module == p or module.startswith(p + ".")), module)

    edges = import_graph(root)
    graph: dict[str, set[str]] = {}
    for module, targets in edges.items():
        graph.setdefault(node_of(module), set()).update(node_of(t) for t in targets)
    for node, targets in graph.items():
        targets.discard(node)
    return [describe(c, edges, node_of) for c in circles(graph)]


def test_no_import_circles_between_modules():
    found = module_circles(PACKAGE)
    assert not found, "import circles in sales_platform/ (break them; a lazy import does not):\n" \
        + "\n".join(found)


def test_no_import_circles_between_the_top_level_packages():
    found = package_circles(PACKAGE)
    assert not found, f"import circles between {', '.join(TOP_PACKAGES)}:\n" + "\n".join(found)


def test_the_circle_finder_sees_every_kind_of_import(tmp_path: Path):
    """Lazy, TYPE_CHECKING, ``from pkg import submodule`` and relative imports are all edges."""
    files = {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/one.py": "def f():\n    from pkg.b import two\n",  # lazy, names a submodule
        "b/__init__.py": "",
        "b/two.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a.one import f\n",
        "c.py": "import os\nimport pkg.c.x\n",  # a longest prefix that is a module: pkg.c itself
        "d.py": "from pkg import a\n",  # a package is a module too (its __init__.py)
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    root = tmp_path / "pkg"
    edges = import_graph(root)
    assert set(edges["pkg.a.one"]) == {"pkg.b.two"} and set(edges["pkg.b.two"]) == {"pkg.a.one"}
    assert set(edges["pkg.d"]) == {"pkg.a"}
    found = module_circles(root)
    assert found[0].startswith("pkg.a.one <-> pkg.b.two") and "pkg/a/one.py:2" in found[0]
    assert found[1] == "pkg.c imports itself (pkg/c.py:2)" and len(found) == 2
    assert package_circles(root, ("a", "b"))[0].startswith("pkg.a <-> pkg.b")
    assert package_circles(root, ("a",)) == [found[0].replace("pkg.a.one <->", "pkg.a <->")]
