"""``MessageHandlers``: one handler per client message type (docs/protocol.md), as a table.

A handler reads the message's fields (``field_id``/``field_str`` raise ``SignalingError("bad_request")`` naming the
field), builds the core input and feeds it through the hub; most are one line (``_simple``, ``_targeted``). The few
with more to do: ``join`` (authorize, record, ack, open the media session), ``reconnect`` (the session moves to this
socket if it presents the session's reconnect secret; its media session is re-opened and given back its routes
with ``restore_routes``), ``sdp``/``ice`` (to the
plane, after the input that opened its session is durable), ``get_state`` and ``ping`` (direct replies).

The handlers depend on the hub only through ``HubPorts``, so a test can drive them with a fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine

from .signaling_media import unpublish_all
from .signaling_names import check_channel_id
from .signaling_outbox import Outbox
from .signaling_plane import PlaneEffects, routes_towards
from .signaling_protocol import SignalingError, field_id, field_str
from .signaling_reconnect import ReconnectSecrets
from .signaling_session import Connection, HubSettings

__all__ = ["MessageHandlers", "HubPorts", "Handler"]

Handler = Callable[[Connection, dict[str, Any]], None]


class HubPorts(Protocol):
    """What the handlers use of the hub."""

    @property
    def machine(self) -> CallsMachine: ...

    @property
    def settings(self) -> HubSettings: ...

    @property
    def draining(self) -> bool: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def plane_effects(self) -> PlaneEffects: ...

    @property
    def reconnect_secrets(self) -> ReconnectSecrets: ...

    def now_ms(self) -> int: ...

    def new_id(self, prefix: str) -> str: ...

    def feed(self, event: ev.InputEvent) -> list[out.OutputEvent]: ...

    def record(self, event: ev.InputEvent) -> list[out.OutputEvent]: ...

    def dispatch(self, outputs: list[out.OutputEvent]) -> None: ...

    def rejected(self, conn: Connection, outputs: list[out.OutputEvent]) -> bool: ...

    def authorize(self, conn: Connection, data: dict[str, Any], channel_id: str, action: str) -> str: ...

    def send_join_ack(self, conn: Connection, *, reconnected: bool) -> None: ...

    def send_call_state(self, conn: Connection, channel_id: str) -> None: ...


def require_joined(conn: Connection, action: str) -> str:
    """The session id of a joined connection, or ``not_joined``."""
    if conn.channel_id is None:
        raise SignalingError("not_joined", f"{action} needs a joined session: send join first", action)
    return conn.session_id


GOING_AWAY_KEEP_MS = 3_000  # how long a page that said `going_away` keeps its place (docs/protocol.md)


class MessageHandlers:
    """``table[type](conn, data)`` handles one client message (module docstring)."""

    def __init__(self, hub: HubPorts) -> None:
        self.hub = hub
        self.table: dict[str, Handler] = {
            "join": self.join,
            "reconnect": self.reconnect,
            "leave": self._simple(ev.LeaveCall),
            "sdp": self.sdp,
            "ice": self.ice,
            "mute": self._simple(ev.Mute),
            "unmute": self._simple(ev.Unmute),
            "screen_on": self.screen_on,
            "screen_off": self._simple(ev.ScreenOff),
            "video_on": self._simple(ev.VideoOn),
            "video_off": self._simple(ev.VideoOff),
            "raise_hand": self._simple(ev.RaiseHand),
            "lower_hand": self._simple(ev.LowerHand),
            "react": self.react,
            "host_make": self._targeted(ev.MakeHost),
            "host_mute": self._targeted(ev.HostMute),
            "host_mute_others": self._simple(ev.HostMuteOthers),
            "host_screen_off": self._simple(ev.HostStopScreen),
            "host_lower_hand": self._targeted(ev.HostLowerHand),
            "host_remove": self._targeted(ev.HostRemove),
            "host_end": self._simple(ev.HostEndCall),
            "get_state": self.get_state,
            "ping": self.ping,
            "going_away": self.going_away,
        }

    def _simple(self, cls: type[ev.SessionInput]) -> Handler:
        def handler(conn: Connection, data: dict[str, Any]) -> None:
            sid = require_joined(conn, conn.action or "")
            self.hub.feed(cls(at=self.hub.now_ms(), session_id=sid))

        return handler

    def _targeted(self, cls: Callable[..., ev.InputEvent]) -> Handler:
        def handler(conn: Connection, data: dict[str, Any]) -> None:
            action = conn.action or ""
            sid = require_joined(conn, action)
            target = field_id(data, "session_id", action)
            self.hub.feed(cls(at=self.hub.now_ms(), session_id=sid, target=target))

        return handler

    def join(self, conn: Connection, data: dict[str, Any]) -> None:
        hub = self.hub
        if conn.channel_id is not None:
            raise SignalingError("already_joined", f"already in the call of {conn.channel_id!r}; leave first", "join")
        channel_id = check_channel_id(field_id(data, "channel_id", "join"), "join")
        if hub.draining:
            raise SignalingError("shutting_down", "the server is shutting down; try again later", "join")
        user_id = hub.authorize(conn, data, channel_id, "join")
        outputs = hub.record(ev.JoinCall(at=hub.now_ms(), channel_id=channel_id, session_id=conn.session_id,
                                         user_id=user_id, call_id=hub.new_id("c_")))
        if hub.rejected(conn, outputs):
            return
        conn.channel_id, conn.user_id = channel_id, user_id
        conn.ask_batches(data)
        hub.send_join_ack(conn, reconnected=False)
        hub.plane_effects.open(conn.session_id, channel_id)
        hub.dispatch(outputs)

    def reconnect(self, conn: Connection, data: dict[str, Any]) -> None:
        hub = self.hub
        if conn.channel_id is not None:
            raise SignalingError("already_joined", f"already in the call of {conn.channel_id!r}", "reconnect")
        old_sid = field_id(data, "session_id", "reconnect")
        channel_id = field_id(data, "channel_id", "reconnect")
        user_id = hub.authorize(conn, data, channel_id, "reconnect")
        who = hub.machine.participant(old_sid)
        if who is None or who.channel_id != channel_id:
            raise SignalingError("unknown_session", f"session {old_sid!r} is not in the call of {channel_id!r} "
                                 "(the reconnect window may have passed): join again", "reconnect")
        if not hub.reconnect_secrets.check(old_sid, data.get("reconnect_secret")):
            raise SignalingError("bad_reconnect_secret", "reconnect needs the session's \"reconnect_secret\" from its "
                                 "join_ack; it is missing or does not match", "reconnect")
        if hub.settings.auth_mode == "token" and who.user_id != user_id:
            raise SignalingError("unauthorized", "that session belongs to another user", "reconnect")
        conns = hub.outbox.conns
        old = conns.get(old_sid)
        if old is not None and old is not conn:
            old.replaced = True
            old.channel_id = None
            old.kill(4001, "replaced")
        if who.connected:
            hub.feed(ev.Disconnect(at=hub.now_ms(), session_id=old_sid))
        outputs = hub.record(ev.Reconnect(at=hub.now_ms(), session_id=old_sid))
        if hub.rejected(conn, outputs):
            return
        if conns.get(conn.session_id) is conn:
            del conns[conn.session_id]
        conn.session_id, conn.channel_id, conn.user_id = old_sid, channel_id, who.user_id
        conn.ask_batches(data)
        conns[old_sid] = conn
        hub.send_join_ack(conn, reconnected=True)
        hub.dispatch(outputs)
        # The old peer connection is gone with the old page: unpublish its tracks, start a fresh media session and
        # give it back the routes the core still has towards it (the client's new offer publishes again).
        unpublish_all(hub.machine, hub.feed, old_sid, hub.now_ms())
        hub.plane_effects.close(old_sid)
        hub.plane_effects.open(old_sid, channel_id)
        hub.plane_effects.restore(routes_towards(hub.machine, old_sid))

    def sdp(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = require_joined(conn, "sdp")
        kind = data.get("type")
        if kind not in ("offer", "answer"):
            raise SignalingError("bad_request", "sdp: \"type\" must be \"offer\" or \"answer\"", "sdp")
        sdp = field_str(data, "sdp", "sdp", max_len=1 << 20)
        msg: dict[str, Any] = {"type": kind, "sdp": sdp}
        slots = data.get("audio_slots")
        if kind == "offer" and isinstance(slots, int) and not isinstance(slots, bool):
            msg["audio_slots"] = slots  # pre-negotiated receive sections (docs/adr/0020-receive-slots.md)
        if kind == "offer" and "slot_mids" in data:
            msg["slot_mids"] = data["slot_mids"]  # the offer's own slot sections (1.4; the plane checks them)
        self.hub.plane_effects.signal(conn, sid, msg, "sdp")

    def ice(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = require_joined(conn, "ice")
        candidate = data.get("candidate")
        if candidate is not None and not isinstance(candidate, dict | str):
            raise SignalingError("bad_request", "ice: \"candidate\" must be an object, a string or null", "ice")
        self.hub.plane_effects.signal(conn, sid, {"type": "candidate", "candidate": candidate}, "ice")

    def screen_on(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = require_joined(conn, "screen_on")
        stream_id = field_id(data, "stream_id", "screen_on")
        self.hub.feed(ev.ScreenOn(at=self.hub.now_ms(), session_id=sid, stream_id=stream_id))

    def react(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = require_joined(conn, "react")
        emoji = field_str(data, "emoji", "react", max_len=32)
        self.hub.feed(ev.React(at=self.hub.now_ms(), session_id=sid, emoji=emoji))

    def going_away(self, conn: Connection, data: dict[str, Any]) -> None:
        """The page is being closed or reloaded: keep the session's place for ``GOING_AWAY_KEEP_MS`` only (a reload
        reconnects within it; a closed tab is gone soon after). The socket's close that follows changes nothing."""
        sid = require_joined(conn, "going_away")
        self.hub.feed(ev.GoingAway(at=self.hub.now_ms(), session_id=sid, keep_ms=GOING_AWAY_KEEP_MS))

    def get_state(self, conn: Connection, data: dict[str, Any]) -> None:
        require_joined(conn, "get_state")
        assert conn.channel_id is not None
        self.hub.send_call_state(conn, conn.channel_id)

    def ping(self, conn: Connection, data: dict[str, Any]) -> None:
        self.hub.outbox.reply(conn, "pong", {})
