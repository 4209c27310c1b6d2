"""`callsd serve` with ``store.url`` on PostgreSQL: a real call with media, a restart that recovers from the
PostgreSQL log, and a ``kill -9`` that loses no acknowledged input (the process-level twin of
tests/server/test_server_durability.py, which proves the in-process rule: nothing is sent before it is durable)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.adapters.store import open_store
from callsd.core import LowerHand, RaiseHand
from serve_support import ServeProcess
from trio_websocket import ConnectionClosed, open_websocket_url

pytestmark = pytest.mark.slow

HAND_EVENTS = {"user_raised_hand": "RaiseHand", "user_lowered_hand": "LowerHand"}


class Peer:
    """A signaling client that remembers every message it was sent."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.seen, self.session_id = ws, [], ""

    async def send(self, kind: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send_message(json.dumps({"type": kind, "data": data or {}}))

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                msg = json.loads(await self.ws.get_message())
                self.seen.append(msg)
                if msg["type"] == kind:
                    return msg["data"]  # type: ignore[no-any-return]


@asynccontextmanager
async def _peer(server: ServeProcess) -> AsyncIterator[Peer]:
    async with open_websocket_url(server.url.replace("http", "ws") + "/api/v1/websocket") as ws:
        peer = Peer(ws)
        peer.session_id = (await peer.expect("hello"))["session_id"]
        yield peer


def _logged(url: str) -> list[Any]:
    with open_store(url, readonly=True) as store:  # type: ignore[attr-defined]
        return [entry.event for entry in store.iter_records(1)]


def _replay_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", url, "--verify"], capture_output=True,
                          text=True, timeout=120)


async def test_a_call_with_media_on_postgresql_then_kill_9_and_restart_recover_it(pg_url: str,
                                                                                  tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, CALLSD_STORE_URL=pg_url)
    await trio.to_thread.run_sync(server.start)
    try:
        # Two load-test users join a call, talk (both unmuted, real RTP through the SFU) and leave.
        out = tmp_path / "load.json"
        load = await trio.to_thread.run_sync(lambda: subprocess.run(
            [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url, "--calls", "1",
             "--users-per-call", "2", "--unmuted", "2", "--duration", "4", "--join-duration", "1",
             "--join-timeout", "10", "--output", str(out), "--quiet"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path))
        assert load.returncode == 0, load.stdout + load.stderr
        doc = json.loads(out.read_text())
        assert doc["users"]["joined"] == 2 and doc["overall"]["packets_received"] > 100, doc["overall"]
        kinds = [type(e).__name__ for e in _logged(pg_url)]
        assert kinds.count("JoinCall") == 2 and kinds.count("LeaveCall") == 2, kinds  # joined, talked, left
        assert "PublishTrack" in kinds  # their microphones reached the SFU through the log

        # A call still going on when the process is killed...
        async with _peer(server) as alice:
            await alice.send("join", {"channel_id": "room", "display_name": "alice"})
            await alice.expect("join_ack")
            await alice.send("raise_hand")
            await alice.expect("user_raised_hand")  # acknowledged: durable in PostgreSQL
            await trio.to_thread.run_sync(server.kill)
        # ... is rebuilt from the PostgreSQL log by the next process.
        await trio.to_thread.run_sync(server.start)
        async with _peer(server) as bob:
            await bob.send("join", {"channel_id": "room", "display_name": "bob"})
            state = (await bob.expect("join_ack"))["state"]
            first = state["participants"][0]
            assert first["session_id"] == alice.session_id and first["connected"] is False
            assert first["raised_hand"] > 0
    finally:
        await trio.to_thread.run_sync(server.stop)
    verified = _replay_verify(pg_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_kill_9_mid_burst_loses_no_acknowledged_input(pg_url: str, tmp_path: Path) -> None:
    """Twelve clients each send 90 hand raises/lowers at once (under the 100-message burst of the rate limit), not
    waiting for answers; the server is killed with about a third of them answered. Every input a client saw
    acknowledged (its own ``user_raised_hand``/``user_lowered_hand`` broadcast) is in the PostgreSQL log, in the
    order the client saw them; and the log verifies."""
    server = ServeProcess(tmp_path, CALLSD_STORE_URL=pg_url)
    await trio.to_thread.run_sync(server.start)
    acked: dict[str, list[str]] = defaultdict(list)
    enough = trio.Event()
    peers, per_peer = 12, 90

    async def hands(peer: Peer) -> None:
        async def send_all() -> None:
            for i in range(per_peer):
                try:
                    await peer.send("raise_hand" if i % 2 == 0 else "lower_hand")
                except ConnectionClosed:
                    return

        async def read_acks() -> None:
            while len(acked[peer.session_id]) < per_peer:
                try:
                    msg = json.loads(await peer.ws.get_message())
                except ConnectionClosed as exc:  # before the kill it is the server's doing: say why, at once
                    assert enough.is_set(), f"the server closed {peer.session_id} mid-burst: {exc.reason}"
                    return
                if msg["type"] in HAND_EVENTS and msg["data"]["session_id"] == peer.session_id:
                    acked[peer.session_id].append(HAND_EVENTS[msg["type"]])
                    if sum(map(len, acked.values())) >= peers * per_peer // 3:
                        enough.set()
                assert msg["type"] != "error", msg

        async with trio.open_nursery() as both:
            both.start_soon(send_all)
            both.start_soon(read_acks)

    try:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(_peer(server)) for _ in range(peers)]
            for k, peer in enumerate(clients):
                await peer.send("join", {"channel_id": "burst", "display_name": f"p{k}"})
                await peer.expect("join_ack")
            async with trio.open_nursery() as nursery:
                for peer in clients:
                    nursery.start_soon(hands, peer)
                with trio.fail_after(120):
                    await enough.wait()
                await trio.to_thread.run_sync(server.kill)  # mid-burst: inputs are in flight on every socket
    finally:
        await trio.to_thread.run_sync(server.stop)
    logged: dict[str, list[str]] = defaultdict(list)
    for event in _logged(pg_url):
        if isinstance(event, RaiseHand | LowerHand):
            logged[event.session_id].append(type(event).__name__)
    total = sum(map(len, acked.values()))
    print(f"killed with {total} of {peers * per_peer} inputs acknowledged; "
          f"{sum(map(len, logged.values()))} in the log")
    assert peers * per_peer // 3 <= total < peers * per_peer  # killed mid-burst
    for session_id, seen in acked.items():
        assert logged[session_id][:len(seen)] == seen, session_id  # every acknowledged input, in order
    verified = _replay_verify(pg_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_when_postgresql_goes_away_serve_stops_and_loses_only_the_unacknowledged(tmp_path: Path) -> None:
    """The failure model in one run, on a PostgreSQL of its own: the database crashes mid-call; the next input
    cannot be committed, so nobody is told of it and the server stops (exit 1, one line); once the database is
    back (crash recovery from its WAL) a restarted server rebuilds the call with every acknowledged input and
    without the one that was never acknowledged."""
    from pg_support import PostgresServer

    with PostgresServer() as database:
        url = database.create_database("crash")
        server = ServeProcess(tmp_path, CALLSD_STORE_URL=url)
        await trio.to_thread.run_sync(server.start)
        try:
            async with _peer(server) as alice:
                await alice.send("join", {"channel_id": "room", "display_name": "alice"})
                await alice.expect("join_ack")
                await alice.send("raise_hand")
                await alice.expect("user_raised_hand")  # acknowledged
                await trio.to_thread.run_sync(database.halt)  # the database crashes
                await alice.send("lower_hand")
                with trio.fail_after(30):
                    while (code := server.proc.poll()) is None:  # type: ignore[union-attr]
                        await trio.sleep(0.05)
                assert not [m for m in alice.seen if m["type"] == "user_lowered_hand"]  # never acknowledged
            assert code == 1
            last = server.log_path.read_text().strip().splitlines()[-1]
            assert last.startswith("callsd serve: ") and "event log" in last, last
            await trio.to_thread.run_sync(database.start)  # back, after crash recovery
            await trio.to_thread.run_sync(server.start)
            async with _peer(server) as bob:
                await bob.send("join", {"channel_id": "room", "display_name": "bob"})
                first = (await bob.expect("join_ack"))["state"]["participants"][0]
                assert first["session_id"] == alice.session_id and first["raised_hand"] > 0  # hand still up
        finally:
            await trio.to_thread.run_sync(server.stop)
        assert _replay_verify(url).returncode == 0
