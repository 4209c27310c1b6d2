"""Codec policy (pure): which codecs the server accepts from a client, and under which payload types it offers one.

Opus 48 kHz/2 with ``useinbandfec=1`` for audio; VP8, else H264 with packetization-mode=1 (profile 42e01f, then
42001f, then any) for video. A single media codec per section keeps forwarding a plain payload-type rewrite. Video
also accepts the RTX codec (RFC 4588) whose ``apt`` names that codec, when offered: the publisher then answers the
server's NACKs on its RTX stream, and the server offers RTX to receivers for an ``OutgoingTrack`` with an
``rtx_ssrc`` (docs/adr/0019). On a publisher's own sections rtcp-fb is limited to nack, nack pli, ccm fir and
transport-cc as offered: the server sends a publisher transport-cc feedback about every packet it receives
(adapters/media/twcc_recv.py), the input of the browser's send-side estimate; goog-remb is not accepted from a
publisher (the server sends no REMB, and accepting it would make a browser wait for it). The server's own offers (sections it sends on) add goog-remb on
video: the receiving browser then sends REMB, its receive-side estimate, which feeds the server's per-receiver
bandwidth estimate (adapters/media/estimates.py); a receiver has nothing to wait for. They also ask for
transport-cc on audio and video (with the transport-wide-cc extension, extension_ids.OFFERED_EXTENSIONS): the
browser then reports the arrival of every packet the server stamped (adapters/media/twcc_send.py), the input of the
delay-based estimator. A client's re-offer of a server's section keeps that feedback (``server_sends``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import LocalProtocolError
from .negotiation_results import OutgoingTrack
from .sdp import Codec

__all__ = ["choose_codecs", "offer_codecs"]

_KEPT_FEEDBACK = ("nack", "nack pli", "ccm fir")
_ESTIMATE_FEEDBACK = ("goog-remb", "transport-cc")  # what a receiver reports for the server's estimate of its link
_VIDEO_FEEDBACK = (*_KEPT_FEEDBACK, *_ESTIMATE_FEEDBACK)  # what a server offer asks for on video sections
_AUDIO_FEEDBACK = ("transport-cc",)  # audio packets carry the transport-wide number too: the receiver reports them
_PUBLISHER_FEEDBACK = ("transport-cc",)  # the server's feedback about what a publisher sends (twcc_recv.py)
_H264_PROFILES = ("42e01f", "42001f")


def _codec_key(c: Codec) -> tuple[str, int, int]:
    return (c.name.lower(), c.clock_rate, c.channels or 1)


def _h264_ok(c: Codec, profile: str | None) -> bool:
    p = c.params
    return p.get("packetization-mode") == "1" and (profile is None or p.get("profile-level-id", "").lower() == profile)


def _same_codec(a: Codec, b: Codec) -> bool:
    if _codec_key(a) != _codec_key(b):
        return False
    if a.name.lower() == "h264":
        pa, pb = a.params, b.params  # same packetization mode and profile (profile_idc + constraint flags)
        return (pa.get("packetization-mode", "0") == pb.get("packetization-mode", "0")
                and pa.get("profile-level-id", "42001f").lower()[:4] == pb.get("profile-level-id", "42001f").lower()[:4])
    return True


def _primary_choice(kind: str, offered: Sequence[Codec], want: Codec | None) -> Codec | None:
    if want is not None:
        return next((c for c in offered if _same_codec(c, want)), None)
    if kind == "audio":
        return next((c for c in offered if _codec_key(c) == ("opus", 48000, 2)), None)
    if kind == "video":
        vp8 = next((c for c in offered if _codec_key(c)[:2] == ("vp8", 90000)), None)
        if vp8 is not None:
            return vp8
        for profile in (*_H264_PROFILES, None):
            h264 = next((c for c in offered if _codec_key(c)[:2] == ("h264", 90000) and _h264_ok(c, profile)), None)
            if h264 is not None:
                return h264
    return None


def choose_codecs(kind: str, offered: Sequence[Codec], want: Codec | None = None, *,
                  server_sends: bool = False) -> tuple[Codec, ...]:
    """The codecs to accept from an offered list: one primary codec (the policy's choice, or the one matching
    ``want``), with rtcp-fb filtered and Opus FEC on, then for video its RTX codec (``apt`` = the primary's payload
    type) if offered. Empty when nothing fits. ``server_sends``: the section is one the server sends on (a client
    re-offering it), whose estimate feedback (REMB, transport-cc) is kept."""
    primary = _primary_choice(kind, offered, want)
    if primary is None:
        return ()
    fmtp = primary.fmtp
    if primary.name.lower() == "opus":
        params = primary.params
        params["useinbandfec"] = "1"
        fmtp = ";".join(f"{k}={v}" if v else k for k, v in params.items())
    feedback = tuple(f for f in primary.feedback if f in _KEPT_FEEDBACK) if kind == "video" else ()
    if server_sends:
        feedback += tuple(f for f in primary.feedback if f in _ESTIMATE_FEEDBACK
                          and (kind == "video" or f in _AUDIO_FEEDBACK))
    else:
        feedback += tuple(f for f in primary.feedback if f in _PUBLISHER_FEEDBACK)
    chosen = replace(primary, fmtp=fmtp, feedback=feedback)
    rtx = _rtx_for(offered, primary.payload_type) if kind == "video" else None
    return (chosen,) if rtx is None else (chosen, replace(rtx, feedback=()))


def _rtx_for(offered: Sequence[Codec], payload_type: int) -> Codec | None:
    """The offered RTX codec (90 kHz) retransmitting ``payload_type`` (``a=fmtp:<rtx> apt=<payload_type>``)."""
    return next((c for c in offered if _codec_key(c)[:2] == ("rtx", 90000)
                 and c.params.get("apt") == str(payload_type)), None)


def offer_codecs(
    bundle: Sequence[tuple[Codec, ...]], t: OutgoingTrack, client: dict[int, Codec]
) -> tuple[Codec, ...]:
    """The codecs of a server offer's new section for ``t`` (``bundle``: the codecs of the live sections).

    The publisher's codec under the payload type this client uses for it (negotiated, else as the client
    numbered it in any offer), or a payload type free in both the bundle and the client's own numbering."""
    in_use: dict[int, tuple[str, int, int]] = {}
    mine: Codec | None = None
    rtx_pt: int | None = None
    for codecs in bundle:
        for c in codecs:
            in_use.setdefault(c.payload_type, _codec_key(c))
        if mine is None and codecs and _same_codec(codecs[0], t.codec):
            mine = codecs[0]
            rtx_pt = next((c.payload_type for c in codecs[1:] if c.name.lower() == "rtx"), None)
    if mine is None:
        offered = next((c for c in client.values() if _same_codec(c, t.codec)), None)
        if offered is not None and in_use.get(offered.payload_type, _codec_key(offered)) == _codec_key(offered):
            mine = replace(offered, feedback=tuple(f for f in offered.feedback if f in _KEPT_FEEDBACK)
                           if t.kind == "video" else ())
    avoid = dict(in_use)  # the bundle's PTs, then the client's own numbering where possible
    for pt, c in client.items():
        avoid.setdefault(pt, _codec_key(c))

    def free(preferred: int) -> int:
        if preferred not in avoid:
            return preferred
        dynamic: list[int] = [*range(96, 128), *range(35, 64)]
        for taken in (avoid, in_use):
            pt = next((p for p in dynamic if p not in taken), None)
            if pt is not None:
                return pt
        raise LocalProtocolError("no free payload type left in this bundle")

    wanted = _VIDEO_FEEDBACK if t.kind == "video" else _AUDIO_FEEDBACK
    if mine is not None:
        feedback = (*mine.feedback, *(f for f in wanted if f not in mine.feedback))
        primary = replace(t.codec, payload_type=mine.payload_type, feedback=feedback)
    else:
        pt = free(t.codec.payload_type) if avoid.get(t.codec.payload_type) != _codec_key(t.codec) \
            else t.codec.payload_type
        fb = wanted
        primary = replace(t.codec, payload_type=pt, feedback=fb)
    in_use[primary.payload_type] = avoid[primary.payload_type] = _codec_key(primary)
    if t.rtx_ssrc is None or t.kind != "video":
        return (primary,)
    if rtx_pt is None or in_use.get(rtx_pt, ("rtx", 90000, 1)) != ("rtx", 90000, 1):
        rtx_pt = free(primary.payload_type + 1)
    return (primary, Codec(payload_type=rtx_pt, name="rtx", clock_rate=90000, fmtp=f"apt={primary.payload_type}"))
