"""The build that runs is the build that was asked for (docs/adr/0053-core-compiled-with-mypyc.md).

core/ is pure Python by default; ``CALLSD_MYPYC=1`` at build time compiles it with mypyc, every module but the
packages' ``__init__`` and the calls machine's inputs and outputs (setup.py says why). ``make test-compiled`` builds
that in a copy of the checkout and runs the core-facing tests on it with ``CALLSD_EXPECT_COMPILED=1``; every other
run expects the Python source. Either way this test fails when the modules loaded are not the ones expected: a
stale ``.so`` left in core/ by an in-place compiled build would otherwise shadow the source being edited and
tested, and a compiled run that silently imported the source would prove nothing."""

from __future__ import annotations

import importlib
import os
import pkgutil

import callsd.core
from compiled_support import is_compiled

_STAY_PYTHON = {"callsd.core.calls.events", "callsd.core.calls.outputs"}  # setup.py's _PURE


def _core_modules() -> list[str]:
    found = [info.name for info in pkgutil.walk_packages(callsd.core.__path__, "callsd.core.")
             if not info.ispkg and not info.name.endswith("__mypyc")]
    assert len(found) > 30, found
    return sorted(found)


def test_core_modules_come_from_the_build_asked_for() -> None:
    compiled_run = os.environ.get("CALLSD_EXPECT_COMPILED", "0") not in ("", "0")
    loaded = {name: is_compiled(importlib.import_module(name)) for name in _core_modules()}
    wrong = {name: "compiled" if compiled else "Python" for name, compiled in loaded.items()
             if compiled != (compiled_run and name not in _STAY_PYTHON)}
    assert not wrong, (f"loaded from the wrong build ({'compiled' if compiled_run else 'Python'} expected): {wrong}; "
                       f"a .so left in core/ by an in-place compiled build? `make clean-compiled` removes them")
    assert not is_compiled(callsd.core), "the packages' __init__ stay Python in every build"
