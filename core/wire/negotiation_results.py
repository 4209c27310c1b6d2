"""What ``Negotiator`` takes and gives back: the transports, the tracks, and one result type per outcome.

Results are frozen values the media plane acts on (``OfferAnswered``: send the answer, publish these tracks, start
the transport; ``OfferIgnored``: glare, do nothing; ``OfferRejected``/``AnswerRejected``: tell the client
``reason``). A remote party's mistake is a result with a machine-readable ``SdpRejectReason``, never an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .sdp import Codec

__all__ = [
    "NegotiationState", "SdpRejectReason", "LocalTransport", "RemoteTransport", "PublishedTrack", "OutgoingTrack",
    "SendingTrack", "OfferAnswered", "OfferIgnored", "OfferRejected", "OfferMade", "AnswerApplied",
    "AnswerRejected",
]


class NegotiationState(enum.StrEnum):
    NEW = "new"
    STABLE = "stable"
    HAVE_LOCAL_OFFER = "have-local-offer"


class SdpRejectReason(enum.StrEnum):
    """Machine-readable reasons for refusing a client's SDP."""

    MALFORMED = "malformed_sdp"
    NO_MEDIA = "no_usable_media"
    NO_ICE_CREDENTIALS = "no_ice_credentials"
    NO_FINGERPRINT = "no_fingerprint"
    NO_SETUP = "bad_setup"
    SECTIONS_MISMATCH = "sections_mismatch"
    NO_PENDING_OFFER = "no_pending_offer"
    TOO_MANY_SECTIONS = "too_many_sections"
    TOO_MANY_TRACKS = "too_many_tracks"
    BAD_RECEIVE_SLOTS = "bad_receive_slots"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTransport:
    """The server's side of the transport: ICE-lite credentials, DTLS fingerprint ("sha-256 AB:..."), host:port.

    ``extra_hosts``: more addresses of the same port, one host candidate each after ``host`` (which also goes in
    ``c=``), e.g. every interface of a server bound to the wildcard address. ``tcp_port``: when not 0, each address
    also gets an ICE-TCP passive candidate on that port (RFC 6544), ranked below the UDP ones."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    host: str
    port: int
    extra_hosts: tuple[str, ...] = ()
    tcp_port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTransport:
    """The client's ICE credentials and fingerprint; ``dtls_role`` is the *server's* role: "server" or "client"."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    dtls_role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedTrack:
    """A track the client sends on section ``mid``: register it with the core (``PublishTrack``) and map SSRCs.

    ``extensions`` are ``(uri, id)`` pairs as negotiated; ``payload_type``/``rtx_payload_type`` the accepted codec.
    """

    mid: str
    track_id: str
    stream_id: str
    kind: str  # "audio" | "video"
    ssrcs: tuple[int, ...]
    rtx_ssrc: int | None
    payload_type: int
    rtx_payload_type: int | None
    codec: Codec
    extensions: tuple[tuple[str, int], ...]
    cname: str | None = None
    rids: tuple[str, ...] = ()  # simulcast streams, in the client's a=simulcast order (empty: one encoding)

    def extension_id(self, uri: str) -> int | None:
        return dict(self.extensions).get(uri)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingTrack:
    """A track the server should send to this client: the publisher's track and codec, the server-chosen SSRCs."""

    track_id: str
    stream_id: str
    kind: str  # "audio" | "video"
    ssrc: int
    codec: Codec  # the publisher's negotiated codec (name, clock rate, channels, fmtp)
    rtx_ssrc: int | None = None
    cname: str = "callsd"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendingTrack:
    """How to send ``track_id`` to this client, as negotiated: rewrite to this PT, SSRC and extension ids."""

    mid: str
    track_id: str
    ssrc: int
    rtx_ssrc: int | None
    payload_type: int
    rtx_payload_type: int | None
    extensions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAnswered:
    """The client's offer was accepted: send ``answer``; publish/unpublish the listed tracks; start the transport
    with ``remote``. ``sending`` lists every track the server now sends to this client; ``refused`` the outgoing
    tracks whose section the client rejected (port 0) in this offer: offering them again would loop."""

    answer: str
    remote: RemoteTransport
    published: tuple[PublishedTrack, ...] = ()
    unpublished: tuple[str, ...] = ()
    sending: tuple[SendingTrack, ...] = ()
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferIgnored:
    """The client's offer crossed the server's pending offer (glare) and was dropped: nothing changed. The client
    (the polite side) rolls back and answers the pending offer. ``reason`` is "glare"."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected:
    reason: SdpRejectReason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferMade:
    """``sections`` names, for each section the offer sends on, ``(mid, track_id)``: what ties a received track to
    its publisher for the client (the adapter adds who publishes each track)."""

    offer: str
    sections: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerApplied:
    """The client accepted the server's offer; ``refused`` lists outgoing tracks whose section it rejected."""

    sending: tuple[SendingTrack, ...] = ()
    published: tuple[PublishedTrack, ...] = ()
    unpublished: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerRejected:
    reason: SdpRejectReason
    detail: str
