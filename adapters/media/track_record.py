"""The per-packet reception state of a published track (``forwarder.InTrack``'s base class): C fields when the
extension is built, as a route's are (route_record.py has the why; native/track_record.h the C side).

Every ingress packet updates the track's counts, its RFC 3550 A.1 sequence state, the last timestamp and arrival
time and its voice activity. ``_engine.TrackRecord`` holds them as C fields the native step writes in place;
Python reads and writes them through member descriptors. ``TrackRecordTwin`` is the pure-Python twin, the base when
the extension does not import; tests/media/test_route_record.py holds the two to the same fields and defaults and
runs the Python forwarder on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["TrackRecord", "TrackRecordTwin", "TRACK_RECORD_FIELDS"]

TRACK_RECORD_FIELDS = ("packets", "octets", "base_seq", "max_seq", "cycles", "last_ts", "last_rx", "vad_score",
                       "level_id", "started", "speaking")


class TrackRecordTwin:
    """``_engine.TrackRecord`` in Python: the same fields, zero and False until set."""

    __slots__ = TRACK_RECORD_FIELDS

    packets: int  # RTP packets received
    octets: int  # RTP bytes received
    base_seq: int  # RFC 3550 A.1: the first sequence number
    max_seq: int  # the highest sequence number
    cycles: int  # sequence number wraps, shifted 16 bits
    last_ts: int  # the last packet's RTP timestamp
    last_rx: float  # when it arrived, on the forwarder's clock
    vad_score: int  # debounced voice activity
    level_id: int  # the publisher's audio-level extension id, 0: none
    started: bool  # a packet was received
    speaking: bool  # voice activity says the publisher speaks

    def __init__(self) -> None:
        self.packets = self.octets = self.base_seq = self.max_seq = self.cycles = self.last_ts = 0
        self.vad_score = self.level_id = 0
        self.last_rx = 0.0
        self.started = self.speaking = False


if TYPE_CHECKING:
    TrackRecord = TrackRecordTwin
else:
    try:
        from .native._engine import TrackRecord
    except ImportError:  # the extension is not built: the Python path runs on the twin
        TrackRecord = TrackRecordTwin
