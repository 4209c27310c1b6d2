"""A quiet signaling socket does not keep the last message it received alive (app/quart_ws.py).

After a client's last message (typically its SDP answer) a call can stay quiet for an hour; whatever still
references that message's text is memory per session for the whole call. The test sends one large message (a type
the server refuses, so nothing of it is kept on purpose), waits for the refusal, and looks in tracemalloc's live
allocations for anything of the message's size.
"""

from __future__ import annotations

import gc
import json
import tracemalloc

import trio

BIG = 300_000


async def test_the_last_received_message_is_not_kept_alive(start_server, connect):  # type: ignore[no-untyped-def]
    info, _control = await start_server(media=False)
    tracemalloc.start()
    try:
        async with connect(info) as client:
            await client.ws.send_message(json.dumps({"type": "no_such_type", "data": {"pad": "x" * BIG}}))
            assert await client.expect("error")
            await trio.sleep(0)  # let the server's receive loops reach their next wait
            gc.collect()
            held = [t for t in tracemalloc.take_snapshot().traces if t.size >= BIG // 2]
            assert not held, [str(t.traceback) for t in held]
    finally:
        tracemalloc.stop()
