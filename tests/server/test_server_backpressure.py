"""Back-pressure between what a signaling socket is sent and what the hub reads from it (``Connection.backlog``,
docs/adr/0027-batch-frames-and-direct-signaling-socket.md, addendum of 2026-11-29 16:40).

One input fans out to every member of its call. Before, the hub read a socket as fast as it arrived, so when every
member of a 12-person call sent a burst at once, every outbox grew ~12 times faster than its writer drained it and
the slow-client rule (outbox full: 1008 "too slow") closed all twelve clients, though each was reading: the stall of
tests/pg/test_pg_serve.py::test_kill_9_mid_burst_loses_no_acknowledged_input on the direct socket (3 of 6 runs), and
through hypercorn too with 24 clients. Now the hub stops reading a socket while what is waiting for it is at a
quarter of its outbox, and reads on once its own writer sent it down.

The hub tests gate the clients' sends (clients that are not reading for a while): deterministic, whatever the
machine's load. The socket test is the burst itself, on both stacks.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from callsd.adapters import signaling
from callsd.adapters.signaling import HubSettings, SignalingHub
from hub_support import MemoryRecorder, MemoryTransport
from serve_support import ServeProcess
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

HANDS = ("raise_hand", "lower_hand")
ACKS = {"user_raised_hand", "user_lowered_hand"}


class GatedTransport(MemoryTransport):
    """A client that reads only while its gate is open: the hub's send to it waits until then."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = trio.Event()

    async def send(self, text: str) -> None:
        await self.reading.wait()
        await super().send(text)

    def unread(self) -> int:
        """Messages pushed that the hub has not taken yet."""
        return int(self.inbox.statistics().current_buffer_used)


def _hub() -> SignalingHub:
    recorder = MemoryRecorder()
    ids = iter(f"id{i}" for i in range(10_000))
    return SignalingHub(recorder, recorder.machine, settings=HubSettings(rate=1e9, burst=10**9),
                        clock_ms=lambda: int(trio.current_time() * 1000), new_id=lambda prefix: prefix + next(ids))


async def _join_all(hub: SignalingHub, nursery: trio.Nursery, clients: list[Any]) -> None:
    await nursery.start(hub.run)
    for client in clients:
        nursery.start_soon(hub.serve_connection, client)
    await trio.testing.wait_all_tasks_blocked()
    for k, client in enumerate(clients):
        await client.push("join", {"channel_id": "c", "display_name": f"p{k}"})
    await trio.testing.wait_all_tasks_blocked()


async def test_a_call_whose_members_burst_while_not_reading_is_paced_not_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signaling, "OUTBOX_SIZE", 32)  # backlog_high 8
    hub, clients, per_client = _hub(), [GatedTransport() for _ in range(6)], 40
    async with trio.open_nursery() as nursery:
        for client in clients:
            client.reading.set()
        await _join_all(hub, nursery, clients)
        for client in clients:
            client.reading = trio.Event()  # from now on nobody reads...
        for client in clients:
            for i in range(per_client):  # ...and everyone sends a burst: 240 inputs, 240 events for every outbox
                await client.push(HANDS[i % 2])
        await trio.testing.wait_all_tasks_blocked()
        conns = list(hub._outbox.conns.values())
        assert [c.closed for c in clients] == [None] * 6, [c.types()[-3:] for c in clients]  # before: every outbox overflowed, all six closed 1008
        assert max(c.backlog for c in conns) < 32
        assert sum(c.unread() for c in clients) > 6 * per_client - 32  # the hub stopped reading, not the clients
        for client in clients:
            client.reading.set()
        with trio.fail_after(10):
            for client in clients:
                await client.wait_for("user_raised_hand", 6 * per_client // 2)
                await client.wait_for("user_lowered_hand", 6 * per_client // 2)
        assert all(c.closed is None for c in clients) and hub.counters.ws_closed_slow == 0
        assert all(c.backlog == 0 for c in conns)
        nursery.cancel_scope.cancel()


async def test_a_client_that_never_reads_stalls_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """It sends a burst and reads nothing: the hub stops reading it (its own input waits), the others' events still
    fill its outbox, and it is closed as too slow; the others are served throughout."""
    monkeypatch.setattr(signaling, "OUTBOX_SIZE", 32)
    hub, stuck, busy = _hub(), GatedTransport(), MemoryTransport()
    async with trio.open_nursery() as nursery:
        stuck.reading.set()
        await _join_all(hub, nursery, [stuck, busy])
        stuck.reading = trio.Event()  # never set again
        for i in range(40):
            await stuck.push(HANDS[i % 2])
        await trio.testing.wait_all_tasks_blocked()
        assert stuck.unread() > 20 and stuck.closed is None  # paced: its own acks wait for it to read
        for i in range(100):
            await busy.push(HANDS[i % 2])
        with trio.fail_after(10):
            while stuck.closed is None:
                await trio.sleep(0.01)
            await busy.wait_for("user_raised_hand", 50 + 1)  # all its own, and the one of stuck's it took
        assert stuck.closed == (1008, "too slow: outbox full")
        assert busy.closed is None and hub.counters.ws_closed_slow == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("signaling_socket", ["direct", "asgi"])
async def test_twelve_clients_bursting_in_one_call_all_get_every_ack(tmp_path: Path, signaling_socket: str) -> None:
    """The burst of the kill -9 test, without the kill, on a `callsd serve` process (in-process, the clients share
    the server's Trio loop and pace it; the stall did not show there): 12 clients in one call each send 90 hand
    raises/lowers at once (within the rate limit's burst) while reading; every input is acknowledged to its sender,
    nobody is closed. Before: all twelve closed 1008 "too slow: outbox full" within ~2 s on the direct socket."""
    server = ServeProcess(tmp_path, CALLSD_HTTP_SIGNALING_SOCKET=signaling_socket)
    await trio.to_thread.run_sync(server.start)
    peers, per_peer = 12, 90
    acked: Counter[str] = Counter()
    closed: list[str] = []

    async def burst(ws: WebSocketConnection, session_id: str) -> None:
        async def send_all() -> None:
            for i in range(per_peer):
                await ws.send_message(json.dumps({"type": HANDS[i % 2], "data": {}}))

        async def read_acks() -> None:
            while acked[session_id] < per_peer:
                try:
                    msg = json.loads(await ws.get_message())
                except ConnectionClosed as exc:
                    closed.append(f"{exc.reason}")
                    return
                assert msg["type"] != "error", msg
                if msg["type"] in ACKS and msg["data"]["session_id"] == session_id:
                    acked[session_id] += 1

        async with trio.open_nursery() as both:
            both.start_soon(send_all)
            both.start_soon(read_acks)

    try:
        async with AsyncExitStack() as stack:
            clients: list[tuple[WebSocketConnection, str]] = []
            for k in range(peers):
                ws = await stack.enter_async_context(open_websocket_url(server.url.replace("http", "ws")
                                                                        + "/api/v1/websocket"))
                await ws.send_message(json.dumps({"type": "join", "data": {"channel_id": "burst",
                                                                           "display_name": f"p{k}"}}))
                while (msg := json.loads(await ws.get_message()))["type"] != "join_ack":
                    pass
                clients.append((ws, msg["data"]["session_id"]))
            with trio.fail_after(120):  # a bound for a hang, not a speed target (~3 s direct, ~9 s asgi, loaded)
                async with trio.open_nursery() as nursery:
                    for ws, session_id in clients:
                        nursery.start_soon(burst, ws, session_id)
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert closed == []
    assert sorted(acked.values()) == [per_peer] * peers
