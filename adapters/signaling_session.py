"""The pieces of a signaling session the hub is built from: the interfaces it depends on, its settings and
counters, and the per-socket ``Connection``.

``Transport``, ``MediaPlaneLike``, ``Recorder`` and ``Authorize`` are small ``typing.Protocol``s (hypercorn style):
the hub never imports Quart, the media plane, the store or the app's token code, so it runs in tests on memory
transports, without media (``NullMediaPlane``) and in open mode (``open_authorize``). Each protocol lists everything
the hub calls, so nothing is probed with ``getattr``/``hasattr``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from callsd.core.calls.state import Route

from .signaling_names import clean_display_name
from .signaling_protocol import RequestId, SignalingError, TokenBucket

if TYPE_CHECKING:
    from .signaling_linger import Deferred

__all__ = ["Transport", "MediaPlaneLike", "NullMediaPlane", "Recorder", "Authorize", "open_authorize",
           "OutboxItem", "TurnCredentials", "HubSettings", "HubCounters", "Connection"]


class Transport(Protocol):
    """One client WebSocket as the hub sees it; the server adapts Quart's ``websocket`` to this."""

    async def receive(self) -> str | bytes | None: ...  # None once the socket is closed

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class MediaPlaneLike(Protocol):
    """The part of ``adapters.media.plane.MediaPlane`` the hub uses."""

    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None: ...

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None: ...

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None: ...

    def apply(self, outputs: Iterable[out.OutputEvent]) -> None: ...  # uses the ``RoutingChange``s

    def close_session(self, session_id: str) -> None: ...

    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None: ...  # idempotent; see reconnect

    async def refresh_counters(self, timeout: float = 1.0) -> None: ...  # before a metrics scrape

    def media_counters(self) -> dict[str, int]: ...  # every plain-int counter of the plane, as /metrics reads them


class NullMediaPlane:
    """Stands in when the server runs without media: records what it was asked, answers SDP with an error."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        self.calls.append(("open_session", (session_id, channel_id)))

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        self.calls.append(("handle_signal", (session_id, msg)))
        if msg.get("type") == "offer":
            raise SignalingError("media_unavailable", "this server runs without a media plane")

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        self.calls.append(("set_screen_stream", (session_id, stream_id)))

    def apply(self, outputs: Iterable[out.OutputEvent]) -> None:
        routing = [o for o in outputs if isinstance(o, out.RoutingChange)]
        if routing:
            self.calls.append(("apply", routing))

    def close_session(self, session_id: str) -> None:
        self.calls.append(("close_session", session_id))

    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None:
        restored = list(routes)
        if restored:
            self.calls.append(("restore_routes", restored))

    async def refresh_counters(self, timeout: float = 1.0) -> None:
        """Nothing to fetch."""

    def media_counters(self) -> dict[str, int]:
        return {}


class Recorder(Protocol):
    """The machine plus its log (adapters/store/recorder.py ``CallRecorder``). ``handle`` advances the machine at
    once; the record of input ``seq`` is durable once ``durable_seq >= seq``. A synchronous recorder keeps
    ``durable_seq == seq`` and its ``commit_loop`` is never started (``group_commit`` False)."""

    @property
    def seq(self) -> int: ...

    @property
    def durable_seq(self) -> int: ...

    @property
    def group_commit(self) -> bool: ...

    def handle(self, event: ev.InputEvent) -> list[out.OutputEvent]: ...

    async def wait_durable(self, seq: int) -> None: ...

    async def commit_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...


class Authorize(Protocol):
    """Who is joining: the user id for a ``join``/``reconnect`` to ``channel_id`` (``data`` is the message's data,
    ``query_token`` the socket URL's ``token``). Raises ``SignalingError`` (code = the reason) to refuse. The server
    passes the token checker of app/auth.py in token mode; adapters never import the app."""

    def __call__(self, *, channel_id: str, data: dict[str, Any], query_token: str | None, now_s: float,
                 action: str) -> str: ...


def open_authorize(*, channel_id: str, data: dict[str, Any], query_token: str | None, now_s: float,
                   action: str) -> str:
    """Open mode: the user id is the ``display_name`` the client chose, or a generated guest name."""
    raw = data.get("display_name")
    if raw is None or raw == "":
        return "guest-" + secrets.token_hex(2)
    if not isinstance(raw, str):
        raise SignalingError("bad_request", f"{action}: \"display_name\" must be a string", action)
    return clean_display_name(raw, action)


OutboxItem = tuple[str, bool]
"""An event waiting for a client: its text, and whether it is lazy (``LAZY_EVENTS``: it may wait for company)."""

TurnCredentials = Callable[[str, float], tuple[str, str]]
"""(session id, now in s) -> TURN REST (username, password); the server binds the shared secret and the TTL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSettings:
    auth_mode: str = "open"  # "open" | "token" (reported in ``hello``; who may join is ``Authorize``'s answer)
    ice_servers: tuple[dict[str, Any], ...] = ()
    rate: float = 10.0
    burst: int = 100
    server_version: str = "0"
    simulcast: bool = True  # calls.enable_simulcast, told to clients in ``join_ack`` (they publish layers if true)


class HubCounters:
    """Plain counters read by the metrics collector at scrape time."""

    def __init__(self) -> None:
        self.ws_connections_total = 0
        self.ws_connections_open = 0
        self.ws_events: Counter[tuple[str, str]] = Counter()  # (direction, type) -> n
        self.ws_closed_slow = 0
        self.ws_frames_out = 0  # WebSocket frames sent (below the events sent when several share a batch frame)
        self.store_ops: Counter[str] = Counter()
        self.rtc_sessions_total = 0
        self.rtc_conn_states: Counter[str] = Counter()
        self.rtc_errors: Counter[str] = Counter()


class Connection:
    """One WebSocket: its session id (changes on ``reconnect``), its call, its outbox and its rate limiter;
    ``action`` and ``request_id`` are the type and ``id`` of the message being handled (the id is set only while it
    is handled: direct replies echo it, later events do not). ``batches`` is set once the client asked for ``batch``
    frames (protocol 1.3) on a socket whose transport may carry them (``batch_allowed``: a direct client socket,
    not a cluster relay, which reads the frames it forwards one event at a time).

    ``backlog`` is the back-pressure between what a socket sends and what the hub reads from it: the events planned
    for it (waiting for the log, ``DurableFanOut``) or queued in its outbox and not yet sent. One input fans out to
    every member of its call, so without it a call whose members all send at once (a burst of hand raises) grows
    every outbox N times faster than its writer drains it, and the slow-client rule (outbox full: 1008) closed
    clients that were reading all along (docs/adr/0027, addendum of 2026-11-29 16:40). The hub stops reading a
    socket while its backlog is at ``backlog_high`` (a quarter of the outbox) and reads again once its writer has
    sent it down to ``backlog_low``; what it waits for is this socket's own writer only, so a client that does not
    read stalls only its own input (its outbox still fills from the others' events and closes it), never the
    hub or another socket."""

    __slots__ = ("session_id", "channel_id", "user_id", "query_token", "bucket", "outbox", "scope", "close_code",
                 "close_reason", "replaced", "action", "request_id", "batch_allowed", "batches", "backlog",
                 "backlog_high", "backlog_low", "_drained", "writer_idle", "deferred")

    def __init__(self, session_id: str, query_token: str | None, bucket: TokenBucket,
                 outbox: trio.MemorySendChannel[OutboxItem], *, batch_allowed: bool = False) -> None:
        self.session_id = session_id
        self.channel_id: str | None = None
        self.user_id: str | None = None
        self.query_token = query_token
        self.bucket = bucket
        self.outbox = outbox
        self.scope: trio.CancelScope | None = None
        self.close_code = 1000
        self.close_reason = ""
        self.replaced = False
        self.action: str | None = None
        self.request_id: RequestId = None
        self.batch_allowed = batch_allowed
        self.batches = False
        self.backlog = 0  # events planned or queued for this socket, not yet sent
        self.backlog_high = max(2, int(outbox.statistics().max_buffer_size) // 4)
        self.backlog_low = self.backlog_high // 2
        self._drained: trio.Event | None = None  # set by the writer when the reader waits and the backlog is low
        # The writer waits on an empty outbox and nothing was put on it since: a lazy event may then be deferred
        # instead of waking it (adapters/signaling_linger.py, "Deferred"); the outbox keeps ``deferred``.
        self.writer_idle = False
        self.deferred: Deferred | None = None

    async def drained(self) -> None:
        """Return once the backlog is below ``backlog_high`` (at once if it is): the hub reads this socket's next
        message only then."""
        while self.backlog >= self.backlog_high:
            self._drained = trio.Event()
            await self._drained.wait()

    def sent(self, events: int) -> None:
        """The writer sent ``events`` of the backlog; wake the reader if it waits and the backlog is low."""
        self.backlog -= events
        if self._drained is not None and self.backlog <= self.backlog_low:
            self._drained.set()
            self._drained = None

    def ask_batches(self, data: dict[str, Any]) -> None:
        """A ``join``/``reconnect`` with ``batch: true`` turns batch frames on for this socket, if it may carry
        them."""
        self.batches = self.batch_allowed and data.get("batch") is True

    def finish(self, code: int, reason: str, *, within: float) -> None:
        """Close this socket once the events already queued for it are sent, or ``within`` s from now at the
        latest (a client that does not read): its outbox takes no more events, the writer ends the connection
        when it has sent the rest (a server shutdown's last events and errors reach the clients)."""
        self.close_code, self.close_reason = code, reason
        self.writer_idle = False  # nothing more is deferred: what is, the writer sends before it ends
        self.outbox.close()
        if self.scope is not None:
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + within)

    def kill(self, code: int, reason: str) -> None:
        """Close this socket soon (from any task): its nursery is cancelled and the close frame sent."""
        self.close_code, self.close_reason = code, reason
        if self.scope is not None:
            self.scope.cancel()
