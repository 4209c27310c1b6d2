"""``callsd rtcd`` as a process: it serves one server link (Unix socket or loopback TCP), reports its RTC port,
and exits when the server closes the link; a non-loopback TCP listener is refused."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import trio
from callsd.adapters.media.events import SendSignal
from callsd.adapters.media.remote import RemotePlane
from net_support import free_port


async def _connect(spec: str, proc: trio.Process) -> trio.SocketStream:
    kind, _, rest = spec.partition(":")
    with trio.fail_after(20):
        while True:
            assert proc.returncode is None, "rtcd exited early"
            try:
                if kind == "unix":
                    return await trio.open_unix_socket(rest)
                host, _, port = rest.rpartition(":")
                return await trio.open_tcp_stream(host, int(port))
            except OSError:
                await trio.sleep(0.05)


async def _round_trip(spec: str) -> None:
    cmd = [sys.executable, "-m", "callsd.app.cli", "rtcd", "--listen", spec, "--rtc-address", "127.0.0.1",
           "--rtc-port", "0", "--log-level", "warning"]
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL)
    try:
        got: list[Any] = []
        async with trio.open_nursery() as nursery:
            stream = await _connect(spec, proc)
            remote = RemotePlane(stream, got.append)
            host, port = await nursery.start(remote.serve)
            assert host == "127.0.0.1" and port > 0
            remote.open_session("s", "c")
            remote.handle_signal("s", {"type": "offer", "sdp": "v=0\r\n"})
            await remote.refresh_counters(timeout=10)
            assert remote.counters["sdp_rejected"] == 1
            await stream.aclose()
        with trio.fail_after(10):
            assert await proc.wait() == 0  # the worker ends with its link
        assert not [e for e in got if isinstance(e, SendSignal)]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_rtcd_over_a_unix_socket(tmp_path: Any) -> None:
    await _round_trip(f"unix:{tmp_path / 'w.sock'}")


async def test_rtcd_over_loopback_tcp() -> None:
    await _round_trip(f"tcp:127.0.0.1:{free_port()}")


def test_rtcd_refuses_a_non_loopback_listener() -> None:
    result = subprocess.run([sys.executable, "-m", "callsd.app.cli", "rtcd", "--listen", "tcp:0.0.0.0:7999",
                             "--rtc-port", "0"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "loopback" in result.stderr
