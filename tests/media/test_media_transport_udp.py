"""The RTC socket: kernel buffer sizes (and the warning when the kernel caps them) and the first-byte demux."""

from __future__ import annotations

import logging
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


def test_a_capped_buffer_warns_with_the_sysctl_to_run(caplog: pytest.LogCaptureFixture) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    asked = 2 * rmem_max
    caplog.set_level(logging.WARNING, "callsd.media.udp")
    sock, sizes = open_socket("127.0.0.1", 0, rcvbuf=asked, sndbuf=64 * 1024)
    sock.close()
    if sizes.rcvbuf >= 2 * asked:
        pytest.skip("this process may force buffer sizes (CAP_NET_ADMIN): the kernel cap does not apply")
    assert len(caplog.records) == 1
    assert f"sysctl -w net.core.rmem_max={asked}" in caplog.records[0].getMessage()
