"""core/ must stay pure: no clock, randomness, files, sockets, event loops or logging (docs/adr/0001).

The check is an ALLOW-list: core may import only the standard-library modules named in ``ALLOWED_STDLIB``, its own
modules (relative imports, or ``callsd.core``), and nothing else; a deny-list would miss ``pathlib``, ``io`` or
``sqlite3``. It also refuses calls to the builtins that reach the outside world (``open``, ``print``...). Then the
shape of the house: the two rooms (``core/calls``, ``core/wire``) share only ``core/errors.py``, and core's own
imports run one way (no cycle), so that each module can be read with only what is below it in mind.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"

# Pure and deterministic standard-library modules: no I/O, no clock, no randomness, no process-wide state. Add a
# module here only if that holds for everything it offers (``random``, ``time``, ``os``, ``io``, ``pathlib``,
# ``logging``, ``sqlite3``, ``socket``, ``uuid``, ``secrets``, ``datetime``... never qualify).
ALLOWED_STDLIB = frozenset({
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "copy", "dataclasses", "enum", "functools",
    "hashlib", "heapq", "hmac", "itertools", "json", "math", "operator", "re", "string", "struct", "types", "typing",
    "zlib",
})
# Builtins that read or write the world (files, the terminal) or run code built at run time.
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__"})


def _absolute_imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def impurities(source: str) -> list[str]:
    """What in ``source`` a core module may not do: imports outside the allow-list, and forbidden calls."""
    tree = ast.parse(source)
    found = [
        f"import {name}"
        for name in _absolute_imports(tree)
        if name.split(".")[0] not in ALLOWED_STDLIB and not (name == "callsd.core" or name.startswith("callsd.core."))
    ]
    found += [
        f"call {node.func.id}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS
    ]
    return found


def test_core_imports_only_allowed_stdlib_and_calls_no_io_builtin() -> None:
    offenders = {
        str(path.relative_to(CORE)): bad for path in sorted(CORE.rglob("*.py")) if (bad := impurities(path.read_text()))
    }
    assert offenders == {}, f"core/ must not reach clocks, randomness, files or the network: {offenders}"


def test_the_check_catches_what_a_deny_list_would_miss() -> None:
    assert impurities("import time\n") == ["import time"]
    assert impurities("from time import monotonic\n") == ["import time"]
    assert impurities("import os.path\n") == ["import os.path"]
    assert impurities("import pathlib\nimport io\nimport sqlite3\n") == ["import pathlib", "import io",
                                                                         "import sqlite3"]
    assert impurities("import callsd.adapters.store\n") == ["import callsd.adapters.store"]
    assert impurities("def f(p):\n    with open(p) as fh:\n        return fh.read()\n") == ["call open()"]
    assert impurities("print('x')\n") == ["call print()"]
    assert impurities("from . import time\nimport json\nfrom callsd.core.calls import events\n") == []


# ---------------------------------------------------------------------- the shape of core's own imports


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["core", *parts])


def _core_imports(path: Path) -> set[str]:
    """The core modules ``path`` imports (relative or ``callsd.core``), anywhere in the file."""
    module = _module_of(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    known = {_module_of(p) for p in CORE.rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("callsd.core"):
                target = node.module.removeprefix("callsd.")
            else:
                continue
            for alias in node.names:  # ``from . import events`` names a module; ``from .x import Y`` a name in x
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found & known


def _graph() -> dict[str, set[str]]:
    return {_module_of(p): _core_imports(p) - {_module_of(p)} for p in CORE.rglob("*.py")}


def test_the_two_rooms_share_only_errors() -> None:
    crossings = {
        (module, target)
        for module, targets in _graph().items()
        for target in targets
        for room, other in (("core.calls", "core.wire"), ("core.wire", "core.calls"))
        if module.startswith(room) and target.startswith(other)
    }
    assert crossings == set(), f"core/calls and core/wire import each other: {sorted(crossings)}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                return [*path[path.index(target):], target]
            if target not in done:
                found = visit(target, [*path, target])
                if found is not None:
                    return found
        done.add(module)
        return None

    for start in sorted(graph):
        if start not in done and (found := visit(start, [start])) is not None:
            return found
    return None


def test_core_imports_run_one_way() -> None:
    """No cycle among core's modules (core/__init__.py, which re-exports and is imported by none, aside)."""
    graph = {m: targets - {"core"} for m, targets in _graph().items() if m != "core"}
    assert _cycle(graph) is None, f"an import cycle in core/: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_check_sees_a_cycle() -> None:
    """Guard for the guard: the check finds a cycle, and the graph it reads has the edges it should."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    graph = _graph()
    assert "core.calls.snapshot" in graph["core.calls.machine"]  # machine -> snapshot, and not back
    assert "core.calls.machine" not in graph["core.calls.snapshot"]
    assert "core.calls.events" in graph["core.calls.machine"]  # ``from . import events as ev`` is an edge too
