"""Checkpoints: a machine's snapshot tagged with the last log record it has applied.

``{"v": 1, "seq": N, "state": <snapshot>}``. A store keeps the latest one so that a restart (or ``replay``) restores
the machine at N and feeds only the records after N. This module sits above both ``machine`` and ``snapshot``,
which keeps the import graph one-way: checkpoint -> machine -> snapshot -> state.
"""

from __future__ import annotations

from typing import Any

from .machine import CallsMachine
from .snapshot import SNAPSHOT_VERSION, SnapshotError

__all__ = ["checkpoint", "from_checkpoint"]


def checkpoint(machine: CallsMachine, seq: int) -> dict[str, Any]:
    """A snapshot of ``machine`` tagged with ``seq``, the last log record it has applied."""
    return {"v": SNAPSHOT_VERSION, "seq": seq, "state": machine.snapshot()}


def from_checkpoint(data: Any) -> tuple[CallsMachine, int]:
    """Inverse of ``checkpoint``: the restored machine and the seq to continue after; raises ``SnapshotError``."""
    if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
        raise SnapshotError("checkpoint: expected an object with v=1")
    seq = data.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise SnapshotError("checkpoint: missing 'seq'" if seq is None else f"checkpoint.seq: expected int, got {seq!r}")
    if seq < 0:
        raise SnapshotError(f"checkpoint.seq: must be >= 0, got {seq}")
    state = data.get("state")
    if not isinstance(state, dict):
        raise SnapshotError(f"checkpoint.state: expected an object, got {state!r}")
    return CallsMachine.restore(state), seq
