"""core/ must stay pure: no clock, randomness, sockets, event loops or logging (docs/adr/0001)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
FORBIDDEN = {"trio", "socket", "asyncio", "time", "random", "os", "logging", "secrets", "datetime", "threading",
             "subprocess", "selectors", "uuid"}


def forbidden_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                found.append(name)
    return found


def test_core_imports_nothing_impure() -> None:
    offenders = {
        str(path.relative_to(CORE)): bad
        for path in sorted(CORE.rglob("*.py"))
        if (bad := forbidden_imports(path.read_text()))
    }
    assert offenders == {}, f"core/ must not import I/O, clocks or randomness: {offenders}"


def test_the_check_catches_an_import_of_time() -> None:
    assert forbidden_imports("import time\n") == ["time"]
    assert forbidden_imports("from time import monotonic\n") == ["time"]
    assert forbidden_imports("import os.path\n") == ["os.path"]
    assert forbidden_imports("from . import time\n") == []
