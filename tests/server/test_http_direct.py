"""A direct upgrade is served without hypercorn (app/http_direct.py): no ``TCPServer`` is built for it, its join
deadline lives in its reader (no task waits for it), and plain HTTP still goes through hypercorn. The join deadline's
cases run on virtual time over a real socket pair; the end-to-end ones on a real server."""

from __future__ import annotations

from collections import Counter
from math import inf
from typing import Any

import trio
import trio.testing
from attack_support import frame_header, open_upgraded, read_close_code
from callsd.app import http_guard
from callsd.app.http_direct import DirectConnection, DirectTimeouts
from callsd.app.http_inbound import InboundGuard
from callsd.app.ws_direct import DirectSocket, JoinTicket, UpgradeRequest, upgrade_request

HEAD = (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _text_frame(text: bytes) -> bytes:
    return frame_header(len(text)) + text  # masked with an all-zero mask


class _App:
    """The app's side of a direct path: joins after ``join_after`` messages (never if None), reads only while
    ``reading``."""

    path = "/ws"

    def __init__(self, *, join_after: int | None, reading: bool = True) -> None:
        self.join_after = join_after
        self.reading = reading
        self.received: list[str | bytes] = []
        self.ended = trio.Event()

    def check(self, request: UpgradeRequest) -> tuple[int, str] | None:
        return None

    async def serve(self, request: UpgradeRequest, socket: DirectSocket, ticket: JoinTicket) -> None:
        try:
            if self.join_after == 0:
                ticket.joined()
            while self.reading:
                message = await socket.receive()
                if message is None:
                    return
                self.received.append(message)
                if len(self.received) == self.join_after:
                    ticket.joined()
            await trio.sleep_forever()
        finally:
            self.ended.set()


async def _serve(app: _App, client: trio.SocketStream, server: trio.SocketStream, join_timeout: float) -> None:
    inbound = InboundGuard(max_message_bytes=1 << 16)
    first = inbound.feed(HEAD)
    request = upgrade_request(HEAD, "/ws")
    assert request is not None
    timeouts = DirectTimeouts(join_at=trio.current_time() + join_timeout, read=inf, ping_interval=inf, write=45.0)
    connection = DirectConnection(server, inbound, timeouts, Counter())
    await connection.serve(app, request, first, False)
    assert connection.refused == (Counter(join_timeout=1) if app.join_after is None else Counter())


async def _read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_an_unjoined_direct_socket_is_closed_by_its_reader_at_the_join_deadline(autojump_clock: Any) -> None:
    left, right = trio.socket.socketpair()
    client, server = trio.SocketStream(left), trio.SocketStream(right)
    app = _App(join_after=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, app, client, server, 10.0)
        await client.send_all(_text_frame(b'{"type":"ping"}'))
        start = trio.current_time()
        data = await _read_all(client)
        assert trio.current_time() - start >= 10.0 - 1e-6  # not before the deadline
    assert data.startswith(b"HTTP/1.1 101 ")
    assert read_close_code(data.partition(b"\r\n\r\n")[2]) == 1008
    assert app.ended.is_set() and app.received == ['{"type":"ping"}']


async def test_the_join_deadline_also_ends_a_reader_waiting_on_a_full_inbox(autojump_clock: Any) -> None:
    # An unjoined client that floods messages the app does not take: the reader waits on the inbox, not on the
    # socket; the deadline task used to cut it there, the reader's own deadline must too.
    left, right = trio.socket.socketpair()
    client, server = trio.SocketStream(left), trio.SocketStream(right)
    app = _App(join_after=None, reading=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, app, client, server, 10.0)
        await client.send_all(_text_frame(b'{"type":"ping"}') * 40)  # more than the inbox holds
        data = await _read_all(client)
    assert read_close_code(data.partition(b"\r\n\r\n")[2]) == 1008


async def test_a_joined_direct_socket_outlives_the_deadline_and_ends_when_the_peer_closes(
        autojump_clock: Any) -> None:
    left, right = trio.socket.socketpair()
    client, server = trio.SocketStream(left), trio.SocketStream(right)
    app = _App(join_after=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, app, client, server, 10.0)
        await client.send_all(_text_frame(b'{"type":"join"}'))
        await trio.sleep(60.0)  # six join deadlines later
        await client.send_all(_text_frame(b'{"type":"ping"}'))
        await trio.sleep(1.0)
        assert app.received == ['{"type":"join"}', '{"type":"ping"}']
        client.socket.shutdown(trio.socket.SHUT_WR)
        await _read_all(client)
    assert app.ended.is_set()


async def test_a_direct_socket_builds_no_hypercorn_server_and_plain_http_does(start_server, connect, http_get,
                                                                             monkeypatch) -> None:
    built: list[object] = []
    original = http_guard.GuardedTCPServer.__init__

    def counting_init(self: http_guard.GuardedTCPServer, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(http_guard.GuardedTCPServer, "__init__", counting_init)
    info, _ = await start_server()
    async with connect(info) as alice:
        await alice.request("join", {"channel_id": "room", "display_name": "alice"}, expect="join_ack")
        await alice.request("ping", expect="pong")
    assert built == []
    status, _, _ = await http_get(info.http_port, "/metrics")
    assert status == 200 and len(built) == 1
    stream, head = await open_upgraded(info.http_port, path="/not-the-signaling-path")  # hypercorn answers it
    await stream.aclose()
    assert len(built) == 2


class _LateJoiner(_App):
    """Takes nothing for a while, joins while the reader waits on its full inbox, then reads past the deadline."""

    async def serve(self, request: UpgradeRequest, socket: DirectSocket, ticket: JoinTicket) -> None:
        await trio.sleep(5.0)
        ticket.joined()
        await trio.sleep(20.0)  # the join deadline (10 s) passes while the reader still waits
        while (message := await socket.receive()) is not None:
            self.received.append(message)
        self.ended.set()


async def test_a_join_lifts_the_deadline_from_under_a_reader_waiting_on_a_full_inbox(autojump_clock: Any) -> None:
    left, right = trio.socket.socketpair()
    client, server = trio.SocketStream(left), trio.SocketStream(right)
    app = _LateJoiner(join_after=1)
    sent = [f'{{"type":"ping","id":{n}}}'.encode() for n in range(40)]  # more than the inbox holds
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, app, client, server, 10.0)
        await client.send_all(b"".join(_text_frame(m) for m in sent))
        await trio.sleep(30.0)
        client.socket.shutdown(trio.socket.SHUT_WR)
        await _read_all(client)
    assert app.received == [m.decode() for m in sent]  # every message, none cut off by the lifted deadline


class _TaskCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned: Counter[str] = Counter()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned[task.name.rsplit(".", 1)[-1]] += 1


async def test_a_direct_socket_spawns_its_handler_its_session_and_the_hub_writer_only(start_server, connect) -> None:
    # Per signaling socket the stack used to spawn the listener's handler, the join deadline, hypercorn's task
    # group's tasks, the session and the hub's writer; now three tasks, and none of them is a timer.
    info, _ = await start_server()
    async with connect(info) as warm:  # the server's own tasks are all started
        await warm.request("ping", expect="pong")
    counter = _TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        async with connect(info) as alice:
            await alice.request("join", {"channel_id": "room", "display_name": "alice"}, expect="join_ack")
            await alice.request("ping", expect="pong")
    finally:
        trio.lowlevel.remove_instrument(counter)
    server_side = {name: n for name, n in counter.spawned.items()
                   if name not in ("attempt_connect", "_reader_task")}  # the client's (trio-websocket's)
    assert server_side == {"_run_handler": 1, "_session": 1, "_writer": 1}, counter.spawned


async def test_hypercorns_websockets_keep_their_join_deadline_in_the_reader_too(start_server, connect) -> None:
    # http.signaling_socket = "asgi": the socket goes through hypercorn and Quart; its join deadline is enforced by
    # GuardedTCPServer's reader (no task per connection waits for it), the joined one outlives it.
    info, _ = await start_server(http={"join_timeout": "0.5", "signaling_socket": "asgi"})
    async with connect(info) as member:
        await member.request("join", {"channel_id": "room"}, expect="join_ack")
        idle, head = await open_upgraded(info.http_port)
        assert head.startswith(b"HTTP/1.1 101 ")
        with trio.fail_after(5):
            data = await _read_all(idle)
        assert read_close_code((head + data).partition(b"\r\n\r\n")[2]) == 1008
        await member.request("ping", expect="pong")
