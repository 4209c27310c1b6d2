"""`callsd serve` as a subprocess: `make run`'s command, SIGTERM drain, SIGINT, and an event log that loses nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.adapters.store import open_store

pytestmark = pytest.mark.slow


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, data: Path) -> None:
        self.proc, self.port, self.data = proc, port, data


async def _start(tmp_path: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Served:
    env = dict(os.environ)
    env.update({"CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0"})
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "callsd.app.cli", "serve", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    with trio.fail_after(30):
        line = await trio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr: {proc.stderr.read()}")  # type: ignore[union-attr]
    return Served(proc, int(match.group(1)), tmp_path / "data")


async def _wait_exit(proc: subprocess.Popen[str], timeout: float) -> int:
    with trio.fail_after(timeout):
        while proc.poll() is None:
            await trio.sleep(0.05)
    return proc.returncode


def _log_types(data: Path) -> list[dict[str, Any]]:
    store = open_store("sqlite:///" + str((data / "events.sqlite").resolve()).lstrip("/"), readonly=True)
    try:
        return [r.event for r in store.iter_records(1)]  # type: ignore[attr-defined]
    finally:
        store.close()


def _types(data: Path) -> list[str]:
    return [type(e).__name__ for e in _log_types(data)]


async def test_make_run_command_serves_page_and_healthz(tmp_path, http_get):
    served = await _start(tmp_path)  # `make run` is `callsd serve` with the embedded defaults
    try:
        status, headers, body = await http_get(served.port, "/")
        assert status == 200 and b"<html" in body.lower()
        status, _, body = await http_get(served.port, "/healthz")
        health = json.loads(body)
        assert (status, health["status"]) == (200, "ok")
        # what the RTC port advertises, and why (docs/networking.md): the loopback default
        assert health["rtc"]["advertised"]["addresses"] == ["127.0.0.1"]
        assert health["rtc"]["advertised"]["source"] == "bind"
        assert (served.data / "events.sqlite").is_file()
    finally:
        served.proc.send_signal(signal.SIGINT)
        assert await _wait_exit(served.proc, 15) == 0


async def test_sigterm_drains_then_exits_when_calls_end(tmp_path, connect, http_get):
    served = await _start(tmp_path, {"CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "20"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as a, connect(info) as b, connect(info) as late:
            await a.request("join", {"channel_id": "room"}, expect="join_ack")
            await b.request("join", {"channel_id": "room"}, expect="join_ack")
            await a.send("unmute")
            await b.expect("user_unmuted")
            served.proc.send_signal(signal.SIGTERM)
            assert (await a.expect("server_shutdown"))["drain_timeout_seconds"] == 20
            await late.expect("server_shutdown")
            assert await late.error("join", {"channel_id": "room"}) == "shutting_down"
            status, _, _ = await http_get(served.port, "/healthz")
            assert status == 503
            assert served.proc.poll() is None  # still draining: the call is going on
            await a.send("leave")
            await b.send("leave")
            assert await _wait_exit(served.proc, 10) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    types = _types(served.data)
    assert types.count("JoinCall") == 2 and types.count("LeaveCall") == 2 and "Unmute" in types
    result = subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", str(served.data / "events.sqlite"),
                             "--verify"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_sigterm_drain_times_out_and_sigint_is_prompt(tmp_path, connect):
    served = await _start(tmp_path, {"CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "1"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as a:
            await a.request("join", {"channel_id": "room"}, expect="join_ack")
            served.proc.send_signal(signal.SIGTERM)
            await a.expect("server_shutdown")
            assert await _wait_exit(served.proc, 10) == 0  # the call did not end: exits after the drain timeout
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    assert _types(served.data)[-1] == "Disconnect"  # the dropped session is logged

    # restart on the same log: the call is recovered with its session disconnected; SIGINT stops promptly
    served = await _start(tmp_path, {"CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "60"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as b, connect(info) as a2:
            await b.request("join", {"channel_id": "room"}, expect="join_ack")
            state = await b.request("get_state", expect="call_state")
            assert [p["connected"] for p in state["participants"]] == [False, True]
            ack = await a2.request("reconnect", a.reconnect_data(),
                                   expect="join_ack")  # the client of the first process comes back
            assert ack["reconnected"] is True and ack["state"]["host_id"] == a.session_id
            assert (await b.expect("user_reconnected"))["session_id"] == a.session_id
            served.proc.send_signal(signal.SIGINT)
            assert await _wait_exit(served.proc, 10) == 0  # no 60 s drain
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    assert _types(served.data)[-4:] == ["JoinCall", "Reconnect", "Disconnect", "Disconnect"]


def test_serve_refuses_bad_or_unsafe_configuration(tmp_path):
    def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "CALLSD_HTTP_PORT": "0", **env})

    unsafe = serve({"CALLSD_HTTP_LISTEN": "0.0.0.0"})  # only checked: start-up refuses before binding
    assert unsafe.returncode == 2
    assert "only allowed when http.listen is a loopback address" in unsafe.stderr and "Traceback" not in unsafe.stderr
    assert not (tmp_path / "data").exists()
    bad = serve({"CALLSD_RTC_ICE_PORT_UDP": "5", "CALLSD_CALLS_MAX_PARTICIPANTS": "lots"})
    assert bad.returncode == 2
    assert "rtc.ice_port_udp (from CALLSD_RTC_ICE_PORT_UDP): must be between 80 and 49151" in bad.stderr
    assert "calls.max_participants (from CALLSD_CALLS_MAX_PARTICIPANTS): must be an integer, got 'lots'" in bad.stderr


@pytest.mark.parametrize("workers", ["0", "1"], ids=["in-process-media", "media-worker"])
def test_serve_refuses_to_start_when_its_ice_tcp_port_is_taken(tmp_path, workers):
    """rtc.ice_port_tcp defaults to 8443: a server that cannot have it says so in one line and exits, rather than
    running on UDP alone while its candidates promise TCP too."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60,
                              env={**os.environ, "CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0",
                                   "CALLSD_RTC_ICE_PORT_TCP": str(port), "CALLSD_RTC_MEDIA_WORKERS": workers})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    reason = (f"cannot start: [Errno 98] ICE-TCP port tcp 127.0.0.1:{port} (rtc.ice_port_tcp): Address already in use;"
              " free it, choose another port, or set rtc.ice_port_tcp = 0 to turn ICE-TCP off")
    lines = proc.stderr.strip().splitlines()
    if workers == "0":
        assert lines[-1].startswith(f"callsd serve: {reason} (http 127.0.0.1:0, rtc udp 127.0.0.1:0, rtc tcp {port}"), lines
    else:  # the worker says why, the server that it could not start it
        assert lines[-2].startswith(f"callsd rtcd: {reason} (rtc udp 127.0.0.1:0"), lines
        assert lines[-1] == ("callsd serve: cannot start: media worker 0 exited with code 2 before accepting "
                             "(its reason is on the line above)"), lines


async def test_second_sigterm_stops_a_drain_at_once(tmp_path, connect):
    served = await _start(tmp_path, {"CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "120"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as a:
            await a.request("join", {"channel_id": "room"}, expect="join_ack")
            served.proc.send_signal(signal.SIGTERM)
            await a.expect("server_shutdown")
            served.proc.send_signal(signal.SIGTERM)
            assert await _wait_exit(served.proc, 10) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    assert _types(served.data)[-1] == "Disconnect"


async def test_after_a_crash_each_session_keeps_the_reconnect_window_in_force_when_it_dropped(tmp_path, connect):
    """docs/protocol.md: a session that dropped before the restart keeps its deadline (here the old 60 s window);
    a session still connected when the process died drops at the restart, under the new window (here 1 s). The
    reconnect secret of the first process is still good (its key is kept in the data directory).

    The new window runs from the restart whatever the test does, so carol, who joins after it, may come in before
    alice's 1 s is over (she sees alice disconnected, then ``user_left``) or after (alice is already gone: on a
    loaded machine the join alone can take a second); both are the product's behaviour, and the log says in both
    that alice's reconnect timer removed her."""
    served = await _start(tmp_path, {"CALLSD_CALLS_RECONNECT_WINDOW_SECONDS": "60"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as alice:
            await alice.join(name="alice")
            async with connect(info) as bob:
                await bob.join(name="bob")
                bob_again = bob.reconnect_data()
            await alice.expect("user_disconnected")  # bob dropped under the 60 s window (and that is durable)
            served.proc.kill()  # alice is still connected when the process dies
            await _wait_exit(served.proc, 10)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    served = await _start(tmp_path, {"CALLSD_CALLS_RECONNECT_WINDOW_SECONDS": "1"})
    info = type("Info", (), {"http_port": served.port})()
    try:
        async with connect(info) as carol:
            joined = await carol.join(name="carol")
            present = {p["session_id"]: p["connected"] for p in joined["state"]["participants"]}
            assert present[bob_again["session_id"]] is False  # bob's 60 s window still runs
            if alice.session_id in present:  # carol came in within alice's new 1 s window: she sees it end
                assert present[alice.session_id] is False
                left = await carol.expect("user_left", timeout=10)
                assert (left["session_id"], left["reason"]) == (alice.session_id, "timed_out")
            async with connect(info) as bob2:  # after alice's 1 s: bob's window is still the old one, his secret good
                ack = await bob2.request("reconnect", bob_again, expect="join_ack")
                assert ack["reconnected"] is True and ack["session_id"] == bob_again["session_id"]
                assert alice.session_id not in {p["session_id"] for p in ack["state"]["participants"]}
    finally:
        served.proc.send_signal(signal.SIGINT)
        await _wait_exit(served.proc, 15)
    fired = [e.key for e in _log_types(served.data) if type(e).__name__ == "TimerFired"]
    assert f"reconnect:{alice.session_id}" in fired  # alice left by her reconnect timer, whenever carol came
