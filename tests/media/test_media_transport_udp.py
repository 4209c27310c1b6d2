"""The RTC socket: kernel buffer sizes (and the warning when the kernel caps them) and the first-byte demux."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from callsd.adapters.media.udp import CLASSIFY, KIND_DTLS, KIND_OTHER, KIND_RTP, KIND_STUN, open_socket


def test_demux_follows_rfc_7983() -> None:
    assert {b for b in range(256) if CLASSIFY[b] == KIND_STUN} == set(range(0, 4))
    assert {b for b in range(256) if CLASSIFY[b] == KIND_DTLS} == set(range(20, 64))
    assert {b for b in range(256) if CLASSIFY[b] == KIND_RTP} == set(range(128, 192))
    assert CLASSIFY[4] == CLASSIFY[64] == CLASSIFY[127] == CLASSIFY[192] == CLASSIFY[255] == KIND_OTHER


def test_small_buffers_are_granted_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "callsd.media.udp")
    sock, sizes = open_socket("127.0.0.1", 0, rcvbuf=64 * 1024, sndbuf=64 * 1024)
    sock.close()
    assert sizes.rcvbuf >= 2 * 64 * 1024 and sizes.sndbuf >= 2 * 64 * 1024
    assert caplog.records == []


# The check as a service account meets it: without CAP_NET_ADMIN, whose SO_RCVBUFFORCE passes the kernel's cap.
CAPPED_CHILD = """
import json, logging, sys
from pathlib import Path
from callsd.adapters.media.udp import open_socket
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("callsd.media.udp").addHandler(handler)
asked = 2 * int(Path("/proc/sys/net/core/rmem_max").read_text())
sock, sizes = open_socket("127.0.0.1", 0, rcvbuf=asked, sndbuf=64 * 1024)
sock.close()
print(json.dumps({"asked": asked, "granted": sizes.rcvbuf, "warnings": [r.getMessage() for r in records]}))
"""
CAP_NET_ADMIN = 12


def _has_net_admin() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def test_a_capped_buffer_warns_with_the_sysctl_to_run() -> None:
    argv = [sys.executable, "-c", CAPPED_CHILD]
    if _has_net_admin():  # root (CI): the child runs with CAP_NET_ADMIN out of its bounding set, so never a skip
        argv = ["setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", *argv]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout)
    assert seen["granted"] < 2 * seen["asked"], seen  # the cap applied
    assert len(seen["warnings"]) == 1, seen
    assert f"sysctl -w net.core.rmem_max={seen['asked']}" in seen["warnings"][0]
