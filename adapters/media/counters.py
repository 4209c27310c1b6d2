"""Plain-integer counters of the UDP media endpoint, read by the metrics exporter at scrape time.

The hot path only does ``counters.rtp_in += 1``: no labels, no locks, no allocation. `snapshot()` turns them into a
dict for exporters and tests; `drops()` gives the drop counters alone, keyed by reason.
"""

from __future__ import annotations

__all__ = ["TransportCounters", "DROP_REASONS"]

DROP_REASONS = (
    "malformed",  # not STUN/DTLS/RTP/RTCP, or truncated, or unparsable
    "unknown_address",  # DTLS or SRTP from an address no peer has authenticated with STUN
    "stun_unknown_user",  # STUN USERNAME names no peer (or the wrong remote ufrag)
    "stun_integrity",  # STUN MESSAGE-INTEGRITY wrong, or FINGERPRINT missing
    "stun_rate_limited",  # STUN from a source IP that failed too often lately (not checked)
    "stun_address_cap",  # STUN from one address too many for the ICE session (not checked)
    "stun_other",  # valid STUN that is not a binding request (responses, indications, other methods)
    "not_ready",  # SRTP before the DTLS handshake finished, or a send to an unconnected peer
    "srtp_auth",  # SRTP/SRTCP authentication failed
    "replay",  # SRTP/SRTCP replayed or too old
    "srtp_other",  # other libsrtp refusals (oversize, unknown status)
    "dtls",  # DTLS records that broke or ended a handshake
    "send_buffer_full",  # sendto would block: the kernel send buffer is full
    "send_error",  # sendto failed otherwise (unreachable, ...)
)


class TransportCounters:
    """Packets and bytes in/out by type, and drops by reason (one attribute ``drop_<reason>`` each)."""

    __slots__ = (
        "datagrams_in",
        "bytes_in",
        "stun_in",
        "dtls_in",
        "rtp_in",
        "rtcp_in",
        "rtp_bytes_in",
        "rtcp_bytes_in",
        "stun_out",
        "dtls_out",
        "rtp_out",
        "rtcp_out",
        "rtp_bytes_out",
        "rtcp_bytes_out",
        "peers_connected",
        "peers_closed",
        "consent_expired",
        "handler_errors",
        "drop_malformed",
        "drop_unknown_address",
        "drop_stun_unknown_user",
        "drop_stun_integrity",
        "drop_stun_other",
        "drop_stun_rate_limited",
        "drop_stun_address_cap",
        "drop_not_ready",
        "drop_srtp_auth",
        "drop_replay",
        "drop_srtp_other",
        "drop_dtls",
        "drop_send_buffer_full",
        "drop_send_error",
    )

    def __init__(self) -> None:
        self.datagrams_in = 0
        self.bytes_in = 0
        self.stun_in = 0
        self.dtls_in = 0
        self.rtp_in = 0
        self.rtcp_in = 0
        self.rtp_bytes_in = 0
        self.rtcp_bytes_in = 0
        self.stun_out = 0
        self.dtls_out = 0
        self.rtp_out = 0
        self.rtcp_out = 0
        self.rtp_bytes_out = 0
        self.rtcp_bytes_out = 0
        self.peers_connected = 0
        self.peers_closed = 0
        self.consent_expired = 0
        self.handler_errors = 0  # exceptions raised while handling a datagram (handler bugs included)
        self.drop_malformed = 0
        self.drop_unknown_address = 0
        self.drop_stun_unknown_user = 0
        self.drop_stun_integrity = 0
        self.drop_stun_other = 0
        self.drop_stun_rate_limited = 0
        self.drop_stun_address_cap = 0
        self.drop_not_ready = 0
        self.drop_srtp_auth = 0
        self.drop_replay = 0
        self.drop_srtp_other = 0
        self.drop_dtls = 0
        self.drop_send_buffer_full = 0
        self.drop_send_error = 0

    def snapshot(self) -> dict[str, int]:
        """Every counter by name (``drop_*`` included)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def drops(self) -> dict[str, int]:
        """Drop counters keyed by reason, e.g. ``{"malformed": 3, "srtp_auth": 0, ...}``."""
        return {r: getattr(self, f"drop_{r}") for r in DROP_REASONS}

    def count_drop(self, reason: str) -> None:
        """Slow-path increment by reason name (raises AttributeError for an unknown reason)."""
        name = f"drop_{reason}"
        setattr(self, name, getattr(self, name) + 1)
