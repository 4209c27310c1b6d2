"""Issue 8, item 0: an error in one HTTP connection's tasks must never end the server (app/http_guard.py).

The attack that found it: concurrent connections sending huge WebSocket frames until hypercorn's ping task raised
``trio.BusyResourceError`` (its half-close raced a ping), which climbed through ``serve``'s nursery to ``trio.run``
and ended the process with every call in it. Two fixes, two tests:

- the race itself: a ping in flight while the connection closes must raise nothing (hypercorn's own ``TCPServer``
  raises ``BusyResourceError`` in this exact interleaving; ``GuardedTCPServer`` serialises the half-close);
- containment: whatever a connection's task raises (here: its ping task, as in the attack) closes that connection
  only; the error is logged once and counted in ``callsd_http_connection_errors_total``, other clients go on.

The end-to-end attack against a ``callsd serve`` process, with another call's media flowing, is in
test_attack_ws_frames.py.
"""

from __future__ import annotations

import logging

import hypercorn.config
import pytest
import trio
from callsd.app.http_guard import GuardCounters, GuardedTCPServer
from callsd.app.http_inbound import InboundGuard
from callsd.app.ws_direct import DirectSocket
from hypercorn.events import Event, RawData
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState


class _Protocol:
    """What TCPServer calls back when a send finds the socket gone."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


async def _ping_while_closing(server: GuardedTCPServer) -> None:
    """The attack's interleaving: the ping task has taken the send lock when the connection starts to close."""

    async def ping() -> None:
        await server.protocol_send(RawData(b"\x89\x00"))  # a WebSocket ping frame

    async def close() -> None:
        while not server.send_lock.locked():
            await trio.lowlevel.checkpoint()
        await server._close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ping)
        nursery.start_soon(close)


async def test_a_ping_in_flight_while_the_connection_closes_raises_nothing() -> None:
    # Trio runs the two tasks in either order; 40 trials make both orders certain (hypercorn's TCPServer raised
    # BusyResourceError in 16 of 40 in one run).
    for _ in range(40):
        left, right = trio.socket.socketpair()
        stream = trio.SocketStream(left)
        server = GuardedTCPServer(None, hypercorn.config.Config(), WorkerContext(None), ConnectionState({}), stream,
                                  inbound=InboundGuard(max_message_bytes=1 << 20), counters=GuardCounters())
        server.protocol = _Protocol()  # type: ignore[assignment]
        with trio.fail_after(5):
            await _ping_while_closing(server)
        right.close()


@pytest.mark.parametrize("signaling_socket", ["direct", "asgi"])
async def test_an_error_in_a_connection_task_closes_that_connection_only(start_server, connect, http_get,
                                                                          monkeypatch, caplog, signaling_socket):
    failures = 2
    # a task of the socket's stack: the guard's reader handing frames to the direct socket (which also pings it
    # after a silence, since the ping task per socket is gone), or hypercorn's WebSocket stream's ping task
    owner, name = (DirectSocket, "feed") if signaling_socket == "direct" else (WSStream, "_send_pings")
    original = getattr(owner, name)

    async def failing_pings(self: object, *args: object) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise trio.BusyResourceError("another task is currently sending data on this SocketStream")
        await original(self, *args)

    monkeypatch.setattr(owner, name, failing_pings)
    caplog.set_level(logging.ERROR, logger="callsd.http")
    info, _ = await start_server(http={"signaling_socket": signaling_socket})
    for _ in range(2):  # each of these connections loses a task (its reader, its pings): it is closed, not the server
        with pytest.raises(Exception):  # noqa: B017 - the socket is closed under the client, however it surfaces
            async with connect(info) as victim:
                await victim.request("join", {"channel_id": "room", "display_name": "v"}, expect="join_ack")
                await victim.recv(timeout=5)
    async with connect(info) as alice, connect(info) as bob:
        await alice.request("join", {"channel_id": "room", "display_name": "alice"}, expect="join_ack")
        await bob.request("join", {"channel_id": "room", "display_name": "bob"}, expect="join_ack")
        await alice.expect("user_joined")
    status, _, body = await http_get(info.http_port, "/metrics")
    assert status == 200
    assert 'callsd_http_connection_errors_total{error="BusyResourceError"} 2.0' in body.decode()
    records = [r for r in caplog.records if r.name == "callsd.http"]
    assert len(records) == 1, [r.getMessage() for r in records]  # logged once, then only counted
    assert "BusyResourceError" in records[0].getMessage()
