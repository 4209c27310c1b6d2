"""The playbook fixture: ``assert pb >> Input(...) << Expected(...) << Expected(...)``.

After mitmproxy's test Playbook. ``>>`` queues an input, ``<<`` queues an expected output; ``bool(pb)`` (what
``assert`` calls) feeds the queued inputs to the machine and compares every output produced with the expected ones,
raising ``AssertionError`` with a side-by-side diff on the first mismatch. ``pb.machine`` is the machine, for
queries. ``pb.quiet >> Input(...)`` feeds an input whose outputs are not checked (for setup steps).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
from callsd.core import CallsMachine, InputEvent, OutputEvent


def _show(x: Any) -> str:
    if isinstance(x, InputEvent | OutputEvent):
        parts = ", ".join(f"{f.name}={getattr(x, f.name)!r}" for f in fields(x))
        return f"{type(x).__name__}({parts})".replace("<", "").replace(">", "")
    return repr(x)


class Playbook:
    def __init__(self, machine: CallsMachine | None = None) -> None:
        self.machine = machine if machine is not None else CallsMachine()
        self.expected: list[tuple[str, Any]] = []
        self.actual: list[tuple[str, Any]] = []
        self._pending: list[InputEvent] = []
        self._checked = 0

    def __rshift__(self, event: InputEvent) -> Playbook:
        self.expected.append((">>", event))
        self._pending.append(event)
        return self

    def __lshift__(self, output: OutputEvent) -> Playbook:
        self.expected.append(("<<", output))
        return self

    @property
    def quiet(self) -> _Quiet:
        return _Quiet(self)

    def _run(self) -> None:
        for event in self._pending:
            self.actual.append((">>", event))
            self.actual.extend(("<<", o) for o in self.machine.handle(event))
        self._pending.clear()

    def __bool__(self) -> bool:
        self._run()
        if self.actual != self.expected:
            left = [f"{d} {_show(x)}" for d, x in self.expected]
            right = [f"{d} {_show(x)}" for d, x in self.actual]
            diff = "\n".join(difflib.unified_diff(left, right, "expected", "actual", lineterm="", n=50))
            raise AssertionError("playbook mismatch:\n" + diff)
        return True

    def outputs(self) -> Iterator[OutputEvent]:
        return (x for d, x in itertools.chain(self.actual) if d == "<<")


class _Quiet:
    def __init__(self, pb: Playbook) -> None:
        self.pb = pb

    def __rshift__(self, event: InputEvent) -> _Quiet:
        assert not self.pb._pending, "check the queued steps before a quiet step"
        outs = self.pb.machine.handle(event)
        self.pb.expected.append((">>", event))
        self.pb.actual.append((">>", event))
        for o in outs:
            self.pb.expected.append(("<<", o))
            self.pb.actual.append(("<<", o))
        return self


@pytest.fixture
def pb() -> Playbook:
    return Playbook()
