"""A closed connection leaves no reference cycle: reference counting alone frees it (ADR 0048, addendum).

Why it matters: ``gc.freeze()`` (app/gc_tuning.py) takes every object alive at that moment out of the cyclic
collector's walks for good. An object frozen while its connection was open, and freed only by the collector once the
connection closed, would stay for the life of the process. So a connection must be freed by reference counting
alone when it ends, on both paths: the signaling socket served directly (app/http_direct.py) and plain HTTP served by
hypercorn (app/http_guard.py). (A WebSocket served by hypercorn and Quart, as the cluster front's and rtcd's are,
still ends in cycles through quart-trio's cancelled tasks: ADR 0048's addendum says what is left.)

The test does what users and an operator do, against a real server in this process with the collector switched
off: users join a call over real signaling sockets and hang up (a close frame, as a browser sends), plain HTTP
requests come and go, and the operator's scrape shows that no connection is open but the scrape itself. Then one
full collection lists what it would free, by type: nothing of a connection's types. The clients are raw sockets, so
nothing on the client side (a WebSocket library's own cycles) is counted with the server's.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from attack_support import http_request, metric, open_upgraded, text_frame

USERS = 6  # signaling sockets joined and closed (served directly)
REQUESTS = 4  # plain HTTP requests (hypercorn's path)
CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0]) + (1000).to_bytes(2, "big")  # masked (all-zero mask), code 1000

# Every object a connection builds on the server, by the module of its type: callsd's connection code, the hub's
# per-connection objects, hypercorn's (plain HTTP) and the libraries it drives, trio's stream and socket objects.
CONNECTION_MODULES = ("callsd.app.", "callsd.adapters.signaling", "hypercorn.", "h11.", "wsproto.",
                      "quart", "trio.SocketStream", "trio._socket.", "socket.socket")


@contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic collector off (so nothing a connection leaves is collected before it is counted), and whatever was
    garbage before collected first."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def cyclic_garbage_by_type() -> Counter[str]:
    """What a full collection frees now (objects only a cycle kept alive), counted by type; then freed."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = Counter(f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    gc.collect()  # what DEBUG_SAVEALL kept in gc.garbage: its cycles are still cycles
    return found


async def _join_and_hang_up(port: int, name: str) -> None:
    """A user opens the signaling socket (served directly: its connection's first request), joins, then hangs up
    with a close frame and waits for the server's."""
    stream, head = await open_upgraded(port)
    async with stream:
        await _join_then_close(stream, head, name)


async def _join_then_close(stream: trio.SocketStream, head: bytes, name: str) -> None:
    assert head.startswith(b"HTTP/1.1 101 "), head[:80]
    join = {"type": "join", "data": {"channel_id": "room", "display_name": name}}
    await stream.send_all(text_frame(json.dumps(join)))
    received = head
    with trio.fail_after(10):
        while b'"user_joined"' not in received:
            chunk = await stream.receive_some(65536)
            assert chunk, received[-300:]
            received += chunk
        await stream.send_all(CLOSE_FRAME)
        while await stream.receive_some(65536):  # the server's close frame, then the end of the stream
            pass


async def _wait_until_no_connection_but_the_scrape(port: int) -> None:
    with trio.fail_after(15):
        while await metric(port, "callsd_http_connections_open") != 1.0:
            await trio.sleep(0.05)


async def test_closed_connections_are_freed_by_reference_counting_alone(start_server) -> None:  # type: ignore[no-untyped-def]
    info, _control = await start_server(media=False)
    port = info.http_port
    await _join_and_hang_up(port, "warm")  # first use builds what lives as long as the server (caches, the call)
    assert (await http_request(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1"))[0] == 200
    await _wait_until_no_connection_but_the_scrape(port)
    with collector_off():
        cyclic_garbage_by_type()  # the start-up's and the warm-up's, if any
        for user in range(USERS):
            await _join_and_hang_up(port, f"user{user}")
        for _ in range(REQUESTS):
            assert (await http_request(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1"))[0] == 200
        await _wait_until_no_connection_but_the_scrape(port)
        garbage = cyclic_garbage_by_type()
    left = {name: count for name, count in garbage.items() if name.startswith(CONNECTION_MODULES)}
    assert not left, f"closed connections left cycles: {left} (all cyclic garbage: {garbage.most_common(30)})"
