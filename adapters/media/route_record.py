"""The per-packet state of a route (``forwarder.OutRoute``'s base class): C fields when the extension is built.

Every forwarded copy updates a route's numbering (``seq_offset``, ``last_seq``, ``resync``) and counters
(``packets``, ``octets``) and reads its ``ts_offset`` and ``ssrc``. As slots of a Python class each of those is a
pointer to an ``int`` object: at capacity, where the native step is memory-bound (docs/adr/0033), that was a cold
load per field per copy and a new ``int`` per update. ``_engine.RouteRecord`` holds them as C fields inside the
route object (native/route_record.h), which the step reads and writes in place; Python reads and writes them through
member descriptors exactly as it read the slots, so there is nothing to copy back and nothing that can go stale.

The record also caches, in C data Python never sees, what its receiver's peer sends with (native/send_state.h).
The classes that data is read from (the plane's ``Session``, the endpoint's ``Peer``) subclass ``SendStateOwner``,
whose attribute writes tell the step to read it again; without the extension ``SendStateOwner`` is ``object``.

``RouteRecordTwin`` is the pure-Python twin, the base when the extension does not import (the Python path never
needs the extension). tests/media/test_route_record.py holds the two to the same fields and defaults, and runs the
Python forwarder on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["RouteRecord", "RouteRecordTwin", "ROUTE_RECORD_FIELDS", "SendStateOwner"]

ROUTE_RECORD_FIELDS = ("packets", "octets", "ts_offset", "ssrc", "seq_offset", "last_seq", "resync")


class RouteRecordTwin:
    """``_engine.RouteRecord`` in Python: the same fields, zero and False until set."""

    __slots__ = ROUTE_RECORD_FIELDS

    packets: int  # RTP packets sent on the route (its sender reports)
    octets: int  # their payload octets
    ts_offset: int  # added to the publisher's RTP timestamp, mod 2^32
    ssrc: int  # the SSRC the receiver knows this track by
    seq_offset: int  # added to the publisher's sequence number, mod 2^16
    last_seq: int  # the highest sequence number sent, in the receiver's numbering
    resync: bool  # the next packet re-bases seq_offset on last_seq (a new or resumed stream)

    def __init__(self) -> None:
        self.packets = self.octets = self.ts_offset = self.ssrc = self.seq_offset = self.last_seq = 0
        self.resync = False


if TYPE_CHECKING:
    RouteRecord = RouteRecordTwin
    SendStateOwner = object
else:
    try:
        from .native._engine import RouteRecord, SendStateOwner
    except ImportError:  # the extension is not built: the Python path runs on the twin, nothing is cached
        RouteRecord = RouteRecordTwin
        SendStateOwner = object
