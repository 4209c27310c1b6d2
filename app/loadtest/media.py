"""The simulated users' media: ICE (controlling, against an ICE-lite server), DTLS client, SRTP, RTP send/receive.

Cost model (the point of this module): one process must simulate hundreds of users on one core, so nothing here
runs per user per packet in its own task.

- Every user (a :class:`Leg`) owns one non-blocking UDP socket, ``connect()``-ed to the server's candidate once ICE
  starts (so ``send``/``recv`` skip address handling and the kernel filters strangers).
- One receive task per process: all sockets are registered in one ``epoll`` object; the task awaits
  ``trio.lowlevel.wait_readable(epoll_fd)``, then reads one datagram per ready socket per ``poll(0)`` round until
  a round finds nothing ready (no failing ``recv`` per socket per wake-up).
- One send task per process on an absolute 20 ms tick: each sending leg builds its packets into pre-allocated
  ``bytearray`` headers (``struct.pack_into`` of seq/timestamp and the send stamp), SRTP-protects and sends them.
  A late tick sends the packets it owes (bounded), so RTP timing and rate stay right; lateness is counted.
  Video leaves as one burst of MTU-sized packets per frame (10 frames/s), as an encoder would emit it.
- One maintenance task: ICE check retransmissions, consent refresh (every 5 s; the server closes sessions after
  30 s without consent), DTLS retransmission timers.

Payload layout (plain RTP payload, >= 32 bytes): bytes 0..11 codec-ish filler (a VP8 payload descriptor and frame
tag for video), 12..15 ``b"CLT1"``, 16..23 the sender's ``time.monotonic_ns()``, 24..27 the source's own packet
counter, 28..31 the source's id (``user number * 4 + source index``). Receivers parse the RTP header in the clear (sequence, timestamp, SSRC:
loss and jitter for every packet) and decrypt one packet in ``delay_sample`` to read the stamp (one-way delay).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable

import pylibsrtp
import trio
from aioice import stun
from callsd.adapters.media.dtls import Certificate
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from .sdp import AUDIO_LEVEL_URI, MID_URI
from .stats import Histogram, StreamStats

__all__ = ["Identity", "Source", "Leg", "MediaEngine", "TICK", "udp_drops", "RCVBUF"]

TICK = 0.020  # seconds: 20 ms Opus frames
BATCH_THRESHOLD = 4  # packets per wake-up above which the receive loop batches with short sleeps
BATCH_SLEEP = 0.0005  # seconds; bounds what batching adds to the measured delay
RCVBUF = 1 << 20  # per user socket: rides out a scheduling stall of the tool of ~0.5 s at screen-share rates
AUDIO_PAYLOAD = 140  # bytes of RTP payload: with header, extension and tag ~ 170 B on the wire, Opus-sized
VIDEO_MTU_PAYLOAD = 1100
GAP_SECONDS = 0.5  # a source not sent for this long was stopped (late ticks owe at most 5 x 20 ms)
MAGIC = b"CLT1"
_HDR = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
_STAMP = struct.Struct("!QII")  # send ns, source counter, user number
_SRTP_PROFILES = {
    b"SRTP_AEAD_AES_128_GCM": (16, 12, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
    b"SRTP_AES128_CM_SHA1_80": (16, 14, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
}


class Identity:
    """One ECDSA P-256 self-signed certificate and DTLS context per process, shared by all its users."""

    def __init__(self) -> None:
        # The same certificate recipe as the server's (a self-signed ECDSA P-256 identity); the handshake and SRTP
        # code below stays the tool's own, so the tool does not measure the server with the server's own client.
        identity = Certificate.generate("callsd-loadtest")
        cert, key = identity.cert, identity.key
        self.fingerprint = identity.fingerprint
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        ctx.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80")
        self.context = ctx


def _extension(ids: dict[str, int], mid: str, audio: bool) -> bytes:
    """A one-byte-header (RFC 8285) extension block: audio level (voice, -30 dBov) and mid, as negotiated."""
    elements = b""
    if audio and AUDIO_LEVEL_URI in ids:
        elements += bytes([(ids[AUDIO_LEVEL_URI] << 4) | 0, 0x80 | 30])
    if MID_URI in ids and mid:
        raw = mid.encode()
        elements += bytes([(ids[MID_URI] << 4) | (len(raw) - 1)]) + raw
    if not elements:
        return b""
    elements += b"\x00" * (-len(elements) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements


class Source:
    """One outgoing RTP stream (Opus audio at 50 packets/s, or VP8-shaped video at ``bitrate`` bit/s)."""

    __slots__ = ("kind", "ssrc", "mid", "pt", "user_number", "source_id", "buffers", "offset", "seq", "ts",
                 "counter", "enabled", "packets_per_tick", "tick_in_frame", "frame_ticks", "ts_step", "frames",
                 "started_ns", "last_ns", "bitrate")

    def __init__(self, *, kind: str, ssrc: int, user_number: int, bitrate: int = 0, seed: int = 0,
                 index: int = 0) -> None:
        self.kind = kind
        self.ssrc = ssrc
        self.mid = ""
        self.pt = 0
        self.user_number = user_number
        self.source_id = user_number * 4 + index  # what receivers read from the stamp (index: 0 mic, 1 cam, 2 screen)
        self.seq = seed & 0xFFFF
        self.ts = (seed * 7919) & 0xFFFFFFFF
        self.counter = 0
        self.enabled = False
        self.tick_in_frame = 0
        self.frames = 0
        self.started_ns = 0
        self.last_ns = 0  # when `packets` last ran (the send tick reached this source)
        self.bitrate = bitrate
        self.buffers: list[bytearray] = []
        self.offset = 0
        if kind == "audio":
            self.packets_per_tick = 1
            self.frame_ticks = 1
            self.ts_step = 960
        else:
            # 10 frames/s; each frame leaves as one burst of MTU-sized packets on its first tick, like an
            # encoder's output, so RTP timestamps and arrival times stay comparable (jitter is meaningful).
            self.frame_ticks = 5
            bytes_per_frame = max(64, int(bitrate * TICK * self.frame_ticks / 8))
            self.packets_per_tick = -(-bytes_per_frame // VIDEO_MTU_PAYLOAD)
            self.ts_step = 9000

    def configure(self, mid: str, pt: int, ext_ids: dict[str, int]) -> None:
        """(Re)build the packet templates for the negotiated payload type and header extension ids."""
        self.mid = mid
        self.pt = pt
        audio = self.kind == "audio"
        ext = _extension(ext_ids, mid, audio)
        first = (0x90 if ext else 0x80)
        header = bytearray(12)
        header[0] = first
        header[1] = pt & 0x7F
        struct.pack_into("!I", header, 8, self.ssrc)
        header += ext
        self.offset = len(header)
        if audio:
            payload = bytearray(AUDIO_PAYLOAD)
            payload[0] = 0xFC  # an Opus TOC byte (CELT FB 20 ms) for anything that peeks
            self.buffers = [header + payload]
        else:
            size = max(32, int(self.bitrate * TICK * self.frame_ticks / 8) // self.packets_per_tick)
            self.buffers = [header + bytearray(size) for _ in range(self.packets_per_tick)]
        for buf in self.buffers:
            buf[self.offset + 12 : self.offset + 16] = MAGIC
            struct.pack_into("!I", buf, self.offset + 28, self.source_id)

    @property
    def rate(self) -> float:
        """Packets per second this source emits while it sends."""
        return self.packets_per_tick / (self.frame_ticks * TICK)

    def _owed(self, now_ns: int) -> int:
        """Packets this source should have sent since its last tick but did not, because its leg was not sending
        (failed, closed, reconnecting). Zero for ordinary tick lateness (bounded to a few ticks)."""
        if not self.started_ns or not self.last_ns:
            return 0
        gap = (now_ns - self.last_ns) / 1e9
        if gap < GAP_SECONDS:
            return 0
        return max(0, round((gap - self.frame_ticks * TICK) * self.rate))

    def intended(self, until_ns: int) -> int:
        """The source's packet counter as it would read at ``until_ns`` had it kept sending: the sender's side of
        the delivery count (receivers compare it with what they got, so a stream that stops is counted lost)."""
        return self.counter + self._owed(until_ns)

    def packets(self, now_ns: int) -> list[bytes]:
        """The plaintext packets due in one 20 ms tick, with sequence numbers, timestamps and stamps filled in.

        Audio: one packet per tick. Video: a whole frame on the first tick of every ``frame_ticks``, none between.
        After a gap (the leg was not sending), the stamp counter jumps by what was owed, so receivers count the
        gap as lost.
        """
        self.counter += self._owed(now_ns)
        self.last_ns = now_ns
        tick = self.tick_in_frame
        self.tick_in_frame = (tick + 1) % self.frame_ticks
        if tick != 0:
            return []
        out = []
        off = self.offset
        n = len(self.buffers)
        audio = self.kind == "audio"
        keyframe = self.frames % 20 == 0
        for i, buf in enumerate(self.buffers):
            self.seq = (self.seq + 1) & 0xFFFF
            self.counter += 1
            _HDR.pack_into(buf, 2, self.seq, self.ts, self.ssrc)
            _STAMP.pack_into(buf, off + 16, now_ns, self.counter, self.source_id)
            if audio:
                buf[1] = self.pt | (0x80 if self.counter == 1 else 0)
            else:
                buf[1] = self.pt | (0x80 if i == n - 1 else 0)  # marker: last packet of the frame
                buf[off] = 0x10 if i == 0 else 0x00  # VP8 payload descriptor: S bit on the frame's first packet
                buf[off + 1] = (0x10 if keyframe else 0x11) if i == 0 else 0x00  # VP8 frame tag: key / inter
            out.append(bytes(buf))
        self.frames += 1
        self.ts = (self.ts + self.ts_step) & 0xFFFFFFFF
        return out


class Leg:
    """One simulated user's WebRTC transport: socket, ICE, DTLS, SRTP, its sources and received streams.

    States: ``new`` -> ``checking`` (ICE binding requests with USE-CANDIDATE until a success response) ->
    ``dtls`` (client handshake) -> ``connected`` (SRTP) ; any -> ``failed`` (with ``error``) or ``closed``.
    """

    def __init__(self, engine: MediaEngine, *, user_number: int, call_index: int, ufrag: str, pwd: str) -> None:
        self.engine = engine
        self.user_number = user_number
        self.call_index = call_index
        self.local_ufrag = ufrag
        self.local_pwd = pwd
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind(("127.0.0.1", 0))
        self.local_address: tuple[str, int] = self.sock.getsockname()
        self.state = "new"
        self.error = ""
        self.remote_ufrag = ""
        self.remote_pwd = ""
        self.remote_fingerprint = ""
        self.tie_breaker = int.from_bytes(os.urandom(8), "big")
        self.ssl: SSL.Connection | None = None
        self.tx: pylibsrtp.Session | None = None
        self.rx: pylibsrtp.Session | None = None
        self.sources: list[Source] = []
        self.streams: dict[int, StreamStats] = {}
        self.pt_kinds: dict[int, tuple[str, int]] = {}  # pt -> (kind, clock rate)
        self.pending_txn: bytes = b""
        self.checks_sent = 0
        self.state_since = time.monotonic()
        self.last_consent = 0.0
        self.consent_ok_at = 0.0
        self.join_started_ns = 0
        self.first_audio_ns = 0
        self.connected_ns = 0
        self.rx_count = 0
        self.delay = engine.call_delay(call_index)
        self.on_connected: Callable[[Leg], None] | None = None
        engine.register(self)

    # -- control ---------------------------------------------------------------------------------------------
    def start(self, *, remote_ufrag: str, remote_pwd: str, remote_fingerprint: str, address: tuple[str, int]) -> None:
        """Begin ICE towards the server candidate ``address`` (the first remote answer's credentials)."""
        if self.state != "new":
            return
        self.remote_ufrag = remote_ufrag
        self.remote_pwd = remote_pwd
        self.remote_fingerprint = remote_fingerprint.strip()
        try:
            self.sock.connect(address)
        except OSError as exc:
            self._fail(f"connect: {exc}")
            return
        self._set_state("checking")
        self._send_check(use_candidate=True)

    def set_payload_types(self, mapping: dict[int, tuple[str, int]]) -> None:
        self.pt_kinds.update(mapping)

    def close(self) -> None:
        if self.state not in ("closed",):
            self._set_state("closed")
        self.engine.unregister(self)
        self.sock.close()

    # -- internals -------------------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_since = time.monotonic()

    def _fail(self, error: str) -> None:
        if self.state in ("failed", "closed"):
            return
        self.error = error
        self._set_state("failed")
        self.engine.failures[error.split(":")[0]] = self.engine.failures.get(error.split(":")[0], 0) + 1

    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.engine.send_drops += 1
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                self.engine.refused += 1
            else:
                self._fail(f"send: {exc}")

    def _send_check(self, *, use_candidate: bool) -> None:
        msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        msg.attributes["USERNAME"] = f"{self.remote_ufrag}:{self.local_ufrag}"
        msg.attributes["PRIORITY"] = 1853824767
        msg.attributes["ICE-CONTROLLING"] = self.tie_breaker
        if use_candidate:
            msg.attributes["USE-CANDIDATE"] = None
        msg.add_message_integrity(self.remote_pwd.encode())
        self.pending_txn = msg.transaction_id
        self.checks_sent += 1
        self.last_consent = time.monotonic()
        self._send_raw(bytes(msg))

    def _on_stun(self, data: bytes) -> None:
        try:
            msg = stun.parse_message(data)
        except ValueError:
            self.engine.malformed += 1
            return
        if msg.message_method != stun.Method.BINDING:
            return
        if msg.message_class == stun.Class.REQUEST:
            # An ICE-lite server never checks, but answer politely if it does.
            resp = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=msg.transaction_id)
            resp.attributes["XOR-MAPPED-ADDRESS"] = self.sock.getpeername()
            resp.add_message_integrity(self.local_pwd.encode())
            self._send_raw(bytes(resp))
            return
        if msg.transaction_id != self.pending_txn:
            return
        if msg.message_class != stun.Class.RESPONSE or not msg.check_message_integrity(self.remote_pwd.encode()):
            self.engine.stun_errors += 1
            return
        self.consent_ok_at = time.monotonic()
        if self.state == "checking":
            self._set_state("dtls")
            conn = SSL.Connection(self.engine.identity.context, None)
            conn.set_connect_state()
            self.ssl = conn
            self._dtls_step()

    def _dtls_flush(self) -> None:
        assert self.ssl is not None
        while True:
            try:
                out = self.ssl.bio_read(1500)
            except SSL.WantReadError:
                return
            if not out:
                return
            self._send_raw(out)

    def _dtls_step(self) -> None:
        assert self.ssl is not None
        try:
            self.ssl.do_handshake()
        except SSL.WantReadError:
            self._dtls_flush()
            return
        except SSL.Error as exc:
            self._fail(f"dtls: {exc}")
            return
        self._dtls_flush()
        self._on_handshake_done()

    def _on_dtls(self, data: bytes) -> None:
        if self.ssl is None:
            return
        self.ssl.bio_write(data)
        if self.state == "dtls":
            self._dtls_step()
            return
        try:
            self.ssl.recv(1500)
        except (SSL.WantReadError, SSL.ZeroReturnError):
            pass
        except SSL.Error:
            pass
        self._dtls_flush()

    def _on_handshake_done(self) -> None:
        assert self.ssl is not None
        cert = self.ssl.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self._fail("dtls: no peer certificate")
            return
        algo, _, expected = self.remote_fingerprint.partition(" ")
        got = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
        if algo.lower() != "sha-256" or got != expected.upper():
            self._fail("fingerprint: server certificate does not match the SDP fingerprint")
            return
        profile = self.ssl.get_selected_srtp_profile()
        if profile not in _SRTP_PROFILES:
            self._fail(f"srtp: no usable SRTP profile negotiated ({profile!r})")
            return
        key_len, salt_len, srtp_profile = _SRTP_PROFILES[profile]
        material = self.ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        client_key = material[:key_len]
        server_key = material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        tx_policy = pylibsrtp.Policy(key=client_key + client_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                     srtp_profile=srtp_profile)
        rx_policy = pylibsrtp.Policy(key=server_key + server_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                     srtp_profile=srtp_profile)
        rx_policy.window_size = 1024
        self.tx = pylibsrtp.Session(tx_policy)
        self.rx = pylibsrtp.Session(rx_policy)
        self.connected_ns = time.monotonic_ns()
        self._set_state("connected")
        if self.on_connected is not None:
            self.on_connected(self)

    def new_stream(self, ssrc: int, pt: int) -> StreamStats:
        kind, clock = self.pt_kinds.get(pt, ("unknown", 90000))
        st = StreamStats(kind, clock)
        self.streams[ssrc] = st
        return st

    def maintain(self, now: float) -> None:
        """Timers: ICE retransmission (every 200 ms, give up after 10 s), consent every 5 s, DTLS timeouts."""
        state = self.state
        if state == "checking":
            if now - self.state_since > 10.0:
                self._fail("ice: no binding response from the server in 10 s")
            elif now - self.last_consent >= 0.2:
                self._send_check(use_candidate=True)
        elif state == "dtls":
            if now - self.state_since > 15.0:
                self._fail("dtls: handshake did not complete in 15 s")
                return
            assert self.ssl is not None
            timeout = self.ssl.DTLSv1_get_timeout()
            if timeout is not None and timeout <= 0:
                self.ssl.DTLSv1_handle_timeout()
                self._dtls_flush()
        elif state == "connected" and now - self.last_consent >= 5.0:
            if self.consent_ok_at and now - self.consent_ok_at > 30.0:
                self._fail("consent: server stopped answering consent checks")
                return
            self._send_check(use_candidate=False)


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

    def __init__(self, identity: Identity, *, delay_sample: int = 1) -> None:
        self.identity = identity
        self.delay_sample = max(1, delay_sample)
        self.epoll = select.epoll()
        self.legs: dict[int, Leg] = {}
        self.delay = Histogram()
        self.call_delays: dict[int, list[float]] = {}
        self.failures: dict[str, int] = {}
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_rtcp = 0
        self.srtp_errors = 0
        self.stun_errors = 0
        self.malformed = 0
        self.send_drops = 0
        self.refused = 0
        self.late_ticks = 0
        self.max_lateness = 0.0
        self.sending = True
        self.stopped_ns = 0  # when sending ended (the end of the delivery window)
        self.sources: dict[int, Source] = {}  # source id -> source, for the sender's side of delivery

    def add_source(self, source: Source) -> None:
        self.sources[source.source_id] = source

    def stop_sending(self) -> None:
        self.sending = False
        self.stopped_ns = time.monotonic_ns()

    def delivery(self, legs: list[Leg], now_ns: int | None = None) -> tuple[int, int]:
        """(expected, lost) packets counted from the senders' side, over ``legs`` (open or closed).

        For each receiving user and each source it heard: expected = the source's intended counter at the end of
        the window (``stopped_ns``, or now) minus the first counter the user received from it, plus one; received
        = every packet of that source on any of the user's streams (all its legs, so reconnects are included).
        A receiver that stops receiving, or a sender that stops sending, keeps adding to ``expected``."""
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
        expected = lost = 0
        for key, start in first.items():
            source = self.sources.get(key[1])
            if source is None:
                continue
            n = max(0, source.intended(until) - start + 1)
            expected += n
            lost += max(0, n - received[key])
        return expected, lost

    def call_delay(self, call_index: int) -> list[float]:
        """[sum ms, count, max ms] of one-way delay samples for a call (shared by its legs)."""
        return self.call_delays.setdefault(call_index, [0.0, 0, 0.0])

    def register(self, leg: Leg) -> None:
        fd = leg.sock.fileno()
        self.legs[fd] = leg
        self.epoll.register(fd, select.EPOLLIN)

    def unregister(self, leg: Leg) -> None:
        fd = leg.sock.fileno()
        if self.legs.get(fd) is leg:
            del self.legs[fd]
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(fd)

    # -- receive ---------------------------------------------------------------------------------------------
    async def receive_loop(self) -> None:
        """Read every readable socket, then sleep on the epoll fd. Never returns (cancel it).

        Each round reads one datagram per ready socket and polls again (level-triggered), instead of draining each
        socket until ``BlockingIOError``: with hundreds of sockets that each receive a packet now and then, the
        failing ``recv`` + exception per socket per wake-up would cost more than the packet itself.
        """
        epoll = self.epoll
        legs = self.legs
        rounds = 0
        burst = 0  # packets read since the last sleep
        while True:
            events = epoll.poll(0)
            if not events:
                rounds = 0
                if burst >= BATCH_THRESHOLD:
                    # Busy: sleep a fixed half millisecond and then read what piled up, rather than being woken
                    # (and paying Trio's scheduling) for every few packets.
                    burst = 0
                    await trio.sleep(BATCH_SLEEP)
                else:
                    burst = 0
                    await trio.lowlevel.wait_readable(epoll.fileno())
                continue
            burst += len(events)
            for fd, _ in events:
                leg = legs.get(fd)
                if leg is not None:
                    self._read_one(leg)
            rounds += 1
            if rounds >= 16:  # let the send tick and the signaling run under a flood
                rounds = 0
                await trio.lowlevel.checkpoint()

    def _read_one(self, leg: Leg) -> None:
        try:
            data = leg.sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                self.refused += 1
            return
        if not data:
            return
        b0 = data[0]
        if 128 <= b0 <= 191:
            b1 = data[1]
            if 192 <= b1 <= 223:
                self.rx_rtcp += 1
                return
            if len(data) < 12 or leg.rx is None:
                self.malformed += 1
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
        elif 20 <= b0 <= 63:
            leg._on_dtls(data)
        elif b0 < 4:
            leg._on_stun(data)
        else:
            self.malformed += 1

    def _sample_delay(self, leg: Leg, st: StreamStats, data: bytes, now: int) -> None:
        assert leg.rx is not None
        try:
            plain = leg.rx.unprotect(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        off = 12 + 4 * (plain[0] & 0x0F)
        if plain[0] & 0x10 and len(plain) >= off + 4:
            off += 4 + 4 * ((plain[off + 2] << 8) | plain[off + 3])
        if plain[off + 12 : off + 16] != MAGIC:
            return
        sent_ns, counter, sender = _STAMP.unpack_from(plain, off + 16)
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
        start = trio.current_time()
        tick = 0
        while True:
            tick += 1
            await trio.sleep_until(start + tick * TICK)
            lateness = trio.current_time() - (start + tick * TICK)
            owed = 1
            if lateness > TICK:
                self.late_ticks += 1
                owed = min(5, 1 + int(lateness / TICK))
                tick += owed - 1
            self.max_lateness = max(self.max_lateness, lateness)
            if not self.sending:
                continue
            now_ns = time.monotonic_ns()
            for leg in list(self.legs.values()):
                if leg.state != "connected" or leg.tx is None:
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
                            try:
                                sock.send(wire)
                            except (BlockingIOError, InterruptedError):
                                self.send_drops += 1
                                continue
                            except OSError:
                                self.refused += 1
                                continue
                            self.tx_packets += 1
                            self.tx_bytes += len(wire)

    async def maintain_loop(self) -> None:
        while True:
            await trio.sleep(0.05)
            now = time.monotonic()
            for leg in list(self.legs.values()):
                leg.maintain(now)

    def snapshot(self, legs: list[Leg]) -> dict[str, int | float]:
        """Cumulative counters over ``legs`` (open or closed), for the progress display and the results."""
        delivery_expected, delivery_lost = self.delivery(legs)
        expected = received = lost = e2e_expected = e2e_lost = 0
        for leg in legs:
            for st in leg.streams.values():
                expected += st.expected
                received += st.received
                lost += st.lost
                e2e_expected += st.e2e_expected
                e2e_lost += st.e2e_lost
        return {
            "tx_packets": self.tx_packets,
            "tx_bytes": self.tx_bytes,
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "rx_rtcp": self.rx_rtcp,
            "expected": expected,
            "received": received,
            "lost": lost,
            "e2e_expected": e2e_expected,
            "e2e_lost": e2e_lost,
            "delivery_expected": delivery_expected,
            "delivery_lost": delivery_lost,
            "srtp_errors": self.srtp_errors,
            "send_drops": self.send_drops,
            "late_ticks": self.late_ticks,
            "max_lateness_ms": round(self.max_lateness * 1000, 2),
        }
