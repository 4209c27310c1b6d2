"""callsd.peer: a simulated WebRTC peer, the one client engine of the project.

It speaks to callsd's media port what a browser's peer connection would (ICE as the controlling agent against the
ICE-lite server, DTLS as client or server, SRTP), cheaply enough that one process simulates hundreds of users. It
is not part of the server: the load tool (``callsd loadtest``, app/loadtest/), the tests and the benchmarks use it
to reach the server from outside, and it shares no DTLS, SRTP or STUN glue with the server it measures.

Modules: ``transport`` (one peer's socket, ICE, DTLS, SRTP), ``client`` (one peer driven by its own awaits: tests,
``bench.forward``), ``engine`` (many peers' legs in one process: the load tool's epoll receive pump, send tick and
timers), ``source`` (outgoing RTP streams with a stamp in every payload), ``stats`` (loss, jitter, delay).
"""

from __future__ import annotations

from .client import ClientError, MediaClient
from .engine import Leg, MediaEngine, udp_drops
from .source import Source
from .stats import Histogram, StreamStats, percentile, summarize
from .transport import Identity, PeerTransport, SrtpPair, TransportStats

__all__ = [
    "ClientError",
    "Histogram",
    "Identity",
    "Leg",
    "MediaClient",
    "MediaEngine",
    "PeerTransport",
    "Source",
    "SrtpPair",
    "StreamStats",
    "TransportStats",
    "percentile",
    "summarize",
    "udp_drops",
]
