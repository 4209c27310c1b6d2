"""The cyclic garbage collector of a process that forwards media: what it walks, and how often.

Why this exists: perf on a pinned ``callsd serve`` under the capacity shape (50 calls x 8 x 2, native path) put 15 %
of the server's CPU in CPython's cyclic collector (docs/performance.md, issue 13). The per-packet work does not
allocate containers, but everything around it does (Trio's scheduler, RTCP reports, the hub), so generation 0 fills
every few hundred allocations, and each older collection re-walks objects that live as long as the process (the
modules, the web framework, the configuration) or as long as a call (sessions, negotiators, routes).

Two settings, both in ``[rtc]`` because they matter to whatever process hosts a media plane (``callsd serve``, a
media worker, a standalone ``callsd rtcd``):

* ``gc_freeze``: once the process is ready, collect once and ``gc.freeze()``: everything alive then (imported modules,
  the app, the configuration) moves to the permanent generation and is never walked again. Objects made later are
  collected as before; reference counting still frees everything that is not in a cycle.
* ``gc_gen0_threshold``: allocations (net, of GC-tracked objects) between two generation-0 collections (CPython's
  default: 700). Fewer young collections means fewer older ones too (each older generation is collected after 10 of
  the one below), at the price of cyclic garbage living a little longer.
* ``gc_gen1_threshold``: generation-0 collections between two generation-1 collections (CPython's default: 10).
  A generation-1 collection walks every object that survived the generation-0 collections since the last one, in
  one go, on the event loop: during a join wave nearly everything survives, so its hold grows with this number
  times ``gc_gen0_threshold`` (docs/performance.md, "Loop holds"). Each object is walked once in generation 1
  whatever this number, so lowering it shortens the holds more than it adds work; but a full collection is
  considered every ``gc_gen2_threshold`` generation-1 collections, and a full one walks every call's objects
  (230-500 ms at 175 calls), so lower this one only with ``gc_gen2_threshold`` raised in proportion.
* ``gc_gen2_threshold``: generation-1 collections before a full collection is considered (CPython's default: 10;
  CPython then also waits until the objects that survived since the last full one are a quarter of the others).

The defaults are (5000, 4, 100): a generation-1 collection walks the survivors of 4 x 5,000 allocations instead of
10 x 20,000 (its hold in a join wave at 150-200 calls: 22-83 ms instead of 111-177), while a full collection is
considered as rarely per allocation as with (20000, 10, 10) (2,000,000), so the calls' objects are not walked more
often. At 200 calls x 8 x 2, where the join wave takes the core to its limit, p95 join -> first audio was 0.58-3.43 s
(median 1.2 s, 6 runs) against 2.47-6.27 s (median 3.7 s, 10 runs; ADR 0048). (5000, 4, 25) made full collections four times as frequent
and one took 413 ms (ADR 0043).

The figures behind the defaults, A/B in one run, are in docs/performance.md and docs/adr/0029-egress-runtime.md.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Protocol

__all__ = ["GcSettings", "GcTuning", "apply_gc_tuning"]


class GcSettings(Protocol):
    """The keys this module reads (``RtcConfig`` has them)."""

    @property
    def gc_freeze(self) -> bool: ...
    @property
    def gc_gen0_threshold(self) -> int: ...
    @property
    def gc_gen1_threshold(self) -> int: ...
    @property
    def gc_gen2_threshold(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GcTuning:
    """What ``apply_gc_tuning`` did: the thresholds set and how many objects it froze (0 when not asked to)."""

    threshold: tuple[int, int, int]
    frozen: int


def apply_gc_tuning(settings: GcSettings) -> GcTuning:
    """Tune the collector of this process; call once, after start-up (everything built at start-up is frozen).

    A process that never calls it keeps CPython's defaults. Calling it again freezes what was made since the last
    call too: that is only right for objects that live as long as the process."""
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(settings.gc_gen0_threshold, settings.gc_gen1_threshold, settings.gc_gen2_threshold)
    threshold = gc.get_threshold()
    return GcTuning(threshold=(threshold[0], threshold[1], threshold[2]), frozen=gc.get_freeze_count())
