"""IPv6: with ``rtc.enable_ipv6`` one dual-stack socket serves an IPv6-only client and an IPv4 client behind NAT
in the same call, and both IPv4 and IPv6 addresses are advertised."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from net.harness import RTC_PORT, Net, collect, start_aiortc, summary


def test_an_ipv6_only_client_and_an_ipv4_client_hear_each_other(net: Net, callsd: Any) -> None:
    server = callsd(net.server, http_listen="::", ice_address_udp="0.0.0.0", enable_ipv6=True)
    log = server.wait_log("media: advertising")
    assert (f"media: advertising {net.server.address}:{RTC_PORT}, [2001:db8::10]:{RTC_PORT} (every interface "
            "address: rtc.ice_address_udp is :: (dual-stack, rtc.enable_ipv6)") in log
    with tempfile.TemporaryDirectory() as done:
        procs = [start_aiortc(net.client6, "2001:db8::10", user="v6", done=(Path(done), 2)),
                 start_aiortc(net.client1, net.server.address, user="v4", done=(Path(done), 2))]  # by its IPv4
        v6, v4 = (collect(p) for p in procs)
    assert v6["loud_frames"] >= 50 and v4["loud_frames"] >= 50, summary([v6, v4]) + "\n" + server.log()
    log = server.log()
    assert f"session {v6['session_id']} connected from [2001:db8::30]:" in log
    assert f"session {v4['session_id']} connected from 198.51.100.2:" in log  # IPv4-mapped, shown as IPv4
