"""Open the server's recorder on a log that must verify: ``open_verified``.

A server restarts from the latest checkpoint plus the records after it (docs/adr/0002). Before it serves anyone it
checks that tail (docs/adr/0011-log-chain.md): the record the checkpoint covers still carries the chain head the
checkpoint stored, every later record's hash matches its content and links to the one before, and every record's
output digest matches what this version of the core produces. The work is the tail's, not the whole log's (a
checkpoint is saved every ``checkpoint_every`` records), so starting stays fast however old the log is; the full
check is ``callsd replay --verify``.

A log that fails is refused with one line (``LogRefused``) saying what failed and how to look or go on; with
``accept_broken=True`` (``callsd serve --accept-broken-log``) the server starts anyway and logs, one warning per
problem, exactly which records it accepts unverified. A log that cannot be decoded at all (``EventLogError``,
``SnapshotError``) is refused the same way, never accepted: the machine cannot be rebuilt from it.
"""

from __future__ import annotations

import logging

from callsd.core.calls.eventlog import EventLogError
from callsd.core.calls.replay import ReplayResult
from callsd.core.calls.snapshot import SnapshotError

from .base import EventStore
from .compaction import Retention, apply_retention
from .recorder import CallRecorder

__all__ = ["LogRefused", "open_verified", "problems_of"]

log = logging.getLogger("callsd.store")

SHOWN_PROBLEMS = 5  # in the refusal line; the warnings with --accept-broken-log list every one


class LogRefused(Exception):
    """The log cannot be served from: corrupt, or it fails verification and was not accepted. One line."""


def problems_of(result: ReplayResult) -> list[str]:
    """Each verification failure of a replay as ``seq N: what``, in seq order."""
    found = [(b.seq, f"seq {b.seq}: chain break: {b.reason}") for b in result.chain.breaks]
    found += [(m.seq, f"seq {m.seq}: output digest differs (stored {m.expected[:12]}..., this version produces "
                      f"{m.actual[:12]}...)") for m in result.mismatches]
    return [text for _, text in sorted(found)]


def open_verified(store: EventStore, *, accept_broken: bool = False, checkpoint_every: int = 0,
                  group_commit: bool = False, retention: Retention | None = None,
                  now_ms: int = 0) -> CallRecorder:
    """``CallRecorder.open(store)`` that refuses (``LogRefused``) a corrupt log, and a log whose checkpoint + tail
    fails verification unless ``accept_broken``. With ``retention`` it first compacts the records older than
    ``retention.days`` before ``now_ms`` (adapters/store/compaction.py), and the recorder keeps doing so as it
    runs. The caller closes ``store`` on failure."""
    if retention is not None:
        apply_retention(store, retention, now_ms)
    try:
        recorder = CallRecorder.open(store, checkpoint_every=checkpoint_every, group_commit=group_commit,
                                     retention=retention)
    except (EventLogError, SnapshotError) as exc:
        where = "" if isinstance(exc, EventLogError) and exc.source else f"{store.location}: "
        raise LogRefused(f"the event log is corrupt: {where}{exc}") from None
    assert recorder.recovered is not None
    problems = problems_of(recorder.recovered)
    if not problems:
        # The head commits to the whole log: kept in the operator's log store, it tells a later forgery apart.
        log.info("event log %s: checkpoint and tail verified up to seq %d; chain head %s", store.location,
                 recorder.seq, recorder.head)
        return recorder
    if not accept_broken:
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + ("; ..." if len(problems) > SHOWN_PROBLEMS else "")
        raise LogRefused(
            f"the event log {store.location} fails verification ({len(problems)} problem(s): {shown}); "
            f"see `callsd replay --verify {store.location}`, or start with --accept-broken-log to serve from it "
            "anyway"
        )
    for text in problems:
        log.warning("--accept-broken-log: accepting unverified %s", text)
    log.warning("--accept-broken-log: serving from %s with %d unverified record(s); new records chain on from "
                "seq %d", store.location, len(problems), recorder.seq)
    return recorder

