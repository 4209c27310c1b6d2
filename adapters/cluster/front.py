"""One client socket on a cluster node: greet it, learn its channel, and pipe it to that channel's owner.

The client sees the protocol of a single server (docs/protocol.md): this node sends ``hello``, then the first
``join`` or ``reconnect`` names the channel; frames before it wait (at most ``PENDING_MAX``). The socket is then
served by the channel's ``CallHost`` — here (``_serve_here``: the hub reads the client's frames directly) or on the
owner node over a relay link (``_serve_there``, adapters/cluster/link.py). When the owner stops acting for the call
(it died, lost its lease, drained) the socket stays open: the front finds the new owner and resumes the session
there with the ``reconnect`` the client would have sent (its ``reconnect_secret`` is valid on every node, the key
being derived from ``cluster.secret``); the client gets ``join_ack`` with ``reconnected: true`` and renegotiates
media, as after any reconnect.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import trio
from callsd.adapters.signaling_protocol import encode, peek
from callsd.adapters.signaling_session import Transport
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from .host import CallHost
from .link import CLIENT_CODES, LINK_HEADER, LINK_PATH, unwrap, wrap

__all__ = ["DRAINING_CLOSE", "Remote", "Router", "serve_client"]

log = logging.getLogger("callsd.cluster")

PENDING_MAX = 32  # frames a client may send before naming its channel
QUEUE = 256
RETRY_PAUSE = 0.25
UNDELIVERED_TIMEOUT = 30.0  # a client's first frames wait this long for a reachable owner
JOIN_ACK = '{"type":"join_ack"'
DRAINING_CLOSE = 1012  # RFC 6455 "service restart": this node is going away, reconnect (through the balancer)


@dataclass(frozen=True, slots=True)
class Remote:
    advertise: str
    epoch: int  # 0: ask the node to host the channel


class Router(Protocol):
    """What the front needs of its node (adapters/cluster/node.py)."""

    link_key: str
    link_ssl: ssl.SSLContext | None  # relay links over TLS (wss://), verifying the owner's certificate
    counters: Any
    draining: trio.Event  # set when the node drains: its clients are closed with DRAINING_CLOSE

    def new_id(self) -> str: ...

    def hello(self, session_id: str) -> dict[str, Any]: ...

    async def route(self, channel_id: str) -> CallHost | Remote: ...

    async def live_epoch(self, channel_id: str) -> int | None: ...

    @property
    def watch_every(self) -> float: ...


@dataclass(slots=True)
class _Session:
    """What the front knows of the client's session (from the ``join_ack``s it passed on)."""

    query_token: str | None
    counters: Any
    session_id: str = ""
    channel_id: str = ""
    reconnect_secret: str = ""
    client_code: int = 0  # the owner closed the client on purpose with this code
    gone: bool = False  # the client's socket closed
    pending: list[str | bytes] = field(default_factory=list)
    resuming: bool = False  # the front sent a reconnect for the client: its join_ack completes the move
    routed: str = ""  # the channel this socket is served for now
    switch_to: str = ""  # the client joined another channel: serve the socket there next

    def other_channel(self, frame: str | bytes) -> bool:
        """A ``join`` of another channel than the one served: the socket moves to that channel's owner (each
        channel's calls run only under its own lease), the frame is kept for it."""
        channel = _channel_of(frame)
        if channel is None or channel == self.routed:
            return False
        self.switch_to = channel
        self.pending = [frame]
        return True

    def saw(self, text: str) -> None:
        if text.startswith(JOIN_ACK):
            data = json.loads(text)["data"]
            if self.resuming and data.get("reconnected"):
                self.resuming = False
                self.counters.resumed += 1
            self.session_id, self.channel_id = data["session_id"], data["channel_id"]
            self.reconnect_secret = data.get("reconnect_secret", "")


def _channel_of(frame: str | bytes) -> str | None:
    try:
        msg = json.loads(frame)
        if msg.get("type") in ("join", "reconnect"):
            channel = msg.get("data", {}).get("channel_id")
            return channel if isinstance(channel, str) and channel else None
    except (ValueError, AttributeError):
        pass
    return None


async def serve_client(node: Router, client: Transport, query_token: str | None) -> None:
    """Serve one client socket until it closes (or the owner closes it on purpose)."""
    hello_id = node.new_id()
    await client.send(encode("hello", node.hello(hello_id)))
    session = _Session(query_token, node.counters)
    send_q, recv_q = trio.open_memory_channel[str | bytes](QUEUE)

    async def read_client() -> None:
        async with send_q:
            try:
                while (frame := await client.receive()) is not None:
                    await send_q.send(frame)
            except Exception as exc:  # a transport error is a closed socket
                log.debug("receive from a client failed: %r", exc)

    async def close_when_draining(scope: trio.CancelScope) -> None:
        await node.draining.wait()
        session.client_code = session.client_code or DRAINING_CLOSE
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_client)
        nursery.start_soon(close_when_draining, nursery.cancel_scope)
        channel = None
        async for frame in recv_q:
            kind, request_id = peek(frame)
            if kind == "ping":  # answered here: no call needed for it
                await client.send(encode("pong", {}, request_id))
                continue
            session.pending.append(frame)
            channel = _channel_of(frame)
            if channel is not None:
                break
            if len(session.pending) > PENDING_MAX:
                session.client_code = 1008
                await client.send(encode("error", {"code": "not_joined", "message": "send join or reconnect first",
                                                   "action": kind}, request_id))
                break
        if channel is not None:
            await _follow_owner(node, client, session, channel, hello_id, recv_q)
        nursery.cancel_scope.cancel()
    if session.client_code:
        with trio.move_on_after(2):
            await client.close(session.client_code, "this node is draining: reconnect"
                               if session.client_code == DRAINING_CLOSE else "closed by the server")


async def _follow_owner(node: Router, client: Transport, session: _Session, channel: str, conn_id: str,
                        recv_q: trio.MemoryReceiveChannel[str | bytes]) -> None:
    give_up = trio.current_time() + UNDELIVERED_TIMEOUT
    while not session.gone and not session.client_code:
        session.routed, session.switch_to = channel, ""
        target = await node.route(channel)
        if isinstance(target, CallHost):
            await _serve_here(target, client, session, conn_id, recv_q)
        else:
            await _serve_there(node, target, client, session, conn_id, recv_q)
        if session.gone or session.client_code:
            return
        if session.switch_to:  # a new join elsewhere: not a resume
            channel, conn_id = session.switch_to, node.new_id()
            session.session_id = session.channel_id = session.reconnect_secret = ""
            continue
        if not session.session_id:
            if session.pending and trio.current_time() < give_up:  # not delivered yet (the owner was unreachable)
                await trio.sleep(RETRY_PAUSE)
                continue
            session.client_code = 1012  # never joined, or no owner reachable: let the client start again
            return
        # The owner is gone: resume the session on the next one, as the client's own reconnect would.
        session.resuming = True
        conn_id = node.new_id()
        session.pending = [encode("reconnect", {"session_id": session.session_id, "channel_id": session.channel_id,
                                                "reconnect_secret": session.reconnect_secret,
                                                **({"token": session.query_token} if session.query_token else {})})]
        channel = session.channel_id
        await trio.sleep(RETRY_PAUSE)


class _HereTransport:
    """The hub's ``Transport`` for a client of a call hosted on this node."""

    def __init__(self, host: CallHost, client: Transport, session: _Session,
                 recv_q: trio.MemoryReceiveChannel[str | bytes]) -> None:
        self.host, self.client, self.session, self.recv_q = host, client, session, recv_q
        self.code = 0

    async def receive(self) -> str | bytes | None:
        if self.session.pending:
            return self.session.pending.pop(0)
        try:
            frame = await self.recv_q.receive()
        except trio.EndOfChannel:
            self.session.gone = True
            return None
        return None if self.session.other_channel(frame) else frame

    async def send(self, text: str) -> None:
        if not self.host.live:
            raise RuntimeError("this node no longer hosts the call")
        self.session.saw(text)
        try:
            await self.client.send(text)
        except Exception:
            self.session.gone = True
            raise

    async def close(self, code: int, reason: str) -> None:
        self.code = code


async def _serve_here(host: CallHost, client: Transport, session: _Session, conn_id: str,
                      recv_q: trio.MemoryReceiveChannel[str | bytes]) -> None:
    transport = _HereTransport(host, client, session, recv_q)
    async with trio.open_nursery() as nursery:
        async def watch() -> None:
            await host.stopped.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await host.hub.serve_connection(transport, query_token=session.query_token, session_id=conn_id,
                                        greet=False)
        nursery.cancel_scope.cancel()
    if transport.code in CLIENT_CODES:
        session.client_code = transport.code


async def _serve_there(node: Router, target: Remote, client: Transport, session: _Session, conn_id: str,
                       recv_q: trio.MemoryReceiveChannel[str | bytes]) -> None:
    channel = session.routed
    query = {"channel": channel, "session": conn_id,
             "epoch": str(target.epoch), **({"token": session.query_token} if session.query_token else {})}
    url = f"{'wss' if node.link_ssl else 'ws'}://{target.advertise}{LINK_PATH}?{urlencode(query)}"
    closed: list[int] = []  # the link's close code, once it ended

    async def guarded(step: Any, scope: trio.CancelScope) -> None:
        try:
            await step()
        except ConnectionClosed as exc:
            closed.append(exc.reason.code if exc.reason is not None else 1006)
        except (OSError, RuntimeError) as exc:  # the client's socket broke
            log.debug("client of a relay link failed: %r", exc)
            session.gone = True
        scope.cancel()

    try:
        async with open_websocket_url(url, extra_headers=[(LINK_HEADER.encode(), node.link_key.encode())],
                                      ssl_context=node.link_ssl, connect_timeout=3, disconnect_timeout=1) as ws:
            with trio.fail_after(5):
                epoch, _ = unwrap(await ws.get_message())
            node.counters.relayed_out += 1

            async def upstream() -> None:
                for frame in session.pending:
                    await ws.send_message(wrap(epoch, frame if isinstance(frame, str) else frame.decode()))
                session.pending = []
                async for frame in recv_q:
                    if session.other_channel(frame):
                        return
                    await ws.send_message(wrap(epoch, frame if isinstance(frame, str) else frame.decode()))
                session.gone = True

            async def downstream() -> None:
                while True:
                    got, frame = unwrap(await ws.get_message())
                    if got != epoch:  # a stale owner (or not a link frame): never pass it on
                        log.warning("relay link to %s: frame of epoch %d on a link of epoch %d: dropped",
                                    target.advertise, got, epoch)
                        return
                    session.saw(frame)
                    await client.send(frame)

            async def watch_lease() -> None:
                """A paused or cut-off owner keeps its sockets open: the lease, not the link, says when it is
                gone (or when another node took the call over)."""
                while True:
                    await trio.sleep(node.watch_every)
                    try:
                        now = await node.live_epoch(channel)
                    except Exception:  # the database is away: the owner cannot renew either; keep watching
                        continue
                    if now != epoch:
                        log.info("channel %s: the lease of epoch %d is %s: finding the call's owner", channel,
                                 epoch, "gone" if now is None else f"replaced by epoch {now}")
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(guarded, upstream, nursery.cancel_scope)
                nursery.start_soon(guarded, downstream, nursery.cancel_scope)
                nursery.start_soon(guarded, watch_lease, nursery.cancel_scope)
    except ConnectionClosed as exc:
        closed.append(exc.reason.code if exc.reason is not None else 1006)
    except (HandshakeError, OSError, trio.TooSlowError) as exc:
        log.info("relay link to %s failed (%r): finding the call's owner", target.advertise, exc)
        await trio.sleep(RETRY_PAUSE)
    if closed and closed[0] in CLIENT_CODES:
        session.client_code = closed[0]
