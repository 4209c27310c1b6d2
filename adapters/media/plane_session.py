"""The media plane's per-session record and its settings: what one client's negotiation, published tracks and
routes to it are (``Session``), how the plane is configured when no app config is given (``PlaneConfig``), and
the negotiation counters. Kept apart from plane.py so the plane is its behaviour only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from callsd.core.wire.negotiation import LocalTransport, NegotiationState, Negotiator, OutgoingTrack
from callsd.core.wire.receive_slots import ReceiveSlots
from callsd.core.wire.sdp import Codec

from .advertiser import AdvertiseSettings
from .forwarder import InTrack, OutRoute
from .random_pool import POOL
from .route_record import SendStateOwner
from .transport import Peer

if TYPE_CHECKING:
    from .simulcast_fwd import SimulcastStream

__all__ = ["SdpRejected", "PlaneSettings", "PlaneConfig", "Session", "PlaneCounters"]


class PlaneSettings(AdvertiseSettings, Protocol):
    """The ``[rtc]`` settings a media plane runs on: the app's ``RtcConfig`` or a ``PlaneConfig``."""

    @property
    def ice_port_udp(self) -> int: ...
    @property
    def ice_port_tcp(self) -> int: ...
    @property
    def udp_rcvbuf(self) -> int: ...
    @property
    def udp_sndbuf(self) -> int: ...
    @property
    def ice_max_addresses_per_session(self) -> int: ...
    @property
    def ice_check_timeout(self) -> float: ...
    @property
    def fast_path(self) -> str: ...
    @property
    def coalesce_ms(self) -> float: ...


class SdpRejected(Exception):
    """The client's SDP cannot be used; ``reason`` says why (the server answers ``sdp_rejected``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaneConfig:
    ice_address_udp: str = "127.0.0.1"
    ice_port_udp: int = 8443
    ice_host_override: str = ""
    ice_host_port_override: int = 0
    udp_rcvbuf: int = 4 * 1024 * 1024
    udp_sndbuf: int = 4 * 1024 * 1024
    ice_max_addresses_per_session: int = 16
    ice_servers: tuple[Any, ...] = ()  # only their stun: URLs matter here (public-address discovery)
    advertise_refresh_seconds: int = 0
    ice_check_timeout: float = 10.0
    fast_path: str = "auto"  # "auto" | "native" | "python": see paths.py
    ice_port_tcp: int = 0  # ICE-TCP passive port (0 = off); ice_tcp.py
    enable_ipv6: bool = False  # with a wildcard bind: one dual-stack socket on ::, IPv6 candidates too
    coalesce_ms: float = 0.0  # TransportConfig.coalesce, in ms: pause after a non-empty read (transport.py)


class Session(SendStateOwner):  # writing `peer` re-reads the native step's cached send state (route_record.py)
    __slots__ = ("session_id", "channel_id", "ufrag", "pwd", "peer", "remote", "neg", "published", "codecs",
                 "inbound", "routes_in", "out_by_ssrc", "screen_stream", "rtcp_ssrc", "closed", "refused",
                 "mid_ext_id", "inbound_rtx", "audio_slots", "slot_offer", "twcc_ext_id", "simulcast_in")

    def __init__(self, session_id: str, channel_id: str, transport: LocalTransport, simulcast: bool = False) -> None:
        self.session_id = session_id
        self.channel_id = channel_id
        self.ufrag = transport.ice_ufrag
        self.pwd = transport.ice_pwd
        self.peer: Peer | None = None
        self.remote: tuple[str, str, str] | None = None  # the client's ufrag, pwd, fingerprint the peer uses
        self.neg = Negotiator(transport=transport, session_id=POOL.randbits(62), simulcast=simulcast)
        self.published: dict[str, InTrack] = {}  # mid -> the track the client publishes on that section
        self.codecs: dict[str, Codec] = {}  # mid -> its negotiated codec (what receivers are offered)
        self.inbound: dict[int, InTrack] = {}  # publisher SSRC -> track
        self.routes_in: dict[str, OutRoute] = {}  # track_id -> route to this session
        self.out_by_ssrc: dict[int, OutRoute] = {}
        self.screen_stream: str | None = None
        self.rtcp_ssrc = POOL.randbits(32) or 1
        self.closed = False
        self.refused: set[str] = set()  # track ids whose section the client rejected: not offered again
        self.mid_ext_id = 0  # the client's id for the MID header extension (0: none)
        self.inbound_rtx: dict[int, InTrack] = {}  # publisher RTX SSRC -> track (retransmit.py)
        self.audio_slots: ReceiveSlots | None = None  # pre-negotiated audio sections, if asked for (plane_slots.py)
        self.slot_offer: tuple[ReceiveSlots | None, int, tuple[OutgoingTrack, ...]] = (None, 0, ())  # slot_tracks' memo
        self.twcc_ext_id = 0  # the transport-wide-cc id it accepted on the sections it receives (0: none)
        # publisher simulcast layer and layer-RTX SSRC -> its SimulcastStream, once learnt (simulcast_fwd.py)
        self.simulcast_in: dict[int, SimulcastStream] = {}

    @property
    def offer_pending(self) -> bool:
        return self.neg.state is NegotiationState.HAVE_LOCAL_OFFER


class PlaneCounters:
    __slots__ = ("offers_in", "answers_in", "offers_out", "answers_out", "glare_ignored", "sdp_rejected",
                 "routes", "tracks", "unknown_route")

    offers_in: int
    answers_in: int
    offers_out: int
    answers_out: int
    glare_ignored: int
    sdp_rejected: int
    routes: int
    tracks: int
    unknown_route: int

    def __init__(self) -> None:
        for n in self.__slots__:
            setattr(self, n, 0)
