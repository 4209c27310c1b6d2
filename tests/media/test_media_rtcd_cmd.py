"""``callsd rtcd`` as a process: it serves one server link (Unix socket or loopback TCP), reports its RTC port,
and exits when the server closes the link; a non-loopback TCP listener is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import trio
from callsd.adapters.media.events import SendSignal
from callsd.adapters.media.remote import RemotePlane
from net_support import free_port

# ICE-TCP off: the worker's default (8443) is a fixed port that any callsd running on this machine may hold.
WORKER_ENV = dict(os.environ, CALLSD_RTC_ICE_PORT_TCP="0")

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
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL, env=WORKER_ENV)
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
                             "--rtc-port", "0"], capture_output=True, text=True, timeout=30, check=False,
                            env=WORKER_ENV)
    assert result.returncode == 2 and "loopback" in result.stderr


async def _answer_from_worker(tmp_path: Any, simulcast: bool) -> str:
    """The answer a ``callsd rtcd`` worker gives a simulcast offer in a session the server opened with
    ``simulcast``: the worker's own environment says nothing about it."""
    from video.test_video_simulcast_sdp import simulcast_offer

    spec = f"unix:{tmp_path / f'w-{simulcast}.sock'}"
    cmd = [sys.executable, "-m", "callsd.app.cli", "rtcd", "--listen", spec, "--rtc-address", "127.0.0.1",
           "--rtc-port", "0", "--log-level", "warning"]
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL, env=WORKER_ENV)
    try:
        got: list[Any] = []
        async with trio.open_nursery() as nursery:
            stream = await _connect(spec, proc)
            remote = RemotePlane(stream, got.append)
            await nursery.start(remote.serve)
            remote.open_session("s", "c", simulcast)
            remote.handle_signal("s", {"type": "offer", "sdp": simulcast_offer()})
            with trio.fail_after(20):
                while not [e for e in got if isinstance(e, SendSignal)]:
                    await trio.sleep(0.05)
            await stream.aclose()
        with trio.fail_after(10):
            await proc.wait()
        signal = next(e for e in got if isinstance(e, SendSignal))
        return str(signal.msg["sdp"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_media_worker_honours_calls_enable_simulcast_per_session(tmp_path: Any) -> None:
    """A media worker or a remote rtcd host (the same RPC) accepts simulcast exactly when the server that opened
    the session would: ``calls.enable_simulcast`` travels with each session's ``open``, so servers with different
    settings can share one rtcd host."""
    on = await _answer_from_worker(tmp_path, True)
    assert "a=simulcast:recv q;h;f" in on and "a=rid:q recv" in on
    off = await _answer_from_worker(tmp_path, False)
    assert "a=simulcast" not in off and "a=rid" not in off
