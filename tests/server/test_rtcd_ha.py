"""rtcd HA for real: two ``callsd rtcd`` processes on 127.0.0.2 and 127.0.0.3 behind ONE host name, and
``callsd serve`` re-resolving that name through the system resolver. Serve runs in its own mount namespace whose
/etc/hosts is a file the test rewrites (the mechanism of ``ip netns exec``'s /etc/netns/NAME/hosts, without a
network namespace so every loopback address stays reachable); nothing in the machine's /etc/hosts changes.

Calls are real: aiortc peers, audio decoded. Proven here: new calls spread by load; a host removed from DNS gets no
new call while its call keeps audio; ``kill -9`` of a host mid-call: its peers renegotiate (a new offer on the same
signaling session, as the web client's ICE restart does) and hear each other again through the other host, while
the call on the other host is untouched; SIGTERM drains a host (503, no new calls, exits 0 when its call ends)."""

from __future__ import annotations

import importlib.util
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from aiortc_tone import TonePeer
from rtcd_support import ADDRESSES, NAME, Hosts, RtcdProcess, Serve, common_port, logs_on_failure, self_signed

pytestmark = pytest.mark.slow



def _module(name: str, file: str) -> Any:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


E2E = _module("callsd_tests_e2e_aiortc_helpers", "test_server_e2e_aiortc.py")
WORKERS = _module("callsd_tests_rtcd_worker_helpers", "test_server_rtcd.py")
_until = E2E._until
Peer = partial(TonePeer, recv_video=True)


async def _pump(client: Any, peer: Any) -> None:
    """Answer the server's offers; an offer reaching a peer whose call it has left is ignored (the test's peers
    stay open until the end, a browser page would have dropped them)."""
    from aiortc.exceptions import InvalidStateError

    while True:
        msg = await client.recv(timeout=120)
        if msg["type"] == "signal" and msg["data"]["type"] in ("offer", "answer"):
            try:
                answer = await peer.accept(msg["data"]["type"], msg["data"]["sdp"])
            except InvalidStateError:
                continue
            if answer is not None:
                await client.send("sdp", {"type": "answer", "sdp": answer})


@pytest.fixture
def rtcd_pair(tmp_path: Path) -> Iterator[tuple[list[RtcdProcess], Hosts, Serve]]:
    port = common_port()
    hosts = [RtcdProcess(tmp_path, a) for a in ADDRESSES]
    for h in hosts:
        h.port = port
        h.env["CALLSD_API_PORT"] = str(port)
        h.start()
        h.register()
    names = Hosts(tmp_path / "hosts")
    names.set(*ADDRESSES)
    serve = Serve(tmp_path, names, port)
    try:
        yield hosts, names, serve
    finally:
        serve.stop()
        for h in hosts:
            h.kill()


async def _call(connect: Any, serve: Serve, channel: str, nursery: trio.Nursery,
                stack: list[Any]) -> tuple[list[Any], list[Any]]:
    """Two aiortc peers in ``channel``, unmuted, hearing each other."""
    peers = [Peer(), Peer()]
    stack.extend(peers)
    clients = []
    for peer in peers:
        client = await nursery.start(WORKERS._open_client, connect, SimpleNamespace(http_port=serve.port))
        clients.append(client)
        await client.request("join", {"channel_id": channel}, expect="join_ack")
        await client.send("unmute")
        await client.send("sdp", {"type": "offer", "sdp": await peer.offer()})
        nursery.start_soon(_pump, client, peer)
    await _until(lambda: all(p.frames > 25 for p in peers), timeout=60)
    return peers, clients


async def _hears(peers: list[Any], frames: int = 50, timeout: float = 30) -> None:
    marks = [p.frames for p in peers]
    await _until(lambda: all(p.frames >= m + frames for p, m in zip(peers, marks, strict=True)), timeout=timeout)


async def _systems(hosts: list[RtcdProcess]) -> list[dict[str, Any]]:
    return [await trio.to_thread.run_sync(h.system) for h in hosts]


@pytest.fixture
def loopback_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def _until_placement(serve: Serve, predicate: Any, timeout: float = 20) -> dict[str, dict[str, float]]:
    with trio.fail_after(timeout):
        while not predicate(placement := await serve.placement()):
            await trio.sleep(0.2)
    return placement


async def _renegotiate(peers: list[Any], clients: list[Any]) -> None:
    """What the web client does when its peer connection fails: a new offer on the same signaling session."""
    for peer, client in zip(peers, clients, strict=True):
        await client.send("sdp", {"type": "offer", "sdp": await peer.offer()})


async def test_spread_dns_removal_and_kill_9_recovery(rtcd_pair: Any, connect: Any, loopback_aioice: None) -> None:
    hosts, names, serve = rtcd_pair
    await serve.ready(ADDRESSES)
    stack: list[Any] = []
    with logs_on_failure(serve, hosts):
        try:
            async with trio.open_nursery() as nursery:
                call1, clients1 = await _call(connect, serve, "call1", nursery, stack)
                placement = await serve.placement()
                a = next(h for h, n in placement["calls"].items() if n == 1)  # call1's host
                b = next(h for h in ADDRESSES if h != a)
                call2, _ = await _call(connect, serve, "call2", nursery, stack)
                # spread by load: call2 on the other host (the hosts themselves and serve's placement metrics agree)
                placement = await serve.placement()
                assert placement["calls"] == {a: 1, b: 1} and placement["sessions"] == {a: 2, b: 2}
                assert [s["calls"] for s in await _systems(hosts)] == [1, 1]

                # b (call2's host) leaves DNS: the next call lands on a although a is busier; call2 keeps its audio
                names.set(a)
                await _until_placement(serve, lambda p: p.get("accepting", {}).get(b) == 0)
                call3, clients3 = await _call(connect, serve, "call3", nursery, stack)
                placement = await serve.placement()
                assert placement["calls"] == {a: 2, b: 1} and placement["up"] == {a: 1, b: 1}
                await _hears(call2)

                # b is back in DNS; kill -9 of a (call1, call3): their peers renegotiate and hear each other through b
                names.set(*ADDRESSES)
                await _until_placement(serve, lambda p: p.get("accepting", {}).get(b) == 1)
                heard2 = call2[0].frames
                hosts[ADDRESSES.index(a)].kill()
                await _until_placement(serve, lambda p: p.get("up", {}).get(a) == 0)
                await _renegotiate(call1, clients1)
                await _renegotiate(call3, clients3)
                with trio.fail_after(15):  # the bound: audio back within 15 s
                    await _hears(call1 + call3, frames=25)
                await _hears(call2)
                assert call2[0].frames > heard2 + 50  # call2 on b never stopped
                placement = await serve.placement()
                assert placement["calls"].get(b) == 3
                assert (await _systems([hosts[ADDRESSES.index(b)]]))[0]["calls"] == 3
                nursery.cancel_scope.cancel()
        finally:
            for peer in stack:
                await peer.close()


def _status(host: RtcdProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{host.address}:{host.port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_sigterm_drains_a_host(rtcd_pair: Any, connect: Any, loopback_aioice: None) -> None:
    hosts, _names, serve = rtcd_pair
    await serve.ready(ADDRESSES)
    stack: list[Any] = []
    with logs_on_failure(serve, hosts):
        try:
            async with trio.open_nursery() as nursery:
                call1, clients1 = await _call(connect, serve, "call1", nursery, stack)
                placement = await serve.placement()
                a = next(h for h, n in placement["calls"].items() if n == 1)
                b = next(h for h in ADDRESSES if h != a)
                draining = hosts[ADDRESSES.index(a)]
                draining.terminate()
                with trio.fail_after(10):
                    while await trio.to_thread.run_sync(_status, draining, "/healthz") != 503:
                        await trio.sleep(0.1)
                assert (await _systems([draining]))[0]["draining"] is True
                await _until_placement(serve, lambda p: p.get("draining", {}).get(a) == 1
                                       and p.get("accepting", {}).get(a) == 0)
                # no new call lands on the draining host (without the drain, call3 would: 2 sessions there, 4 on b)
                call2, _ = await _call(connect, serve, "call2", nursery, stack)
                call3, _ = await _call(connect, serve, "call3", nursery, stack)
                placement = await serve.placement()
                assert placement["calls"] == {a: 1, b: 2}
                await _hears(call1)  # the draining host's call goes on
                assert draining.proc is not None and draining.proc.poll() is None
                # the call ends: the host has nothing left and exits 0
                for client in clients1:
                    await client.send("leave")
                with trio.fail_after(20):
                    while draining.proc.poll() is None:
                        await trio.sleep(0.1)
                assert draining.proc.returncode == 0, draining.log()[-2000:]
                await _hears(call2 + call3)
                nursery.cancel_scope.cancel()
        finally:
            for peer in stack:
                await peer.close()


async def test_https_link_checks_the_certificate_name(tmp_path: Path, connect: Any, loopback_aioice: None) -> None:
    """``https://`` rtcd_url: the link is TLS, the certificate is checked against the name (a private CA through
    SSL_CERT_FILE), and a call carries audio through it; a server that does not trust the certificate links nothing."""
    cert, key = self_signed(tmp_path, NAME)
    host = RtcdProcess(tmp_path, ADDRESSES[0], tls=(cert, key))
    names = Hosts(tmp_path / "hosts")
    names.set(ADDRESSES[0])
    stack: list[Any] = []
    untrusting = None
    serve = None
    try:
        host.start()
        host.register()
        (tmp_path / "u").mkdir()
        untrusting = Serve(tmp_path / "u", names, host.port, scheme="https")
        serve = Serve(tmp_path, names, host.port, scheme="https", SSL_CERT_FILE=str(cert))
        await serve.ready()
        await untrusting.ready()
        async with trio.open_nursery() as nursery:
            call, _ = await _call(connect, serve, "tls", nursery, stack)
            await _hears(call)
            assert (await serve.placement())["up"] == {ADDRESSES[0]: 1}
            assert "up" not in await untrusting.placement()  # no host could be linked
            assert "CERTIFICATE_VERIFY_FAILED" in untrusting.log_path.read_text()
            nursery.cancel_scope.cancel()
    finally:
        for peer in stack:
            await peer.close()
        for s in (serve, untrusting):
            if s is not None:
                s.stop()
        host.kill()


async def test_loadtest_through_two_rtcd_hosts(rtcd_pair: Any, tmp_path: Path) -> None:
    """``callsd loadtest`` through serve placing calls on the two hosts: < 0.5 % loss, and the results say how many
    calls each host held."""
    import json

    _hosts, _names, serve = rtcd_pair
    await serve.ready(ADDRESSES)
    results = tmp_path / "results.json"
    run = await trio.run_process(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", f"http://127.0.0.1:{serve.port}",
         "--calls", "4", "--users-per-call", "3", "--unmuted", "1", "--duration", "8", "--join-duration", "2",
         "--processes", "1", "--output", str(results), "--quiet"],
        capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]
    doc = json.loads(results.read_text())
    assert doc["users"]["joined"] == 12 and doc["users"]["failed"] == 0
    assert doc["overall"]["audio_streams_received"] == doc["overall"]["audio_streams_expected"] == 8
    assert doc["overall"]["loss"] < 0.005
    per_host = doc["server"]["calls_per_host"]
    assert sorted(per_host) == [f"rtcd {a}:{_hosts[0].port}" for a in ADDRESSES]
    assert sorted(per_host.values()) == [2, 2], per_host


async def test_a_hung_host_fails_health_then_its_link_and_comes_back(rtcd_pair: Any, connect: Any,
                                                                     loopback_aioice: None) -> None:
    """SIGSTOP of a host: its /system stops answering (no new calls: the next call lands on the other host), then
    the link's pings time out (its sessions are reported closed); after SIGCONT the next resolution links it again
    and it takes calls."""
    hosts, _names, serve = rtcd_pair
    await serve.ready(ADDRESSES)
    stack: list[Any] = []
    with logs_on_failure(serve, hosts):
        stopped = hosts[0]
        try:
            async with trio.open_nursery() as nursery:
                call1, _ = await _call(connect, serve, "call1", nursery, stack)
                placement = await serve.placement()
                if placement["calls"].get(stopped.address) != 1:  # make the stopped host the one with the call
                    stopped = hosts[1]
                other = next(a for a in ADDRESSES if a != stopped.address)
                assert stopped.proc is not None
                stopped.proc.send_signal(signal.SIGSTOP)
                try:
                    await _until_placement(serve, lambda p: p["accepting"].get(stopped.address) == 0, timeout=15)
                    call2, _ = await _call(connect, serve, "call2", nursery, stack)
                    assert (await serve.placement())["calls"].get(other) == 1
                    # the link's pings go unanswered: serve gives the host up and reports its sessions closed
                    placement = await _until_placement(serve, lambda p: p["up"].get(stopped.address) == 0, timeout=30)
                    assert placement["sessions"].get(stopped.address, 0) == 0
                finally:
                    stopped.proc.send_signal(signal.SIGCONT)
                await _until_placement(serve, lambda p: p["up"].get(stopped.address) == 1
                                       and p["accepting"].get(stopped.address) == 1, timeout=30)
                await _hears(call2)
                nursery.cancel_scope.cancel()
        finally:
            for peer in stack:
                await peer.close()
