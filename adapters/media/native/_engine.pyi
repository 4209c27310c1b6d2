"""Types of the C extension (_engine.c)."""

from typing import Any

MAX_PACKET: int
BATCH: int
ROUTE_CACHE: int
RATE_WINDOW_S: float
DECIDE_INTERVAL_S: float
TWCC_HISTORY: int
TWCC_FIRST: int
TWCC_COVER_MS: int
GCM_IV_AS_PARAMETER: int  # 1: GCM takes each IV as a parameter (srtp_keys.h), 0: through EVP_CipherInit_ex
GCM_METHOD_TABLE: int  # 1: GCM runs on libcrypto's method table (srtp_keys.h, ADR 0054), 0: on the provider

class ArrivalLog:
    def __len__(self) -> int: ...
    def drain(self) -> list[tuple[int, int, float]]: ...

class RouteRecord:
    """A route's per-packet state as C fields (route_record.h): forwarder.OutRoute's base."""

    packets: int
    octets: int
    ts_offset: int
    ssrc: int
    seq_offset: int
    last_seq: int
    resync: bool

class SendStateOwner:
    """Base of the classes a route's cached send state is read from (send_state.h): writing their ``peer``,
    ``_tx``, ``address`` or ``twcc`` makes the native step read it again. transport.Peer and the plane's Session."""

class TrackRecord:
    """A track's per-packet reception state as C fields (track_record.h): forwarder.InTrack's base."""

    packets: int
    octets: int
    base_seq: int
    max_seq: int
    cycles: int
    last_ts: int
    last_rx: float
    vad_score: int
    level_id: int
    started: bool
    speaking: bool

class SequencerRecord:
    """A transport-wide sequencer's numbers and send history in C (sequencer_record.h): TransportSequencer's base."""

    ext_id: int
    next_seq: int
    stamped: int
    unstampable: int
    sent_bytes: int
    cluster: int
    cluster_last: bool
    _clock: Any
    def __init__(self, ext_id: int, clock: Any) -> None: ...
    @property
    def _mask(self) -> int: ...
    @property
    def _send_ms(self) -> Any: ...
    @property
    def _size(self) -> Any: ...
    @property
    def _seq(self) -> Any: ...
    @property
    def _reported(self) -> bytearray: ...
    @property
    def _cluster(self) -> Any: ...
    def stamp(self, plain: bytes) -> bytes: ...
    def _grow(self) -> None: ...
    def _take(self, base_seq: int, count: int) -> list[tuple[int, float, int, int]]: ...

class SrtpSession:
    def __init__(self, profile: int, key: bytes, outbound: bool, derive: bool = True) -> None: ...
    @property
    def last_error(self) -> int: ...
    def protect(self, packet: bytes) -> bytes | None: ...
    def protect_rtcp(self, packet: bytes) -> bytes | None: ...
    def unprotect(self, packet: bytes) -> bytes | None: ...
    def unprotect_rtcp(self, packet: bytes) -> bytes | None: ...

def kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes: ...

class Engine:
    def __init__(self, by_addr: dict[Any, Any], counters: Any, forwarder: Any, vad: tuple[int, int, int],
                 simulcast: Any = None) -> None: ...
    def step(self, fd: int, budget: int) -> tuple[int, int, Any, Any]: ...

def stamp_transport_seq(packet: bytes, ext_id: int, seq: int) -> bytes | None: ...
def send_state_epoch() -> int: ...
def send_rtcp_batch(fd: int, items: list[tuple[SrtpSession, bytes, Any]]) -> tuple[int, int, int, int, int, int]: ...
