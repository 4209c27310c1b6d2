"""Fuzz targets: one function per parser that reads bytes from the network or the disk.

Each target takes the fuzzer's bytes, feeds them to the parser the server uses, and lets only the parser's one
declared error pass (h11's invariant: any input either parses or raises the declared error). Anything else escapes,
and the fuzzer reports it as a crash with the input that caused it. Where a successful parse is handed to more code
on the server's path (a STUN request to the integrity check, an RTP header to the extension readers), the target
follows it there too, with the same rule.

| target      | parser                                                         | declared error        |
|-------------|----------------------------------------------------------------|-----------------------|
| stun        | adapters/media/ice.py parse_binding_request + IceLiteState.accept (aioice.stun) | StunRejected |
| dtls        | the UDP demux (adapters/media/udp.py CLASSIFY) + DtlsSession.feed (server side)   | DtlsError    |
| rtp         | core/wire/rtp.py parse_rtp, then the header readers and rewrite_rtp              | RtpError (readers: none) |
| rtcp        | core/wire/rtcp.py parse_rtcp, then parse_remb, transport-cc, cname_of | RtcpError             |
| sdp         | core/wire/sdp.py parse_sdp                                     | SdpError              |
| signaling   | adapters/signaling_protocol.py parse_message (+ field readers) | SignalingError        |
| eventlog    | core/calls/eventlog.py decode_entry, then the chain check      | EventLogError         |
| checkpoint  | a checkpoint file: JSON, then core/calls/snapshot.py from_checkpoint | SnapshotError   |
| negotiation | core/wire/negotiation.py Negotiator.handle_offer / handle_answer (client SDP) | none: rejections are results, and an answer must parse |
| candidate   | core/wire/sdp.py parse_candidate (trickled ICE candidates)     | SdpError              |
| token       | app/auth.py verify_token (token mode, before anything else)    | TokenError            |
| rtcd        | the rtcd API's credentials: Basic and Bearer headers (app/rtcd_api.py), bearer tokens (app/rtcd_auth.py) | none: a bad credential is None |
| http_inbound | app/http_inbound.py InboundGuard (with app/http_requests.py), the bytes of one HTTP connection, fed whole, split and byte by byte | none: a refusal is a result, and must not depend on the split |

The modules are imported by ``fuzz/run.py`` inside ``atheris.instrument_imports()`` so coverage guides the search.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from aioice import stun
from callsd.adapters.media.dtls import Certificate, DtlsError, DtlsSession
from callsd.adapters.media.ice import IceLiteState, StunRejected, parse_binding_request
from callsd.adapters.media.udp import CLASSIFY, KIND_DTLS
from callsd.adapters.signaling_protocol import SignalingError, field_id, field_str, parse_message
from callsd.app.auth import TokenError, verify_token
from callsd.app.http_inbound import Inbound, InboundGuard, Phase
from callsd.app.rtcd_api import _basic, _bearer
from callsd.app.rtcd_auth import BearerTokens
from callsd.core.calls.checkpoint import from_checkpoint
from callsd.core.calls.eventlog import ChainCheck, EventLogError, decode_entry
from callsd.core.calls.snapshot import SnapshotError
from callsd.core.wire.negotiation import LocalTransport, Negotiator, OfferAnswered, OfferMade, OutgoingTrack
from callsd.core.wire.rtcp import Feedback, RtcpError, SourceDescription, parse_remb, parse_rtcp
from callsd.core.wire.rtp import (
    RtpError,
    find_extension,
    make_extension_remap,
    parse_rtp,
    payload_offset,
    peek_payload_type,
    peek_seq,
    peek_ssrc,
    read_audio_level,
    read_mid,
    rewrite_rtp,
)
from callsd.core.wire.sdp import Codec, SdpError, parse_candidate, parse_sdp
from callsd.core.wire.transport_cc import parse_transport_cc
from callsd.core.wire.transport_seq import stamp_transport_seq

__all__ = ["TARGETS", "STUN_PASSWORD", "TOKEN_SECRET", "TOKEN_NOW"]

STUN_PASSWORD = "fuzz-password-0123456789"  # the seeds' requests are signed with it, so accept() gets past HMAC
TOKEN_SECRET = "fuzz-token-secret-0123456789"  # the seeds' tokens are signed with it, so the payload is parsed
TOKEN_NOW = 1_800_000_000.0
_SERVER = LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789", host="127.0.0.1", port=9,
                         fingerprint="sha-256 " + ":".join(["AB"] * 32))
_FIRST_OFFER = (Path(__file__).resolve().parent.parent / "tests" / "media" / "data" / "offer_chromium.sdp").read_text()
_OUTGOING = (
    OutgoingTrack(track_id="mic", stream_id="s", kind="audio", ssrc=11,
                  codec=Codec(payload_type=111, name="opus", clock_rate=48000, channels=2)),
    OutgoingTrack(track_id="cam", stream_id="s", kind="video", ssrc=12, rtx_ssrc=13,
                  codec=Codec(payload_type=96, name="VP8", clock_rate=90000)),
)
_CERTIFICATE: Certificate | None = None
_REMAP = make_extension_remap({1: 3, 2: 0, 3: 1, 5: 200})


def _text(data: bytes) -> str:
    """Bytes as the str a JSON string could carry: invalid UTF-8 becomes lone surrogates."""
    return data.decode("utf-8", "surrogateescape")


def stun_target(data: bytes) -> None:
    try:
        request = parse_binding_request(data)
        state = IceLiteState(local_ufrag=request.local_ufrag, local_pwd=STUN_PASSWORD,
                             remote_ufrag=request.remote_ufrag, remote_pwd="x", consent_timeout=30.0,
                             last_consent=0.0)
        response, _ = state.accept(request, ("192.0.2.1", 5000), 1.0)
    except StunRejected:
        return
    stun.parse_message(response)  # what we answer must itself parse


def dtls_target(data: bytes) -> None:
    global _CERTIFICATE
    if not data or CLASSIFY[data[0]] != KIND_DTLS:
        return  # the demux sends it elsewhere (or drops it)
    if _CERTIFICATE is None:
        _CERTIFICATE = Certificate.generate("fuzz")
    session = DtlsSession(_CERTIFICATE.context(), server=True, remote_fingerprint=_CERTIFICATE.fingerprint)
    try:
        # Several datagrams per input: the fuzzer's bytes split on a 0xFF 0xFE marker (a later flight).
        for datagram in data.split(b"\xff\xfe"):
            session.feed(datagram)
            session.take_datagrams()
    except DtlsError:
        pass


def rtp_target(data: bytes) -> None:
    # The forwarder's readers run on every packet before (or instead of) a full parse: they never raise.
    for reader in (peek_ssrc, peek_seq, peek_payload_type, payload_offset):
        reader(data)
    for ext_id in (1, 2, 3, 14, 15):
        find_extension(data, ext_id)
        read_audio_level(data, ext_id)
        read_mid(data, ext_id)
    rewrite_rtp(bytearray(data), 0x1234, 7, 9, 111, _REMAP)
    stamp_transport_seq(data, 3, 0xBEEF)  # the egress stamp (twcc_send.py): a copy or None, never an exception
    with contextlib.suppress(RtpError):
        parse_rtp(data)


def rtcp_target(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    for packet in packets:  # what the RTCP terminator reads next (adapters/media/rtcp_term.py)
        if isinstance(packet, Feedback):
            parse_remb(packet)
            with contextlib.suppress(RtcpError):  # what estimates.py reads from a receiver's transport-cc feedback
                parse_transport_cc(packet)
        elif isinstance(packet, SourceDescription):
            packet.cname_of(1)


def sdp_target(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp(_text(data))


def signaling_target(data: bytes) -> None:
    try:
        message = parse_message(_text(data))
        for name in ("call_id", "channel_id", "session_id", "sdp"):
            with contextlib.suppress(SignalingError):
                field_id(message.data, name, message.type)
            field_str(message.data, name, message.type, max_len=64, required=False)
    except SignalingError:
        pass


def eventlog_target(data: bytes) -> None:
    try:
        record = decode_entry(data, line=1, source="fuzz.jsonl")
    except EventLogError:
        return
    ChainCheck().feed(record)
    ChainCheck(None).anchor(record)


def checkpoint_target(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return  # the stores report unparsable JSON as EventLogError before from_checkpoint sees it
    with contextlib.suppress(SnapshotError):
        from_checkpoint(doc)


def negotiation_target(data: bytes) -> None:
    text = _text(data)
    answering = Negotiator(transport=_SERVER, session_id=1)
    result = answering.handle_offer(text)  # a client's offer: answered, rejected (with a reason) or ignored
    if isinstance(result, OfferAnswered):
        parse_sdp(result.answer)  # what the server sends must parse
        answering.make_offer(_OUTGOING)
    offering = Negotiator(transport=_SERVER, session_id=2)
    offering.handle_offer(_FIRST_OFFER)  # the server offers only after answering the client's first offer
    made = offering.make_offer(_OUTGOING)
    if isinstance(made, OfferMade):
        offering.handle_answer(text)  # the client's answer: applied or rejected


def candidate_target(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        parse_candidate(_text(data))


def token_target(data: bytes) -> None:
    with contextlib.suppress(TokenError):
        verify_token(_text(data), secret=TOKEN_SECRET, now=TOKEN_NOW, channel_id="town-square")


_RTCD_TOKENS: BearerTokens | None = None


def rtcd_target(data: bytes) -> None:
    """An rtcd API request's ``Authorization`` header, whatever it holds, is a client, a token, or None: never an
    exception (which would be a 500 before authentication)."""
    global _RTCD_TOKENS
    if _RTCD_TOKENS is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="callsd-fuzz-rtcd-") as key_dir:  # its key is read once, here
            _RTCD_TOKENS = BearerTokens(key_dir, ttl_seconds=3600)
    header = _text(data)
    for value in (header, "Basic " + header, "Bearer " + header):
        _basic(value)
        token = _bearer(value)
        if token is not None:
            _RTCD_TOKENS.check(token, now=TOKEN_NOW)
    issued, _ = _RTCD_TOKENS.issue("fuzz-client", now=TOKEN_NOW)
    tampered = issued[: len(data) % max(1, len(issued))] + header
    assert _RTCD_TOKENS.check(tampered, now=TOKEN_NOW) is None or tampered.startswith(issued)


HTTP_MESSAGE_LIMIT = 1000  # small, so the fuzzer reaches the 1009 and early-frames refusals


def _guarded(stream: bytes, cuts: list[int], answer_at: int | None) -> tuple[bytes, object]:
    guard = InboundGuard(max_message_bytes=HTTP_MESSAGE_LIMIT, max_head_bytes=2048)
    forwarded = b""
    points = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream)), *([answer_at] if answer_at else [])})
    for start, end in zip(points, points[1:], strict=False):
        checked: Inbound = guard.feed(stream[start:end])
        forwarded += checked.forward
        if checked.refusal is not None:
            return forwarded, checked.refusal
        if answer_at is not None and end >= answer_at and guard.phase is Phase.FRAMES and not guard.upgraded:
            guard.response_started(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    return forwarded, None


def http_inbound_target(data: bytes) -> None:
    """One connection's inbound bytes (after a first byte that picks a cut and whether the server answers the
    upgrade): whole, cut once, and byte by byte, the guard forwards the same bytes and gives the same refusal."""
    if not data:
        return
    stream = data[1:]
    answer_at: int | None = None
    if data[0] & 1:  # the server answers the upgrade once its head is in: find where that is
        guard = InboundGuard(max_message_bytes=HTTP_MESSAGE_LIMIT, max_head_bytes=2048)
        for index in range(len(stream)):
            if guard.feed(stream[index: index + 1]).refusal is not None:
                break
            if guard.phase is Phase.FRAMES:
                answer_at = index + 1
                break
    whole = _guarded(stream, [], answer_at)
    assert _guarded(stream, [data[0] * len(stream) // 256], answer_at) == whole
    assert _guarded(stream, list(range(len(stream))), answer_at) == whole


TARGETS: dict[str, Callable[[bytes], None]] = {
    "stun": stun_target,
    "dtls": dtls_target,
    "rtp": rtp_target,
    "rtcp": rtcp_target,
    "sdp": sdp_target,
    "signaling": signaling_target,
    "eventlog": eventlog_target,
    "checkpoint": checkpoint_target,
    "negotiation": negotiation_target,
    "candidate": candidate_target,
    "token": token_target,
    "rtcd": rtcd_target,
    "http_inbound": http_inbound_target,
}
