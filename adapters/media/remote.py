"""The media plane over a stream: a small RPC between ``callsd serve`` (signaling, call core) and ``callsd rtcd``
(one media worker). The server's side, ``RemotePlane``, implements the hub's ``MediaPlaneLike``; the worker's side,
``serve_plane_rpc``, drives a real ``MediaPlane``.

Public API
----------
    # worker (callsd rtcd)
    pipe = EventPipe()
    plane = MediaPlane(rtc_config, pipe.emit)
    await serve_plane_rpc(stream, plane, pipe)     # returns when the server closes the stream
    # server
    remote = RemotePlane(stream, emit, name="worker 0")
    address = await nursery.start(remote.serve)    # the worker's bound RTC (host, port); returns when the link dies
    remote.open_session / handle_signal / set_screen_stream / apply / close_session / restore_routes  (never block)
    remote.counters                                 # the worker's plane + endpoint counters (last snapshot)
    await remote.refresh_counters()                 # ask for a fresh snapshot (bounded wait)

Wire format
-----------
Each frame is a 4-byte big-endian length then that many bytes of UTF-8 JSON (an object). Server → worker frames
have an ``op``: ``open {sid, channel}``, ``signal {sid, msg, action}``, ``screen {sid, stream}``, ``apply
{outputs}``, ``restore {routes}``, ``close {sid}``, ``counters {id}``. Routing outputs travel in the core's own
output codec (``core.eventlog.encode_output``/``decode_output``): no second codec. Worker → server frames have an
``ev``: ``ready {address}`` (first), the media events of ``adapters.media.events`` by class name with their fields,
``SignalRejected {sid, action, reason}``, ``counters {id, values}``.

A call that cannot raise across a process: ``handle_signal`` on the worker may raise ``SdpRejected``; the worker
sends it back as a ``SignalRejected`` event, in order with the answer and track events of the same session, and
the server turns it into the ``sdp_rejected`` error the in-process plane's exception produces.

The server never waits for the worker: every call puts a frame on an unbounded queue that a send task drains.
When the stream breaks (the worker died), ``RemotePlane`` logs it, emits ``MediaStateChanged(state="disconnected")``
and ``SessionClosed``, both with reason ``media_worker_lost``, for every session it still holds (the call is told
at once, so clients restart ICE seconds before their own checks would notice; the hub unpublishes their tracks),
answers later signals
with ``SignalRejected`` and keeps its last counters; ``serve`` then returns.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Protocol

import trio
from callsd.core.calls import outputs as out
from callsd.core.calls.eventlog import decode_output, encode_output
from callsd.core.calls.events import TrackKind
from callsd.core.calls.state import Route

if TYPE_CHECKING:
    from .plane import MediaPlane

from .events import (
    MediaEvent,
    MediaStateChanged,
    SendSignal,
    SessionClosed,
    SessionConnected,
    SignalRejected,
    TrackPublished,
    TrackUnpublished,
    VoiceActivity,
)

__all__ = ["RemotePlane", "serve_plane_rpc", "EventPipe", "SignalRejected", "RpcError", "WORKER_LOST",
           "read_frame", "write_frame"]

log = logging.getLogger("callsd.media.remote")

MAX_FRAME = 16 << 20  # an SDP is at most 1 MiB (the WebSocket limit); a batch of routing outputs is far smaller
WORKER_LOST = "media_worker_lost"


class RpcError(Exception):
    """The peer sent a frame this side cannot read (too long, not JSON, not an object)."""


_EVENTS: dict[str, type[MediaEvent]] = {
    cls.__name__: cls
    for cls in (SendSignal, TrackPublished, TrackUnpublished, SessionConnected, SessionClosed, VoiceActivity,
                SignalRejected, MediaStateChanged)
}


def encode_media_event(event: MediaEvent) -> dict[str, Any]:
    d: dict[str, Any] = {"ev": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        d[f.name] = value.value if isinstance(value, TrackKind) else value
    return d


def decode_media_event(d: dict[str, Any]) -> MediaEvent:
    cls = _EVENTS[d["ev"]]
    kw = {f.name: d[f.name] for f in fields(cls)}
    if cls is TrackPublished:
        kw["kind"] = TrackKind(kw["kind"])
    return cls(**kw)


# -- framing -------------------------------------------------------------------------------------------------------


def frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


async def write_frame(stream: trio.abc.SendStream, obj: dict[str, Any]) -> None:
    await stream.send_all(frame(obj))


class _Reader:
    """Splits a byte stream into JSON frames."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def next(self) -> dict[str, Any] | None:
        """The next frame, or None at a clean end of stream."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from(">I", self.buf)
                if n > MAX_FRAME:
                    raise RpcError(f"frame of {n} bytes")
                if len(self.buf) >= 4 + n:
                    body = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    try:
                        obj = json.loads(body)
                    except ValueError as exc:
                        raise RpcError(f"frame is not JSON: {exc}") from None
                    if not isinstance(obj, dict):
                        raise RpcError("frame is not an object")
                    return obj
            chunk = await self.stream.receive_some(1 << 16)
            if not chunk:
                if self.buf:
                    raise RpcError("stream ended inside a frame")
                return None
            self.buf += chunk


async def read_frame(reader: _Reader) -> dict[str, Any] | None:
    return await reader.next()


async def _send_loop(stream: trio.abc.SendStream, queue: trio.MemoryReceiveChannel[bytes]) -> None:
    """Drain the queue into the stream, coalescing what is queued into one write."""
    async for data in queue:
        parts = [data]
        while True:
            try:
                parts.append(queue.receive_nowait())
            except trio.WouldBlock:
                break
        await stream.send_all(b"".join(parts))


# -- worker side ---------------------------------------------------------------------------------------------------


class EventPipe:
    """The worker plane's ``emit``: queues its events for ``serve_plane_rpc`` (never re-enters the plane)."""

    def __init__(self) -> None:
        self.send, self.recv = trio.open_memory_channel[MediaEvent](math.inf)

    def emit(self, event: MediaEvent) -> None:
        self.send.send_nowait(event)


class RpcServedPlane(Protocol):
    """What ``serve_plane_rpc`` drives: a ``MediaPlane``, or one link's view of a shared one (rtcd_links.py)."""

    @property
    def address(self) -> tuple[str, int] | None: ...
    def media_counters(self) -> dict[str, int]: ...
    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None: ...
    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None: ...
    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None: ...
    def apply(self, outputs: Iterable[out.OutputEvent]) -> None: ...
    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None: ...
    def close_session(self, session_id: str) -> None: ...




async def serve_plane_rpc(stream: trio.abc.Stream, plane: RpcServedPlane | MediaPlane, pipe: EventPipe) -> None:
    """Serve one server connection: apply its calls to ``plane`` (already serving), send back ``pipe``'s events.

    Sends ``ready {address}`` first. Returns when the server closes the stream (the worker then exits).
    """
    send_q, recv_q = trio.open_memory_channel[bytes](math.inf)
    address = list(plane.address) if plane.address else None
    send_q.send_nowait(frame({"ev": "ready", "address": address}))

    def reject(sid: str, action: str, reason: str) -> None:
        pipe.emit(SignalRejected(session_id=sid, action=action, reason=reason))

    def on_signal(d: dict[str, Any]) -> None:
        try:
            plane.handle_signal(d["sid"], d["msg"])
        except Exception as exc:  # SdpRejected, or a plane failure: the server answers sdp_rejected either way
            reject(d["sid"], d.get("action") or "sdp", str(exc))

    handlers: dict[str, Callable[[dict[str, Any]], None]] = {
        "open": lambda d: plane.open_session(d["sid"], d["channel"], bool(d.get("simulcast", True))),
        "signal": on_signal,
        "screen": lambda d: plane.set_screen_stream(d["sid"], d["stream"]),
        "apply": lambda d: plane.apply([decode_output(o) for o in d["outputs"]]),
        "restore": lambda d: plane.restore_routes(_routes_added(d["routes"])),
        "close": lambda d: plane.close_session(d["sid"]),
        "counters": lambda d: send_q.send_nowait(frame({"ev": "counters", "id": d.get("id"),
                                                        "values": plane.media_counters()})),
    }

    async def events() -> None:
        async for e in pipe.recv:
            send_q.send_nowait(frame(encode_media_event(e)))

    reader = _Reader(stream)

    async def sender(scope: trio.CancelScope) -> None:
        try:
            await _send_loop(stream, recv_q)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            scope.cancel()  # the server is gone

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender, nursery.cancel_scope)
        nursery.start_soon(events)
        while True:
            try:
                d = await reader.next()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, RpcError) as exc:
                log.warning("rpc link failed: %r", exc)
                d = None
            if d is None:
                break
            handler = handlers.get(d.get("op", ""))
            if handler is None:
                log.warning("unknown rpc op %r", d.get("op"))
                continue
            try:
                handler(d)
            except Exception:  # a bad frame or a plane bug: keep serving the other calls
                log.exception("rpc %s failed", d.get("op"))
        nursery.cancel_scope.cancel()


# -- server side ---------------------------------------------------------------------------------------------------


def _route_added(r: Route | out.RouteAdded) -> out.RouteAdded:
    if isinstance(r, out.RouteAdded):
        return r
    return out.RouteAdded(channel_id=r.channel_id, track_id=r.track_id, kind=r.kind, publisher_id=r.publisher_id,
                           receiver_id=r.receiver_id, paused=r.paused)


def _routes_added(encoded: list[Any]) -> list[out.RouteAdded]:
    """The ``restore`` op's routes (``RouteAdded`` in the core's codec); anything else is a bad frame."""
    routes: list[out.RouteAdded] = []
    for item in encoded:
        route = decode_output(item)
        if not isinstance(route, out.RouteAdded):
            raise RpcError(f"restore carries only RouteAdded, got {type(route).__name__}")
        routes.append(route)
    return routes


class RemotePlane:
    """``MediaPlaneLike`` over a stream to one ``callsd rtcd`` (see the module docstring). Nothing here blocks."""

    def __init__(self, stream: trio.abc.Stream, emit: Callable[[MediaEvent], None], *, name: str = "worker") -> None:
        self.stream = stream
        self.name = name
        self._emit = emit
        self._send_q, self._recv_q = trio.open_memory_channel[bytes](math.inf)
        self.sessions: set[str] = set()
        self.alive = True
        # placement (router.py): a media worker always accepts and reports no load; an rtcd host's poller
        # (rtcd_hosts.py) sets these from its /system and from DNS
        self.accepting = True
        self.cpu_load = 0.0
        self.draining = False
        self.reports_counters = True  # False for a shared rtcd host: its packets are not this server's metrics
        self.address: tuple[str, int] | None = None
        self._counters: dict[str, int] = {}
        self._counter_id = 0
        self._counter_wait: dict[int, trio.Event] = {}

    # -- MediaPlaneLike ----------------------------------------------------------------------------------------
    def _put(self, obj: dict[str, Any]) -> None:
        if self.alive:
            self._send_q.send_nowait(frame(obj))

    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        self.sessions.add(session_id)
        self._put({"op": "open", "sid": session_id, "channel": channel_id, "simulcast": simulcast})

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        action = "ice" if msg.get("type") == "candidate" else "sdp"
        if not self.alive:
            self._emit(SignalRejected(session_id=session_id, action=action, reason="media worker unavailable"))
            return
        self._put({"op": "signal", "sid": session_id, "msg": msg, "action": action})

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        self._put({"op": "screen", "sid": session_id, "stream": stream_id})

    def apply(self, outputs: Iterable[out.OutputEvent]) -> None:
        routing = [encode_output(o) for o in outputs if isinstance(o, out.RoutingChange)]
        if routing:
            self._put({"op": "apply", "outputs": routing})

    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None:
        encoded = [encode_output(_route_added(r)) for r in routes]
        if encoded:
            self._put({"op": "restore", "routes": encoded})

    def close_session(self, session_id: str) -> None:
        self.sessions.discard(session_id)
        self._put({"op": "close", "sid": session_id})

    # -- counters ----------------------------------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        """The worker's plane and endpoint counters as of its last report (kept after it died: they are totals)."""
        return dict(self._counters) if self.reports_counters else {}

    def media_counters(self) -> dict[str, int]:
        return self.counters

    async def refresh_counters(self, timeout: float = 1.0) -> None:
        """Ask the worker for its counters and wait (at most ``timeout`` s) for the answer."""
        if not self.alive or not self.reports_counters:
            return
        self._counter_id += 1
        done = self._counter_wait[self._counter_id] = trio.Event()
        self._put({"op": "counters", "id": self._counter_id})
        with trio.move_on_after(timeout):
            await done.wait()
        self._counter_wait.pop(self._counter_id, None)

    # -- serving -----------------------------------------------------------------------------------------------
    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Pump the link until it breaks; reports the worker's RTC address once it said ``ready``."""
        reader = _Reader(self.stream)
        reason = "closed the link"
        try:
            first = await reader.next()
            if first is None or first.get("ev") != "ready":
                raise RpcError(f"expected ready, got {first!r}")
            address = first.get("address")
            self.address = (str(address[0]), int(address[1])) if address else None
            task_status.started(self.address)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender, nursery.cancel_scope)
                while True:
                    d = await reader.next()
                    if d is None:
                        break
                    self._on_frame(d)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, RpcError, OSError) as group:
            reason = f"failed: {group.exceptions[0]!r}"
        self.lost(reason)

    async def _sender(self, scope: trio.CancelScope) -> None:
        try:
            await _send_loop(self.stream, self._recv_q)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            scope.cancel()  # the reader sees the end too; lost runs once in serve

    def _on_frame(self, d: dict[str, Any]) -> None:
        kind = d.get("ev")
        if kind == "counters":
            self._counters = {k: int(v) for k, v in d.get("values", {}).items()}
            for i, ev in list(self._counter_wait.items()):
                if i <= int(d.get("id") or 0):
                    ev.set()
            return
        try:
            event = decode_media_event(d)
        except (KeyError, TypeError, ValueError):
            log.warning("%s sent an unreadable event %r", self.name, d)
            return
        self._emit(event)

    def lost(self, reason: str) -> None:
        """The link ended (``serve`` calls it; so does whoever ran ``serve`` when the link ended by an exception
        that cancelled it): every session it held is reported closed, once, and the plane is never used again."""
        if not self.alive:
            return
        self.alive = False
        for ev in self._counter_wait.values():
            ev.set()
        lost = sorted(self.sessions)
        log.error("media %s %s: reporting its %d sessions closed; it will not be used again", self.name, reason,
                  len(lost))
        self.sessions.clear()
        for sid in lost:  # the pair a local plane emits when a connected peer closes: the client restarts ICE now
            self._emit(MediaStateChanged(session_id=sid, state="disconnected", reason=WORKER_LOST, detail=""))
            self._emit(SessionClosed(session_id=sid, reason=WORKER_LOST))
