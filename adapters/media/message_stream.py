"""A message transport (a WebSocket) seen as a ``trio.abc.Stream``, so the plane RPC (remote.py), written for a
byte stream with length-prefixed frames, runs unchanged over the rtcd's authenticated ``/ws`` link.

Each ``send_all`` becomes one binary message (remote.py's sender already coalesces queued frames into one write;
``max_message`` caps a write, longer ones are split into several messages, which the frame reader reassembles since
the framing is inside the bytes). ``receive_some`` returns the next message's bytes, ``b""`` once the peer closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

__all__ = ["MessageStream"]


class MessageStream(trio.abc.Stream):
    def __init__(self, send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes | None]],
                 close: Callable[[], Awaitable[None]], *, max_message: int) -> None:
        self._send = send
        self._receive = receive
        self._close = close
        self.max_message = max_message
        self._pending = b""
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        view = bytes(data)
        for start in range(0, len(view), self.max_message):
            await self._send(view[start:start + self.max_message])

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            n = max_bytes or len(self._pending)
            chunk, self._pending = self._pending[:n], self._pending[n:]
            return chunk
        if self._closed:
            return b""
        message = await self._receive()
        if message is None:
            return b""
        if max_bytes and len(message) > max_bytes:
            self._pending = message[max_bytes:]
            return message[:max_bytes]
        return message

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await self._close()
