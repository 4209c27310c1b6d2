"""Counts of the work a join does, in the server process of ``bench.joins --counts`` (``BENCH_JOIN_COUNTS=1``).

Why: CPU per join is a sum of many small parts (docs/performance.md, "Join cost attributed"); a profile says where
the time went, these say how many times each mechanism ran, so a structural cut (fewer commits, fewer tasks, fewer
frames) shows as a count that fell, whatever the host's load did to the timings. Each count wraps the one function
that marks the mechanism (a class attribute or a module attribute, replaced once at start-up; the wrappers cost a
little CPU, so CPU figures of a counted run are not compared with an uncounted one):

- ``messages_in``: client messages handled by the hub (``SignalingHub._on_frame``);
- ``log_commits`` / ``log_records``: event-log transactions (each one ``fdatasync``) and the records they held;
- ``thread_handoffs``: ``trio.to_thread.run_sync`` calls (the commit's hand-off to a worker thread);
- ``tasks_spawned``, ``cancel_scopes``: Trio tasks started and cancel scopes entered (``move_on_*``, ``fail_*``,
  nurseries' own scopes);
- ``json_encodes``, ``json_decodes``: ``json.dumps`` / ``json.loads`` calls (wire messages and the log's canonical
  JSON alike);
- ``dtls_flights``, ``dtls_datagrams``: DTLS ``take_datagrams`` calls that returned something, and the datagrams;
- ``offers_built``: ``Negotiator.make_offer`` calls that returned an offer;
- ``ice_checks_answered``: STUN binding requests that passed ``IceLiteState.accept``'s checks;
- ``loop_passes``, ``steps``, and ``steps <task>``: Trio's passes and task steps, all and by task name (Trio names a
  task after its function's qualified name), from an instrument added to the server's ``trio.run``: a step is a
  wake-up, and at ~5-7 µs of Trio's scheduling each these say which tasks a join wakes and how often;
  ``wakeups <task>``: how often each was rescheduled (``task_scheduled``);
- ``gc<N>``, ``gc<N> us``, ``gc<N> collected``: the cyclic collector's collections of generation N (a
  ``gc.callbacks`` entry), the µs of thread CPU they took and the objects they freed; ``gc<N> in <task>``: the task
  whose step allocated the object that triggered them (``outside trio`` for the log's writer thread); with
  ``BENCH_GC_TYPES=1``, ``gc<N> walked`` and ``gc<N> walks <type>``: the objects each young collection walked.

The frames sent and SDP rounds come from the server's own metrics (``bench.memory.run_server``).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["install", "COUNTS"]

COUNTS: Counter[str] = Counter()


def _counting(name: str, fn: Callable[..., Any], *, when: Callable[[Any], int] | None = None) -> Callable[..., Any]:
    """``fn`` counted under ``name``: once per call, or ``when(result)`` times (e.g. a flight's datagrams)."""
    @functools.wraps(fn)
    def counted(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        COUNTS[name] += 1 if when is None else when(result)
        return result
    return counted


def _counting_async(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        COUNTS[name] += 1
        return await fn(*args, **kwargs)
    return counted


class _StepCounter(trio.abc.Instrument):
    """A Trio instrument counting passes, steps and wake-ups by task name."""

    def before_io_wait(self, timeout: float) -> None:
        COUNTS["loop_passes"] += 1

    def after_task_step(self, task: Any) -> None:
        COUNTS["steps"] += 1
        COUNTS["steps " + _short(task.name)] += 1

    def task_scheduled(self, task: Any) -> None:
        COUNTS["wakeups " + _short(task.name)] += 1


def _short(name: str) -> str:
    """A task's name without its package prefix (``callsd.adapters.signaling.SignalingHub._writer`` ->
    ``signaling.SignalingHub._writer``)."""
    for prefix in ("callsd.adapters.", "callsd.app.", "callsd."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _gc_probe() -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` entry counting collections by generation, their CPU time and the task that set them off."""
    import time

    started = [0.0]

    import gc
    import os
    from collections import Counter as Tally

    types = bool(os.environ.get("BENCH_GC_TYPES"))

    def probe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if types and info["generation"] < 2:  # what the young collection will walk, by type
                young = Tally(type(o).__qualname__ for o in gc.get_objects(info["generation"]))
                COUNTS[f"gc{info['generation']} walked"] += sum(young.values())
                for name, n in young.most_common(12):
                    COUNTS[f"gc{info['generation']} walks {name}"] += n
            started[0] = time.thread_time()
            return
        gen = info["generation"]
        COUNTS[f"gc{gen}"] += 1
        COUNTS[f"gc{gen} us"] += round((time.thread_time() - started[0]) * 1e6)
        COUNTS[f"gc{gen} collected"] += info["collected"]
        try:
            task = _short(trio.lowlevel.current_task().name)
        except RuntimeError:
            task = "outside trio"
        COUNTS[f"gc{gen} in {task}"] += 1
    return probe


def install() -> Counter[str]:
    """Wrap the marked functions (see the module docstring); return the live counter."""
    from callsd.adapters.media.dtls import DtlsSession
    from callsd.adapters.media.ice import IceLiteState
    from callsd.adapters.signaling import SignalingHub
    from callsd.adapters.store.recorder import CallRecorder
    from callsd.core.wire.negotiation import Negotiator
    from trio._core._run import Runner

    SignalingHub._on_frame = _counting("messages_in", SignalingHub._on_frame)  # type: ignore[method-assign]
    real_write = CallRecorder._write

    def write(self: CallRecorder, batch: list[Any], *args: Any) -> None:
        real_write(self, batch, *args)
        if batch:
            COUNTS["log_commits"] += 1
            COUNTS["log_records"] += len(batch)
    CallRecorder._write = write  # type: ignore[method-assign,assignment]
    trio.to_thread.run_sync = _counting_async("thread_handoffs", trio.to_thread.run_sync)  # type: ignore[assignment]
    Runner.spawn_impl = _counting("tasks_spawned", Runner.spawn_impl)  # type: ignore[method-assign]
    trio.CancelScope.__enter__ = _counting("cancel_scopes", trio.CancelScope.__enter__)  # type: ignore[method-assign]
    json.dumps = _counting("json_encodes", json.dumps)
    json.loads = _counting("json_decodes", json.loads)
    DtlsSession.take_datagrams = _counting("dtls_datagrams", DtlsSession.take_datagrams,  # type: ignore[method-assign]
                                           when=len)
    DtlsSession.take_datagrams = _counting("dtls_flights", DtlsSession.take_datagrams,  # type: ignore[method-assign]
                                           when=lambda datagrams: 1 if datagrams else 0)
    real_run = trio.run

    def run(*args: Any, instruments: Any = (), **kwargs: Any) -> Any:
        return real_run(*args, instruments=[*instruments, _StepCounter()], **kwargs)
    trio.run = run  # type: ignore[assignment]
    IceLiteState.accept = _counting("ice_checks_answered", IceLiteState.accept)  # type: ignore[method-assign]
    Negotiator.make_offer = _counting("offers_built", Negotiator.make_offer,  # type: ignore[method-assign]
                                      when=lambda offer: 1 if offer is not None else 0)
    import gc
    gc.callbacks.append(_gc_probe())
    return COUNTS
