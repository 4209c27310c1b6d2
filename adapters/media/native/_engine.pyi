"""Types of the C extension (_engine.c)."""

from typing import Any

MAX_PACKET: int
BATCH: int
ROUTE_CACHE: int
RATE_WINDOW_S: float
DECIDE_INTERVAL_S: float
TWCC_HISTORY: int
TWCC_COVER_MS: int

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
                 simulcast: Any = None, sequencer: type | None = None) -> None: ...
    def step(self, fd: int, budget: int) -> tuple[int, int, Any, Any]: ...

def stamp_transport_seq(packet: bytes, ext_id: int, seq: int) -> bytes | None: ...
