"""Many simulated peers in one process: their media legs, one epoll receive pump, one send tick, one timer task.

Cost model (the point of this module): one process must simulate hundreds of users on one core, so nothing here
runs per user per packet in its own task.

- Every user's media is a :class:`Leg`: a :class:`~.transport.PeerTransport` (socket, ICE, DTLS, SRTP) plus what
  it sends (:class:`~.source.Source`) and what it measures (per-SSRC :class:`~.stats.StreamStats`, delay).
- One receive task per process: all sockets are registered in one ``epoll`` object; the task awaits
  ``trio.lowlevel.wait_readable(epoll_fd)``, then reads one datagram per ready socket per ``poll(0)`` round until
  a round finds nothing ready (no failing ``recv`` per socket per wake-up).
- One send task per process on an absolute 20 ms tick: each sending leg's sources build their packets, which are
  SRTP-protected and sent on the leg's connected socket. A late tick sends the packets it owes (bounded), so RTP
  timing and rate stay right; lateness is counted. Video leaves as one burst of MTU-sized packets per frame.
- One maintenance task: ICE check retransmissions, consent refresh (every 5 s; the server closes sessions after
  30 s without consent), DTLS retransmission timers.

Two implementations of the per-packet work, chosen by ``media`` (``"auto"`` picks native when the extension is
built): ``"python"`` (this module: one ``recv`` and one ``send`` per packet, pylibsrtp; the reference) and
``"native"``/``"shared"`` (peer/_fastpeer.c: ``recvmmsg``/``sendmmsg`` batches, SRTP on libcrypto in C, the per-stream
counters and the delay histogram kept in C and written into the same StreamStats/Leg/Histogram objects by
`MediaEngine.sync`, packets built in C from the sources' templates). Python runs per batch and per report
interval there, not per packet. Control traffic (STUN, DTLS) and the first packet of a new stream take the Python
code in both (the native engine then tracks the stream in C).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import struct
import time

import pylibsrtp
import trio
from callsd.adapters.media.udp import stamp_arrivals

from .leg import RCVBUF, Leg, SourceList
from .shared_port import SharedPort
from .source import MAGIC, STAMP, TICK, Source
from .stats import Histogram, StreamStats
from .transport import Identity, TransportStats
from .waiting import TimerfdWaiter, TrioWaiter, Waiter

try:
    from . import _fastpeer
except ImportError:  # not built (a source tree without a compiler): the Python engine only
    _fastpeer = None  # type: ignore[assignment]

__all__ = ["Leg", "SourceList", "MediaEngine", "udp_drops", "RCVBUF", "MEDIA_ENGINES", "resolve_media"]

MEDIA_ENGINES = ("auto", "native", "shared", "python")
DRAIN_BUDGET = 4096  # datagrams per native drain call before the loop yields to the send tick and signaling
TICK_DRAIN_BUDGETS = 4  # drains per send tick in the steady state (16,384 datagrams: 1,170 calls x 8 x 2 a tick)
SYNC_INTERVAL = 0.25  # seconds between the native engine's writes of its counters into the Python objects


def resolve_media(media: str) -> str:
    """``"native"``, ``"shared"`` or ``"python"`` for a ``--media-engine`` choice; the C ones without the extension
    fail. ``"shared"``: the native engine with one socket for all users (peer/shared_port.py, loopback servers)."""
    if media not in MEDIA_ENGINES:
        raise ValueError(f"media engine must be one of {', '.join(MEDIA_ENGINES)}, not {media!r}")
    if media == "auto":
        return "native" if _fastpeer is not None else "python"
    if media in ("native", "shared") and _fastpeer is None:
        raise RuntimeError("the native media engine (callsd.peer._fastpeer) is not built: pip install the package")
    return media

BATCH_THRESHOLD = 4  # packets per wake-up above which the receive loop batches with short sleeps
BATCH_SLEEP = 0.0005  # seconds; bounds what batching adds to the measured delay
# The Python engine's receive loop lets other tasks run after this many sockets read (~1.5 ms of its work). Why
# not per epoll round: with more than 1,023 ready sockets (200 calls x 8) every round is full, and 16 rounds
# between chances (the rule before) starved the send tick ~100 ms at a time (ADR 0030, session 8 addendum).
PYTHON_YIELD_EVERY = 256
# The native engines read the kernel's receive timestamp (SO_TIMESTAMPNS), so their wait between drains is not
# added to the delay they measure and can be longer: fewer wake-ups and bigger recvmmsg batches per packet.
NATIVE_BATCH_SLEEP = 0.0005
NATIVE_TIMERFD = True  # the native engines' loops wait on a timerfd, not a Trio sleep (peer/waiting.py)
# The native engines' steady state (no leg connecting): the send tick reads the sockets, once per 20 ms, and runs
# the connected legs' maintenance round every 0.5 s; the receive and maintenance loops sleep. Why: one wake-up per
# tick for all three, and bigger batches; the kernel's arrival stamps keep the delay and jitter exact (ADR 0030,
# session 8 addendum). While legs connect, the receive loop reads at once and the maintenance loop runs.
NATIVE_TICK_DRAIN = True
CONNECTING_STATES = frozenset({"new", "checking", "dtls"})
MAINTAIN_INTERVAL = 0.05  # seconds between the maintenance rounds of connecting legs
CONNECTED_MAINTAIN_EVERY = 10  # connected legs are maintained every 10th round (0.5 s: consent is every 5 s)
TICKS_PER_CONNECTED_ROUND = round(CONNECTED_MAINTAIN_EVERY * MAINTAIN_INTERVAL / TICK)  # the same 0.5 s on the tick
_HDR = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2


def udp_drops(ports: set[int], path: str = "/proc/net/udp") -> dict[int, int]:
    """Kernel drop counters (receive buffer full, bad checksum) of the IPv4 UDP sockets bound to ``ports``.

    Linux-only; an empty dict where /proc is unavailable. This is what tells loss at the load tool's own sockets
    (the tool was too slow) from loss at the server's socket or inside the server.
    """
    out: dict[int, int] = {}
    try:
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) < 13:
                    continue
                port = int(parts[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    out[port] = out.get(port, 0) + int(parts[-1])
    except (OSError, ValueError, StopIteration):
        return {}
    return out


class MediaEngine:
    """All legs of one process: the epoll receive pump, the 20 ms send tick, the maintenance timers."""

    def __init__(self, identity: Identity, *, delay_sample: int = 1, media: str = "python",
                 host: str = "127.0.0.1") -> None:
        """``host``: the local address every leg's socket binds (the one that routes to the server: a server in
        another network namespace is not reached from 127.0.0.1)."""
        self.identity = identity
        self.host = host
        self.media = resolve_media(media)
        self.stats = TransportStats()  # shared by every leg: drops, refusals, STUN errors, failures by stage
        self.delay_sample = max(1, delay_sample)
        self.epoll = select.epoll()
        self.legs: dict[int, Leg] = {}
        # The legs that have sources, keyed as `legs` is: what the send tick visits. Why: at 200 calls x 8 x 2 six
        # legs in eight only listen, and the C walk over every leg was 8 % of the load process (perf, session 7).
        self.legs_with_sources: dict[int, Leg] = {}
        self.delay = Histogram()
        self.call_delays: dict[int, list[float]] = {}
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_rtcp = 0
        self.rx_verified = 0  # received packets SRTP-authenticated (1 in delay_sample); the rest counted by header
        self.srtp_errors = 0
        self.late_ticks = 0
        self.max_lateness = 0.0
        self.tick_start = 0.0  # `send_loop`'s schedule: its first tick's time.monotonic() origin ...
        self.ticks_covered = 0  # ... and how many ticks of it were sent (owed ticks included)
        self.sending = True
        self.stopped_ns = 0  # when sending ended (the end of the delivery window)
        self.sources: dict[int, Source] = {}  # source id -> source, for the sender's side of delivery
        # Legs still connecting (counted by the maintenance round, raised by `register`): while there are any, the
        # native receive loop reads as datagrams arrive; with none, the send tick reads (NATIVE_TICK_DRAIN).
        self.connecting = 0
        self._receiver_wanted: trio.Event | None = None
        self._maintainer_wanted: trio.Event | None = None
        self._next_sync = 0.0
        self._receiver = (_fastpeer.Receiver(self.legs, self.delay, self.delay_sample)
                          if self.media != "python" else None)
        self._sender = (_fastpeer.Sender(gso=os.environ.get("CALLSD_NATIVE_GSO", "1") != "0")
                        if self.media != "python" else None)
        self.port = SharedPort() if self.media == "shared" else None

    def add_source(self, source: Source) -> None:
        self.sources[source.source_id] = source

    def stop_sending(self) -> None:
        self.sending = False
        self.stopped_ns = time.monotonic_ns()

    def sync(self) -> None:
        """Bring the Python objects up to date with the native engine's counters (StreamStats, Leg.first_audio_ns,
        rx_count and delay, the delay Histogram, each sending Source's counter). A no-op on the Python engine.
        `snapshot` and `delivery` call it; call it before reading those objects directly."""
        if self._receiver is not None:
            self._receiver.sync()
        if self._sender is not None:
            self._sender.sync()

    def delivery(self, legs: list[Leg], now_ns: int | None = None) -> tuple[int, int]:
        """(expected, lost) packets counted from the senders' side, over ``legs`` (open or closed).

        For each receiving user and each source it heard: expected = the source's intended counter at the end of
        the window (``stopped_ns``, or now) minus the first counter the user received from it, plus one; received
        = every packet of that source on any of the user's streams (all its legs, so reconnects are included).
        A receiver that stops receiving, or a sender that stops sending, keeps adding to ``expected``."""
        self.sync()
        until = self.stopped_ns or (now_ns if now_ns is not None else time.monotonic_ns())
        first: dict[tuple[int, int], int] = {}
        received: dict[tuple[int, int], int] = {}
        for leg in legs:
            for st in leg.streams.values():
                if st.sender < 0:
                    continue
                key = (leg.user_number, st.sender)
                first[key] = min(first.get(key, st.first_counter), st.first_counter)
                received[key] = received.get(key, 0) + st.received - st.first_index + 1
        return self._delivery_totals(first, received, until)

    def _delivery_totals(self, first: dict[tuple[int, int], int], heard: dict[tuple[int, int], int],
                         until: int) -> tuple[int, int]:
        """(expected, lost) from each (receiving user, source)'s first counter heard and packets heard: what the
        source meant to send from that counter until ``until``, against what arrived (`delivery`'s rule)."""
        expected = lost = 0
        for key, start in first.items():
            source = self.sources.get(key[1])
            if source is None:
                continue
            due = max(0, source.intended(until) - start + 1)
            expected += due
            lost += max(0, due - heard[key])
        return expected, lost

    def call_delay(self, call_index: int) -> list[float]:
        """[sum ms, count, max ms] of one-way delay samples for a call (shared by its legs)."""
        return self.call_delays.setdefault(call_index, [0.0, 0, 0.0])

    def register(self, leg: Leg) -> None:
        fd = leg.sock.fileno()  # with a shared port: the user's address as an integer
        self.legs[fd] = leg  # it has no sources yet: `add_source` puts it in legs_with_sources
        self.connecting += 1  # until the maintenance round counts again
        self._wake_loops()
        if self.port is None:
            if self._receiver is not None:  # the kernel's arrival time for the delay (NATIVE_BATCH_SLEEP)
                stamp_arrivals(leg.sock)
            self.epoll.register(fd, select.EPOLLIN)

    def sources_added(self, leg: Leg) -> None:
        """`Leg.add_source`'s notice: a registered leg with sources is visited by the send tick from now on."""
        fd = leg.sock.fileno()
        if self.legs.get(fd) is leg:
            self.legs_with_sources[fd] = leg

    def unregister(self, leg: Leg) -> None:
        fd = leg.sock.fileno()
        if self.legs.get(fd) is leg:
            if self._receiver is not None:  # its counters into its objects; its fd may be reused
                self._receiver.forget(fd)
            del self.legs[fd]
            self.legs_with_sources.pop(fd, None)
            if self.port is None:
                with contextlib.suppress(OSError, ValueError):
                    self.epoll.unregister(fd)

    # -- receive ---------------------------------------------------------------------------------------------
    async def receive_loop(self) -> None:
        """Read every readable socket, then sleep on the epoll fd. Never returns (cancel it).

        Each round reads one datagram per ready socket and polls again (level-triggered), instead of draining each
        socket until ``BlockingIOError``: with hundreds of sockets that each receive a packet now and then, the
        failing ``recv`` + exception per socket per wake-up would cost more than the packet itself.
        """
        if self._receiver is not None:
            await self._receive_loop_native(self._receiver)
            return
        epoll = self.epoll
        legs = self.legs
        burst = 0  # packets read since the last sleep
        unyielded = 0  # sockets read since the receive loop last let other tasks run
        while True:
            events = epoll.poll(0)
            if not events:
                if burst >= BATCH_THRESHOLD:
                    # Busy: sleep a fixed half millisecond and then read what piled up, rather than being woken
                    # (and paying Trio's scheduling) for every few packets.
                    burst = 0
                    await trio.sleep(BATCH_SLEEP)
                else:
                    burst = 0
                    await trio.lowlevel.wait_readable(epoll.fileno())
                unyielded = 0
                continue
            burst += len(events)
            for fd, _ in events:
                leg = legs.get(fd)
                if leg is not None:
                    self._read_one(leg)
                unyielded += 1
                if unyielded >= PYTHON_YIELD_EVERY:  # let the send tick and the signaling run under a flood
                    unyielded = 0
                    await trio.lowlevel.checkpoint()

    async def _receive_loop_native(self, receiver: _fastpeer.Receiver) -> None:
        """The same pump on the C receiver: it drains every ready socket (recvmmsg) and hands back what Python
        handles (control datagrams, the first packet of a new stream).

        While no leg is connecting (the steady state) it stands aside and the send tick reads the sockets, once
        per 20 ms (`NATIVE_TICK_DRAIN`); a leg registering wakes it again (ICE and DTLS want answers at once)."""
        epfd = self.port.fileno() if self.port is not None else self.epoll.fileno()
        waiter = self._waiter()
        try:
            while True:
                read = self._drain_native(receiver)
                if read >= DRAIN_BUDGET:
                    await trio.lowlevel.checkpoint()
                elif self._on_the_tick():
                    self._receiver_wanted = trio.Event()
                    await self._receiver_wanted.wait()
                elif read >= BATCH_THRESHOLD:
                    await waiter.sleep_until(time.monotonic() + NATIVE_BATCH_SLEEP)
                else:
                    await trio.lowlevel.wait_readable(epfd)
        finally:
            waiter.close()

    def _drain_native(self, receiver: _fastpeer.Receiver) -> int:
        """One drain of the C receiver (at most DRAIN_BUDGET datagrams), what it gave back handled in Python, the
        counters synced into the Python objects every SYNC_INTERVAL: the datagrams read."""
        if self.port is not None:
            read, rest = receiver.drain_shared(self.port.fileno(), DRAIN_BUDGET, self, self.stats)
        else:
            read, rest = receiver.drain(self.epoll.fileno(), DRAIN_BUDGET, self, self.stats)
        if time.monotonic() >= self._next_sync:  # readers of the Python objects see counters this fresh at worst
            self._next_sync = time.monotonic() + SYNC_INTERVAL
            self.sync()
        for leg, data, arrival_ns in rest:
            if leg.state != "closed":
                self._handle(leg, data, arrival_ns)
        return read

    def _drain_native_all(self, receiver: _fastpeer.Receiver) -> None:
        """The send tick's read of what arrived since the last one (the steady state's only read), at most
        TICK_DRAIN_BUDGETS drains. Why bounded: a saturated tool's sockets never run dry, and an unbounded loop
        here held the event loop for seconds (the bench's own clock task could not run); what is left is read on
        the next tick, or dropped by the kernel and counted as loss."""
        for _ in range(TICK_DRAIN_BUDGETS):
            if self._drain_native(receiver) < DRAIN_BUDGET:
                return

    def _read_one(self, leg: Leg) -> None:
        try:
            data = leg.sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                self.stats.refused += 1
            return
        if data:
            self._handle(leg, data)

    def _handle(self, leg: Leg, data: bytes, arrival_ns: int = 0) -> None:
        """One datagram for `leg`; `arrival_ns` is the kernel's arrival time when the C receiver read it (0: now)."""
        b0 = data[0]
        if 128 <= b0 <= 191:
            b1 = data[1]
            if 192 <= b1 <= 223:
                self.rx_rtcp += 1
                return
            if len(data) < 12 or leg.rx is None:
                self.stats.malformed += 1
                return
            if self._receiver is not None and isinstance(leg.rx, _fastpeer.SrtpSession):
                self._handle_native(self._receiver, leg, data, arrival_ns)
                return
            self.rx_packets += 1
            self.rx_bytes += len(data)
            seq, ts, ssrc = _HDR.unpack_from(data, 2)
            now = time.monotonic_ns()
            st = leg.streams.get(ssrc)
            if st is None:
                st = leg.new_stream(ssrc, b1 & 0x7F)
            st.update(seq, ts, now * 1e-6)
            if not leg.first_audio_ns and st.kind == "audio":
                leg.first_audio_ns = now
            leg.rx_count += 1
            if leg.rx_count % self.delay_sample == 0:
                self._sample_delay(leg, st, data, now)
        else:
            leg.feed_control(data)

    def _handle_native(self, receiver: _fastpeer.Receiver, leg: Leg, data: bytes, arrival_ns: int) -> None:
        """An SRTP packet the C receiver gave back (the first of a new stream, or one behind it): make the stream's
        StreamStats (kind and clock from the payload type), track it in C, and let C count the packet."""
        ssrc = int.from_bytes(data[8:12], "big")
        st = leg.streams.get(ssrc)
        if st is None:
            st = leg.new_stream(ssrc, data[1] & 0x7F)
        key = leg.sock.fileno()
        receiver.track(key, ssrc, leg, st)
        receiver.receive(key, data, self, self.stats, arrival_ns)

    def _sample_delay(self, leg: Leg, st: StreamStats, data: bytes, now: int) -> None:
        assert leg.rx is not None
        try:
            plain = leg.rx.unprotect(data)
        except pylibsrtp.Error:
            plain = None
        if plain is None:  # pylibsrtp raises, the native session returns None
            self.srtp_errors += 1
            return
        self.rx_verified += 1
        off = 12 + 4 * (plain[0] & 0x0F)
        if plain[0] & 0x10 and len(plain) >= off + 4:
            off += 4 + 4 * ((plain[off + 2] << 8) | plain[off + 3])
        if plain[off + 12 : off + 16] != MAGIC:
            return
        sent_ns, counter, sender = STAMP.unpack_from(plain, off + 16)
        st.sample(sender, counter)
        delay_ms = (now - sent_ns) / 1e6
        self.delay.add(delay_ms)
        acc = leg.delay
        acc[0] += delay_ms
        acc[1] += 1
        if delay_ms > acc[2]:
            acc[2] = delay_ms

    # -- send ------------------------------------------------------------------------------------------------
    async def send_loop(self) -> None:
        """Every 20 ms (absolute schedule), send each connected leg's due packets. Never returns (cancel it)."""
        waiter = self._waiter()
        try:
            await self._tick_forever(waiter)
        finally:
            waiter.close()

    def _waiter(self) -> Waiter:
        return TimerfdWaiter() if self.media != "python" and NATIVE_TIMERFD else TrioWaiter()

    async def _tick_forever(self, waiter: Waiter) -> None:
        start = self.tick_start = time.monotonic()
        tick = 0
        next_round = TICKS_PER_CONNECTED_ROUND  # the tick of the next connected legs' round (steady state)
        while True:
            tick += 1
            await waiter.sleep_until(start + tick * TICK)
            lateness = time.monotonic() - (start + tick * TICK)
            owed = 1
            if lateness > TICK:
                self.late_ticks += 1
                owed = min(5, 1 + int(lateness / TICK))
                tick += owed - 1
            self.ticks_covered = tick
            self.max_lateness = max(self.max_lateness, lateness)
            if self._receiver is not None and self._on_the_tick():
                self._drain_native_all(self._receiver)
                if tick >= next_round:  # the connected legs' round (consent), every 0.5 s
                    next_round = tick + TICKS_PER_CONNECTED_ROUND
                    self._maintain_round(time.monotonic(), everyone=True)
            if not self.sending:
                continue
            self.send_tick(owed, time.monotonic_ns())

    def ticks_behind(self, now: float) -> int:
        """How many 20 ms ticks `send_loop` owes at ``now`` (time.monotonic()) beyond the one it may be waking up
        for: 0 while it keeps up. Why: a late tick sends what it owes (at most 5 ticks at once), so a tool that
        cannot keep up loses no packet at once; it falls further behind its schedule, and this is how far (what a
        saturated tool did not send)."""
        if not self.tick_start:
            return 0
        return max(0, int((now - self.tick_start) / TICK) - self.ticks_covered - 1)

    def send_tick(self, owed: int, now_ns: int) -> None:
        """One tick of `send_loop` at ``now_ns`` (``owed`` ticks' packets: more than one after a late wake-up).
        Benches and tests call it directly to run ticks back to back, or on a clock of their own."""
        if self.media != "python":
            self._send_tick_native(owed, now_ns)
        else:
            self._send_tick_python(owed, now_ns)

    def _send_tick_python(self, owed: int, now_ns: int) -> None:
        """One tick of `send_loop` at ``now_ns``: each connected leg's due packets, protected (pylibsrtp) and sent
        one by one."""
        for leg in list(self.legs_with_sources.values()):
            if leg.state != "connected" or leg.tx is None:
                for source in leg.sources:
                    source.stop(now_ns)
                continue
            protect = leg.tx.protect
            sock = leg.sock
            for source in leg.sources:
                if not source.enabled or not source.buffers:
                    continue
                if not source.started_ns:
                    source.started_ns = now_ns
                for _ in range(owed):
                    for plain in source.packets(now_ns):
                        wire = protect(plain)
                        if wire is None:
                            self.srtp_errors += 1
                            continue
                        try:
                            sock.send(wire)
                        except (BlockingIOError, InterruptedError):
                            self.stats.send_drops += 1
                            continue
                        except OSError:
                            self.stats.refused += 1
                            continue
                        self.tx_packets += 1
                        self.tx_bytes += len(wire)

    def _send_tick_native(self, owed: int, now_ns: int) -> None:
        """One tick of `send_loop` in C (`_fastpeer.Sender.tick`): the same rules as `_send_tick_python`, packets
        built from the sources' templates, protected and sent in batches (GSO where runs repeat)."""
        assert self._sender is not None
        counts = self._sender.tick(self.legs_with_sources, now_ns, owed,
                                   self.port.fileno() if self.port is not None else -1)
        sent, sent_bytes, would_block, refused, protect_errors = counts
        self.tx_packets += sent
        self.tx_bytes += sent_bytes
        self.stats.send_drops += would_block
        self.stats.refused += refused
        self.srtp_errors += protect_errors

    async def maintain_loop(self) -> None:
        """Every MAINTAIN_INTERVAL, `maintain` the legs still connecting (ICE checks, DTLS retransmissions); the
        connected ones, whose only timer is the consent refresh (every 5 s), every CONNECTED_MAINTAIN_EVERY-th
        round. Why: at 1,600 connected legs a `maintain` call per leg per 50 ms was ~5 % of the load tool's core
        (py-spy, 200 calls) for a timer that fires once per 100 rounds. In a native engine's steady state (no leg
        connecting) the send tick runs the connected legs' round itself and this loop sleeps until a leg
        registers (`_on_the_tick`)."""
        waiter = self._waiter()
        rounds = 0
        try:
            while True:
                if self._on_the_tick():
                    self._maintainer_wanted = trio.Event()
                    await self._maintainer_wanted.wait()
                    continue
                await waiter.sleep_until(time.monotonic() + MAINTAIN_INTERVAL)
                rounds += 1
                self._maintain_round(time.monotonic(), everyone=rounds % CONNECTED_MAINTAIN_EVERY == 0)
        finally:
            waiter.close()

    def _on_the_tick(self) -> bool:
        """Whether the send tick does the reading and the maintenance now (a native engine, no leg connecting)."""
        return self._receiver is not None and NATIVE_TICK_DRAIN and not self.connecting

    @property
    def steady(self) -> bool:
        """The send tick reads the sockets and maintains the connected legs now (`NATIVE_TICK_DRAIN`)."""
        return self._on_the_tick()

    def _maintain_round(self, now: float, *, everyone: bool) -> None:
        """`maintain` the legs that are not connected (every one with ``everyone``), and count those connecting;
        if some are, the receive and maintenance loops take their jobs back from the tick."""
        connecting = 0
        for leg in list(self.legs.values()):
            state = leg.state
            if everyone or state != "connected":
                leg.maintain(now)
                connecting += state in CONNECTING_STATES
        self.connecting = connecting
        if connecting:
            self._wake_loops()

    def _wake_loops(self) -> None:
        for parked in (self._receiver_wanted, self._maintainer_wanted):
            if parked is not None:
                parked.set()

    def snapshot(self, legs: list[Leg]) -> dict[str, int | float]:
        """Cumulative counters over ``legs`` (open or closed), for the progress display and the results.

        One pass over the streams, their properties' formulas inline, the delivery sums (`delivery`'s rules) in the
        same pass. Why: the worker takes a snapshot every 0.5 s, and at 200 calls x 8 that is 11,200 streams; the
        property calls and the second walk of `delivery` were 4-7 % of the load process (py-spy, session 7).
        `tests/loadtest/test_snapshot_sums.py` holds it to the properties and to `delivery`."""
        self.sync()
        until = self.stopped_ns or time.monotonic_ns()
        first: dict[tuple[int, int], int] = {}
        heard: dict[tuple[int, int], int] = {}
        expected = received = lost = e2e_expected = e2e_lost = 0
        for leg in legs:
            user = leg.user_number
            for st in leg.streams.values():
                n = st.received
                received += n
                if st.started:
                    span = st.cycles + st.max_seq - st.base_seq + 1
                    expected += span
                    if span > n:
                        lost += span - n
                sender = st.sender
                if sender < 0:
                    continue
                sampled = st.last_counter - st.first_counter + 1
                if sampled < 0:
                    sampled = 0
                e2e_expected += sampled
                missing = sampled - (st.last_index - st.first_index + 1)
                if missing > 0:
                    e2e_lost += missing
                key = (user, sender)
                start = first.get(key)
                if start is None or st.first_counter < start:
                    first[key] = st.first_counter
                heard[key] = heard.get(key, 0) + n - st.first_index + 1
        delivery_expected, delivery_lost = self._delivery_totals(first, heard, until)
        return {
            "tx_packets": self.tx_packets,
            "tx_bytes": self.tx_bytes,
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "rx_rtcp": self.rx_rtcp,
            "rx_verified": self.rx_verified,
            "expected": expected,
            "received": received,
            "lost": lost,
            "e2e_expected": e2e_expected,
            "e2e_lost": e2e_lost,
            "delivery_expected": delivery_expected,
            "delivery_lost": delivery_lost,
            "srtp_errors": self.srtp_errors,
            "send_drops": self.stats.send_drops,
            "late_ticks": self.late_ticks,
            "max_lateness_ms": round(self.max_lateness * 1000, 2),
        }
