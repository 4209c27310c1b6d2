"""One simulated user's media leg (`Leg`) and its read-only list of sources (`SourceList`).

A leg belongs to a `~.engine.MediaEngine`, which owns the loops that read, send and maintain every leg; the leg
holds what is one user's own: its transport, what it sends and what it measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from .source import Source
from .stats import StreamStats
from .transport import PeerTransport

if TYPE_CHECKING:
    from .engine import MediaEngine

__all__ = ["Leg", "SourceList", "RCVBUF"]

RCVBUF = 1 << 20  # per user socket: rides out a scheduling stall of the tool of ~0.5 s at screen-share rates


class SourceList(list[Source]):
    """A leg's sources, read-only to everyone but `Leg.add_source`.

    Why: the send tick visits only the legs in `MediaEngine.legs_with_sources`, and `Leg.add_source` is how a leg
    gets there; a source appended to the list directly was silently never sent. Every mutator raises instead. It
    is still a list (the C send tick reads it with the list API, peer/fastpeer_send.h)."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("Leg.sources is read-only: put a source on a leg with Leg.add_source(source) (the send "
                        "tick visits only the legs that have sources)")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


class Leg(PeerTransport):
    """One simulated user's media: its transport, its sources, its received streams and delay samples.

    States are the transport's: ``new`` -> ``checking`` -> ``dtls`` -> ``connected``; any -> ``failed`` or
    ``closed``. A leg registers its socket with the engine when made and leaves it on `close`.
    """

    def __init__(self, engine: MediaEngine, *, user_number: int, call_index: int, ufrag: str, pwd: str) -> None:
        super().__init__(engine.identity, ufrag=ufrag, pwd=pwd, stats=engine.stats, rcvbuf=RCVBUF,
                         host=engine.host, native_srtp=engine.media != "python",
                         sock=engine.port.new_socket() if engine.port is not None else None)
        self.engine = engine
        self.user_number = user_number
        self.call_index = call_index
        self._sources = SourceList()  # the C send tick reads this attribute (no property call per leg per tick)
        self.streams: dict[int, StreamStats] = {}
        self.pt_kinds: dict[int, tuple[str, int]] = {}  # pt -> (kind, clock rate)
        self.join_started_ns = 0
        self.first_audio_ns = 0
        self.rx_count = 0
        self.delay = engine.call_delay(call_index)
        self.on_connected_hook: Callable[[Leg], None] | None = None
        self.on_failed_hook: Callable[[Leg], None] | None = None
        engine.register(self)

    @property
    def sources(self) -> SourceList:
        """What this leg sends, in the order added: read-only (`add_source` adds)."""
        return self._sources

    def set_payload_types(self, mapping: dict[int, tuple[str, int]]) -> None:
        self.pt_kinds.update(mapping)

    def add_source(self, source: Source) -> None:
        """Send ``source`` on this leg from the next tick on (once: a source already here is left as it is).

        Why a method and not ``leg.sources.append``: the engine's send tick visits only the legs that have sources
        (`MediaEngine.legs_with_sources`), and this is how a leg joins them."""
        if source not in self._sources:
            list.append(self._sources, source)
        self.engine.sources_added(self)

    def close(self) -> None:
        now_ns = time.monotonic_ns()
        for source in self.sources:
            source.stop(now_ns)
        self.engine.unregister(self)
        super().close()

    def on_connected(self) -> None:
        if self.on_connected_hook is not None:
            self.on_connected_hook(self)

    def on_failed(self) -> None:
        if self.on_failed_hook is not None:
            self.on_failed_hook(self)

    def new_stream(self, ssrc: int, pt: int) -> StreamStats:
        kind, clock = self.pt_kinds.get(pt, ("unknown", 90000))
        st = StreamStats(kind, clock)
        self.streams[ssrc] = st
        return st
