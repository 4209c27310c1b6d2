"""quart-trio's WebSocket connection without its hold on the last received message.

quart-trio 0.12's ``TrioASGIWebsocketConnection.handle_messages`` keeps the last ASGI event and its text in its
frame while it waits for the next one: on a signaling socket that has gone quiet after the client's SDP answer
(~4–5 KB with audio slots, decoded to a str), that is ~5 KiB per session held for the whole call
(docs/performance.md, "Memory per session"). This subclass, installed as the app's ``asgi_websocket_class`` (Quart's
extension point), is the same loop with the references dropped once the message is handed on.
"""

from __future__ import annotations

from typing import Any

import trio
from quart.signals import websocket_received
from quart_trio.asgi import TrioASGIWebsocketConnection

__all__ = ["LeanWebsocketConnection"]


class LeanWebsocketConnection(TrioASGIWebsocketConnection):
    async def handle_messages(self, nursery: trio.Nursery, receive: Any) -> None:  # type: ignore[override]
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.receive":
                message = event.get("bytes") or event["text"]
                del event
                await websocket_received.send_async(message, _sync_wrapper=self.app.ensure_async)  # type: ignore[arg-type]
                await self.send_channel.send(message)
                del message  # not kept alive while the next receive waits
            elif kind == "websocket.disconnect":
                break
        nursery.cancel_scope.cancel()
