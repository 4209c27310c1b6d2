"""The directly served signaling socket (app/ws_direct.py, ADR 0027): the upgrade head it accepts, its 101, and
the frame codec as a client sees it (fragments, pings, the close handshake, bad UTF-8), with wsproto as the client.
The refusals (host, origin, token) and the guard's frame limits are asserted against a real server by the attack
and auth tests, which run on this path by default; ``http.signaling_socket = "asgi"`` is checked end to end here."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import h11
import pytest
import trio
from callsd.app.ws_direct import DirectSocket, FrameSender, UpgradeRequest, accept_response, upgrade_request
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong, TextMessage

HEAD = (b"GET /api/v1/websocket?token=abc HTTP/1.1\r\nHost: calls.example.org\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: https://calls.example.org\r\n\r\n")


def test_an_upgrade_of_the_path_is_parsed_and_answered_as_rfc_6455_says() -> None:
    request = upgrade_request(HEAD, "/api/v1/websocket")
    assert request is not None
    assert (request.arg("token"), request.headers["host"], request.headers["origin"]) == (
        "abc", "calls.example.org", "https://calls.example.org")
    reply = accept_response(request)
    assert reply.startswith(b"HTTP/1.1 101 ") and reply.endswith(b"\r\n\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in reply  # RFC 6455 section 1.3's example
    assert b"extensions" not in reply.lower()  # never permessage-deflate (app/http_inbound.py)


@pytest.mark.parametrize("head", [
    HEAD.replace(b"/api/v1/websocket", b"/other"),
    HEAD.replace(b"GET ", b"POST "),
    HEAD.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
    HEAD.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
    HEAD.replace(b"Upgrade: websocket\r\n", b""),
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x00garbage\r\n\r\n",
])
def test_anything_else_is_left_to_hypercorn(head: bytes) -> None:
    assert upgrade_request(head, "/api/v1/websocket") is None


def _h11_upgrade_request(head: bytes, path: str) -> UpgradeRequest | None:
    """The reference: the same rules with the head parsed by h11 (what ``upgrade_request`` did until session 8)."""
    parser = h11.Connection(h11.SERVER)
    try:
        parser.receive_data(head)
        event = parser.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request) or event.method != b"GET":
        return None
    target = urlsplit(event.target.decode("ascii", "replace"))
    if target.path != path:
        return None
    headers = {name.decode("ascii").lower(): value.decode("latin-1") for name, value in event.headers}
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    key = headers.get("sec-websocket-key", "")
    if (headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in connection
            or headers.get("sec-websocket-version") != "13" or not key):
        return None
    return UpgradeRequest(path=target.path, query=parse_qs(target.query), headers=headers, key=key)


@pytest.mark.parametrize("head", [
    HEAD,
    HEAD.replace(b"Host: calls.example.org\r\n", b""),  # no Host: h11 refuses it
    HEAD.replace(b"Host: calls.example.org\r\n", b"Host: a\r\nHost: b\r\n"),
    HEAD.replace(b"Upgrade: websocket", b"Upgrade:   websocket  "),
    HEAD.replace(b"Upgrade: websocket", b"UPGRADE:\tWebSocket"),
    HEAD.replace(b"Origin: https", b"Origin : https"),
    HEAD.replace(b"Origin: https://calls.example.org", b"Origin: caf\xc3\xa9 x"),
    HEAD.replace(b"Origin: https://calls.example.org", b"Origin: a\x00b"),
    HEAD.replace(b" HTTP/1.1", b" HTTP/1.0"),
    HEAD.replace(b"GET /api", b"GET http://calls.example.org/api"),
    HEAD.replace(b"Sec-WebSocket-Version: 13\r\n", b"Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"),
    HEAD.replace(b"\r\n\r\n", b"\r\n"),
])
def test_the_head_parser_accepts_what_h11_accepts_or_leaves_it_to_hypercorn(head: bytes) -> None:
    parsed = upgrade_request(head, "/api/v1/websocket")
    assert parsed is None or parsed == _h11_upgrade_request(head, "/api/v1/websocket")
    if head == HEAD:
        assert parsed is not None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(HEAD)), st.integers(0, 3), st.binary(max_size=4)
       | st.sampled_from([b" ", b"\t", b":", b"\r\n", b"\x00", b"\x7f", b"\xff", b"Host: x\r\n"]))
def test_a_mangled_head_is_never_accepted_unless_h11_agrees(position: int, cut: int, insert: bytes) -> None:
    head = HEAD[:position] + insert + HEAD[position + cut:]
    parsed = upgrade_request(head, "/api/v1/websocket")
    assert parsed is None or parsed == _h11_upgrade_request(head, "/api/v1/websocket")


class _Wire:
    """The server side's bytes, parsed by a wsproto client; the client's frames, encoded by it."""

    def __init__(self) -> None:
        self.client = Connection(ConnectionType.CLIENT)
        self.closed = False
        self.events: list[object] = []

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise trio.ClosedResourceError
        self.client.receive_data(data)
        self.events.extend(self.client.events())

    async def close_stream(self) -> None:
        self.closed = True


async def test_messages_fragments_pings_and_the_close_handshake() -> None:
    wire = _Wire()
    socket = DirectSocket(wire.send_bytes, wire.close_stream)
    client = wire.client
    await socket.feed(client.send(Message(data='{"type":"ping"}')))
    assert await socket.receive() == '{"type":"ping"}'
    await socket.feed(client.send(Message(data="é" * 3, message_finished=False)) + client.send(Message(data="!")))
    assert await socket.receive() == "ééé!"
    await socket.feed(client.send(Ping(payload=b"hi")))
    assert any(isinstance(e, Pong) and e.payload == b"hi" for e in wire.events)
    await socket.send('{"type":"pong"}')
    assert any(isinstance(e, TextMessage) and e.data == '{"type":"pong"}' for e in wire.events)
    await socket.feed(client.send(CloseConnection(code=1000, reason="bye")))
    assert await socket.receive() is None  # the app's loop ends
    assert any(isinstance(e, CloseConnection) and e.code == 1000 for e in wire.events)  # the close was answered


async def test_bad_utf8_is_answered_with_close_1007_and_ends_the_socket() -> None:
    wire = _Wire()
    socket = DirectSocket(wire.send_bytes, wire.close_stream)
    # a masked text frame whose payload is not UTF-8 (mask 0: the payload is as written)
    await socket.feed(bytes([0x81, 0x80 | 2, 0, 0, 0, 0, 0xC3, 0x28]))
    assert await socket.receive() is None
    assert any(isinstance(e, CloseConnection) and e.code == 1007 for e in wire.events)


async def test_a_server_close_sends_the_code_then_closes_the_stream() -> None:
    wire = _Wire()
    socket = DirectSocket(wire.send_bytes, wire.close_stream)
    await socket.close(4001, "replaced")
    assert any(isinstance(e, CloseConnection) and (e.code, e.reason) == (4001, "replaced") for e in wire.events)
    assert wire.closed
    await socket.close(1000, "")  # a second close is a no-op (the session's end always closes)


@pytest.mark.parametrize("signaling_socket", ["direct", "asgi"])
async def test_both_stacks_serve_a_call_and_batch_frames(start_server, connect, signaling_socket: str) -> None:
    info, _ = await start_server(http={"signaling_socket": signaling_socket})
    async with connect(info) as alice, connect(info) as bob:
        ack = await alice.request("join", {"channel_id": "room", "display_name": "alice", "batch": True},
                                  expect="batch")
        assert [e["type"] for e in ack["events"]][:1] == ["join_ack"]
        await bob.request("join", {"channel_id": "room", "display_name": "bob"}, expect="join_ack")
        joined = await alice.expect("user_joined")
        assert joined["user_id"] == "bob"


def test_upgrade_request_arg_is_the_first_value() -> None:
    request = UpgradeRequest(path="/p", query={"token": ["a", "b"]}, headers={}, key="k")
    assert (request.arg("token"), request.arg("other")) == ("a", None)


async def test_frame_sender_never_interleaves_frames_when_the_socket_fills() -> None:
    # Two senders, frames much larger than what the socket takes at once: the fast path writes part of a frame and
    # must send the rest under the lock before anyone else writes; the reader must see every frame whole.
    left, right = trio.socket.socketpair()
    left.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
    stream, reader = trio.SocketStream(left), trio.SocketStream(right)
    sender = FrameSender(stream, trio.Lock(), write_timeout=10, timed_out=lambda: None)
    frames = {name: [bytes([tag]) * 50_000 for _ in range(20)] for name, tag in (("a", 0x61), ("b", 0x62))}
    received = bytearray()

    async def send(name: str) -> None:
        for frame in frames[name]:
            await sender.send(frame)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "a")
            nursery.start_soon(send, "b")
            while len(received) < 2 * 20 * 50_000:
                received += await reader.receive_some(8192)
                await trio.sleep(0)  # a slow reader: the senders find the socket full again and again
    runs = [len(run) for run in bytes(received).replace(b"ab", b"a|b").replace(b"ba", b"b|a").split(b"|")]
    assert all(run % 50_000 == 0 for run in runs)  # only whole frames follow one another


async def test_frame_sender_gives_up_on_a_peer_that_does_not_read() -> None:
    left, right = trio.socket.socketpair()
    left.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
    timeouts: list[bool] = []
    sender = FrameSender(trio.SocketStream(left), trio.Lock(), write_timeout=0.2,
                         timed_out=lambda: timeouts.append(True))
    with trio.fail_after(10), pytest.raises(trio.ClosedResourceError):
        while True:
            await sender.send(b"x" * 65536)
    assert timeouts == [True]
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
        await sender.send(b"after")  # the stream is closed: no write to a stale descriptor
    right.close()


class _StepsOf(trio.abc.Instrument):
    """Counts the task steps of tasks named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.steps += 1


async def test_a_message_fed_into_an_inbox_with_room_costs_the_reader_no_step() -> None:
    """The reader hands whole messages to the inbox without yielding when it has room (it yields at its next socket
    read anyway): three messages fed in one call are one step of the reader's task, not four; and a cancelled
    reader still delivers nothing."""
    wire = _Wire()
    socket = DirectSocket(wire.send_bytes, wire.close_stream)
    frames = b"".join(wire.client.send(Message(data=f'{{"type":"ping","id":{n}}}')) for n in range(3))
    steps = _StepsOf("reader")
    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(socket.feed, frames, name="reader")
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert steps.steps == 1
    assert [await socket.receive() for _ in range(3)] == [f'{{"type":"ping","id":{n}}}' for n in range(3)]
    with trio.CancelScope() as scope:
        scope.cancel()
        await socket.feed(wire.client.send(Message(data="late")))
    assert scope.cancelled_caught
    socket.feed_eof()
    assert await socket.receive() is None  # nothing was delivered before the end
