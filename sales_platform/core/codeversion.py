"""A stage's version derived from its code: a hash of its source and of the platform code it calls.

Hand-edited version strings ("sales-1") are forgotten when a stage changes; a hash of the source is
not. The hash covers the stage function and, transitively, every function and class of
``sales_platform`` it names (directly or as ``module.attribute``) or closes over (a stage made by a
factory), and the plain constants and table definitions it names, so a change to a core rule a
stage calls changes the stage's version too.
Objects whose repr would differ between processes are left out: the version must be the same in
the webserver, the daemon and every step process. Third-party code (pandas, SQLAlchemy, Dagster)
is left out: a library upgrade is not a change of our stage. Computed once, at import.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import tokenize
import types
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Table

PACKAGE = "sales_platform"
PREFIX = "src-"
MAX_OBJECTS = 400  # a bound on the walk; the platform is far smaller


def _ours(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) if not isinstance(obj, types.ModuleType) else obj.__name__
    return isinstance(module, str) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and the code of every function, lambda or comprehension nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _names(obj: Any) -> set[str]:
    if isinstance(obj, types.FunctionType):
        return {name for code in _codes(obj.__code__) for name in code.co_names}
    if isinstance(obj, type):
        return {name for member in vars(obj).values() if isinstance(member, types.FunctionType)
                for name in _names(member)}
    return set()


def _constant(value: Any) -> bool:
    """Plain values whose repr is the same in every process (no object addresses)."""
    if isinstance(value, str | int | float | bool | Decimal | bytes | type(None)):
        return True
    if isinstance(value, tuple | list | frozenset | set):
        try:
            return all(_constant(v) for v in value)
        except Exception:  # noqa: BLE001 - a tuple-like record that refuses iteration (AssetKey)
            return False
    if isinstance(value, dict):
        return all(_constant(k) and _constant(v) for k, v in value.items())
    return isinstance(value, Table)  # a table's repr lists its columns and types


def _wanted(value: Any) -> bool:
    return not isinstance(value, types.ModuleType) and (_ours(value) or _constant(value))


def _referenced(obj: Any) -> Iterator[tuple[str, Any]]:
    """(name, object) of the platform code and constants ``obj`` names: globals of its module, and
    attributes of platform modules (``agg.refresh_daily``)."""
    if not isinstance(obj, types.FunctionType | type):
        return
    names = _names(obj)
    scope = obj.__globals__ if isinstance(obj, types.FunctionType) else vars(inspect.getmodule(obj))
    home = obj.__module__
    for name in sorted(names):
        value = scope.get(name)
        if isinstance(value, types.ModuleType) and _ours(value):
            for attr in sorted(names):
                found = getattr(value, attr, None)
                if found is not None and _wanted(found):
                    yield f"{value.__name__}.{attr}", found
        elif value is not None and _wanted(value):
            yield f"{home}.{name}", value
    if isinstance(obj, types.FunctionType) and obj.__closure__:
        # a function made by a factory: what it closes over (a core function, a table) is its code
        for var, cell in zip(obj.__code__.co_freevars, obj.__closure__, strict=True):
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            if _wanted(value):
                yield f"{home}.{obj.__qualname__}.{var}", value


def _stable_repr(value: Any) -> str:
    if isinstance(value, frozenset | set):  # set order follows string hashing, random per process
        return "{" + ", ".join(sorted(_stable_repr(v) for v in value)) + "}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_stable_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


# id -> (object, source): stages share most of their closure; the object is kept so its id stays its own
_SOURCES: dict[int, tuple[Any, str]] = {}


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@cache
def _spans(filename: str) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """A module file's lines and ``{qualname: (first line with decorators, last line)}`` of every
    function and class in it, from one parse (``inspect.getsource`` re-reads and tokenizes per
    object, and parses the whole module for each class: most of the import time of the stages)."""
    with tokenize.open(filename) as handle:  # the file's declared encoding, as Python reads it
        text = handle.read()
    spans: dict[str, tuple[int, int]] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _DEFINITIONS):
                qualname = prefix + child.name
                first = min([d.lineno for d in child.decorator_list] + [child.lineno])
                spans.setdefault(qualname, (first, child.end_lineno or child.lineno))
                inner = "." if isinstance(child, ast.ClassDef) else ".<locals>."
                walk(child, qualname + inner)
            elif isinstance(child, ast.stmt):  # if/try/with blocks: same scope
                walk(child, prefix)

    walk(ast.parse(text, filename), "")
    return text.splitlines(keepends=True), spans


def _defined_in(obj: Any) -> str | None:
    if isinstance(obj, types.FunctionType):
        return obj.__code__.co_filename
    module = inspect.getmodule(obj)
    return getattr(module, "__file__", None)


def _definition_source(obj: Any) -> str:
    filename = _defined_in(obj)
    if filename and filename.endswith(".py"):
        try:
            lines, spans = _spans(filename)
        except (OSError, SyntaxError, UnicodeDecodeError):
            lines, spans = [], {}
        first, last = spans.get(obj.__qualname__, (0, 0))
        # a function must start where its code says (a name defined twice falls back below)
        if first and (not isinstance(obj, types.FunctionType) or first == obj.__code__.co_firstlineno):
            return "".join(lines[first - 1:last])
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return obj.__qualname__  # code without a file (a REPL): its name is all there is


def _source(obj: Any) -> str:
    if _constant(obj):
        return _stable_repr(obj)
    if id(obj) not in _SOURCES:
        _SOURCES[id(obj)] = (obj, _definition_source(obj))
    return _SOURCES[id(obj)][1]


def _identity(name: str, obj: Any) -> str:
    if isinstance(obj, types.FunctionType | type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return name


def source_closure(stage: Callable[..., Any]) -> dict[str, str]:
    """``{qualified name: source}`` of the stage and of the platform code and constants it reaches."""
    seen: dict[str, str] = {}
    start = inspect.unwrap(stage)
    todo: list[tuple[str, Any]] = [("", start)]
    while todo and len(seen) < MAX_OBJECTS:
        name, obj = todo.pop()
        key = _identity(name, obj)
        if key in seen:
            continue
        seen[key] = _source(obj)
        todo.extend(_referenced(obj))
    return seen


def code_version(stage: Callable[..., Any]) -> str:
    """``src-<12 hex>``: the sha256 of the stage's source closure (sorted, so order never matters)."""
    digest = hashlib.sha256()
    for name, source in sorted(source_closure(stage).items()):
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    return PREFIX + digest.hexdigest()[:12]
