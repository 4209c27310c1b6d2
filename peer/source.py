"""Outgoing RTP streams of a simulated peer: Opus-sized audio and VP8-shaped video, with a stamp in every payload.

Payload layout (plain RTP payload, >= 32 bytes): bytes 0..11 codec-ish filler (a VP8 payload descriptor and frame
tag for video), 12..15 ``b"CLT1"``, 16..23 the sender's ``time.monotonic_ns()``, 24..27 the source's own packet
counter, 28..31 the source's id (``user number * 4 + source index``). Receivers parse the RTP header in the clear
(sequence, timestamp, SSRC: loss and jitter for every packet) and decrypt one packet in ``delay_sample`` to read
the stamp (one-way delay, and the sender's side of the delivery count).

Packets are built into pre-allocated ``bytearray`` templates (``struct.pack_into`` of seq/timestamp and stamp): the
send tick of a load process builds thousands per second.
"""

from __future__ import annotations

import struct

from callsd.core.wire.negotiation import AUDIO_LEVEL_URI, MID_URI

__all__ = ["Source", "TICK", "MAGIC", "STAMP"]

TICK = 0.020  # seconds: 20 ms Opus frames
AUDIO_PAYLOAD = 140  # bytes of RTP payload: with header, extension and tag ~ 170 B on the wire, Opus-sized
VIDEO_MTU_PAYLOAD = 1100
MAGIC = b"CLT1"
_HDR = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
STAMP = struct.Struct("!QII")  # send ns, source counter, source id


RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


def _extension(ids: dict[str, int], mid: str, audio: bool, rid: str = "") -> bytes:
    """A one-byte-header (RFC 8285) extension block: audio level (voice, -30 dBov), mid and a simulcast layer's
    RID, as negotiated."""
    elements = b""
    if audio and AUDIO_LEVEL_URI in ids:
        elements += bytes([(ids[AUDIO_LEVEL_URI] << 4) | 0, 0x80 | 30])
    if MID_URI in ids and mid:
        raw = mid.encode()
        elements += bytes([(ids[MID_URI] << 4) | (len(raw) - 1)]) + raw
    if RID_URI in ids and rid:
        raw = rid.encode()
        elements += bytes([(ids[RID_URI] << 4) | (len(raw) - 1)]) + raw
    if not elements:
        return b""
    elements += b"\x00" * (-len(elements) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements


class Source:
    """One outgoing RTP stream (Opus audio at 50 packets/s, or VP8-shaped video at ``bitrate`` bit/s)."""

    __slots__ = ("kind", "ssrc", "mid", "pt", "user_number", "source_id", "buffers", "offset", "seq", "ts",
                 "counter", "enabled", "packets_per_tick", "tick_in_frame", "frame_ticks", "ts_step", "frames",
                 "started_ns", "stopped_ns", "bitrate", "rid", "template_key")

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
        self.stopped_ns = 0  # since when its leg cannot send (failed, closed, reconnecting); 0 while it can
        self.bitrate = bitrate
        self.rid = ""  # a simulcast layer's RID (app/loadtest/simulcast.py), sent in the RID header extension
        self.buffers: list[bytearray] = []
        self.template_key: tuple[object, ...] = ()  # what `buffers` were built from (`configure`)
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
        """(Re)build the packet templates for the negotiated payload type and header extension ids.

        Every re-offer configures every source again, mostly with what it had: then the templates are kept (and the
        native sender does not reload them)."""
        audio = self.kind == "audio"
        ext = _extension(ext_ids, mid, audio, self.rid)
        key = (mid, pt, ext, self.bitrate, self.packets_per_tick)
        if key == self.template_key and self.buffers:
            return
        self.template_key = key
        self.mid = mid
        self.pt = pt
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

    def stop(self, now_ns: int) -> None:
        """Its leg stopped sending (not connected, closed): from now on the source owes packets (see `intended`).
        A send tick that merely runs late does not count: what the load tool itself failed to send is its own
        stall (``late_ticks``), not loss."""
        if self.started_ns and not self.stopped_ns:
            self.stopped_ns = now_ns

    def _owed(self, now_ns: int) -> int:
        if not self.stopped_ns:
            return 0
        return max(0, round((now_ns - self.stopped_ns) / 1e9 * self.rate))

    def intended(self, until_ns: int) -> int:
        """The source's packet counter as it would read at ``until_ns`` had its user kept sending: the sender's side
        of the delivery count (receivers compare it with what they got, so a stream that stops is counted lost)."""
        return self.counter + self._owed(until_ns)

    def packets(self, now_ns: int) -> list[bytes]:
        """The plaintext packets due in one 20 ms tick, with sequence numbers, timestamps and stamps filled in.

        Audio: one packet per tick. Video: a whole frame on the first tick of every ``frame_ticks``, none between.
        After its leg could not send (`stop`), the stamp counter jumps by what was owed, so receivers count the gap
        as lost.
        """
        if self.stopped_ns:
            self.counter += self._owed(now_ns)
            self.stopped_ns = 0
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
            STAMP.pack_into(buf, off + 16, now_ns, self.counter, self.source_id)
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
