"""What the server tells a publisher about the packets it received from it: transport-cc feedback (draft-holmer-
rmcat-transport-wide-cc-extensions-01), pure.

The publisher (a browser) stamps a transport-wide sequence number on every RTP packet it sends on its transport and
estimates its own uplink from our reports of when each one arrived (send-side estimation, the input of its
encoder's target bitrate and of which simulcast layers it sends). ``ArrivalRecorder`` keeps, for one publisher's
transport, the arrival time of every numbered packet not reported yet; ``feedback`` turns them into the next
``TransportCc`` (``core.wire.transport_cc.build_transport_cc`` writes it): every sequence number from the first
one not reported yet up to the highest received, each arrived (when) or not.

Times are arguments in microseconds on the caller's clock (the adapter's monotonic clock since it made the
recorder, so never negative); they are floored to the 250 us the format carries. Rules:

* sequence numbers are 16 bits and wrap: each is unwrapped against the highest one seen;
* a packet older than what was already reported (it arrived after the report that called it lost) and a
  duplicate are ignored: each number is reported once as received;
* a jump of ``MAX_SPAN`` numbers or more (the sender restarted its counter) starts over from the new number;
* one report covers at most ``MAX_PACKETS`` numbers (a report fits one datagram), and ends before a packet whose
  receive delta does not fit 16 signed bits of 250 us (8 s); the rest goes in the next report;
* the reference time (24 signed bits of 64 ms, ~6 days) wraps, the arrival times shifted with it, so the deltas
  stay exact.
"""

from __future__ import annotations

from ..wire.transport_cc import DELTA_US, REFERENCE_US, TransportCc

__all__ = ["ArrivalRecorder", "MAX_PACKETS", "MAX_SPAN"]

MAX_PACKETS = 400  # numbers per report: <= 400 x 2 delta bytes + 58 chunks x 2 + 8 header < 1000 bytes
MAX_SPAN = 0x4000  # a jump this far ahead of the oldest unreported number restarts the recorder
_DELTA_MIN, _DELTA_MAX = -0x8000 * DELTA_US, 0x7FFF * DELTA_US
_REF_WRAP = 1 << 24


class ArrivalRecorder:
    """One publisher transport's received transport-wide sequence numbers awaiting a report (module docstring)."""

    __slots__ = ("_arrivals", "_base", "_highest", "_fb_count", "recorded", "ignored", "reports")

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival (us, floored to 250 us)
        self._base: int | None = None  # the first unwrapped number the next report starts from
        self._highest = 0
        self._fb_count = 0
        self.recorded = 0
        self.ignored = 0  # late or duplicate numbers
        self.reports = 0

    def record(self, seq: int, arrival_us: int) -> None:
        """Packet ``seq`` (16 bits) arrived at ``arrival_us``."""
        seq &= 0xFFFF
        if self._base is None:
            self._base = self._highest = seq
            ext = seq
        else:
            ext = self._highest + ((seq - self._highest + 0x8000) & 0xFFFF) - 0x8000
            if ext < self._base or ext in self._arrivals:
                self.ignored += 1
                return
            if ext - self._base >= MAX_SPAN:
                self._arrivals.clear()
                self._base = self._highest = ext
        self._arrivals[ext] = arrival_us - arrival_us % DELTA_US
        self._highest = max(self._highest, ext)
        self.recorded += 1

    @property
    def pending(self) -> int:
        """How many received numbers await a report."""
        return len(self._arrivals)

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> TransportCc | None:
        """The next report (None when nothing arrived since the last one); call again while it returns one."""
        if not self._arrivals or self._base is None:
            return None
        base = self._base
        first = min(self._arrivals)
        reference = self._arrivals[first] // REFERENCE_US
        previous = reference * REFERENCE_US
        arrivals: list[int | None] = []
        end = min(self._highest, base + MAX_PACKETS - 1)
        for ext in range(base, end + 1):
            arrival = self._arrivals.get(ext)
            if arrival is not None:
                if not _DELTA_MIN <= arrival - previous <= _DELTA_MAX:
                    break
                previous = arrival
                del self._arrivals[ext]
            arrivals.append(arrival)
        self._base = base + len(arrivals)
        wrapped = (reference + (_REF_WRAP >> 1)) % _REF_WRAP - (_REF_WRAP >> 1)
        shift = (wrapped - reference) * REFERENCE_US
        report = TransportCc(sender_ssrc=sender_ssrc, media_ssrc=media_ssrc, base_seq=base & 0xFFFF,
                             reference_time=wrapped, fb_count=self._fb_count,
                             arrivals=tuple(None if a is None else a + shift for a in arrivals))
        self._fb_count = (self._fb_count + 1) & 0xFF
        self.reports += 1
        return report
