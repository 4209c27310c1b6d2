"""``PlaneEffects``: the hub's calls into the media plane, each one a durable fan-out effect.

A plane call is an effect of an input like any event sent to a client, so it runs only once that input is in the log,
in order (adapters/signaling_fanout.py). Effects read ``self.plane`` when they run: the server sets the plane after
recovery has fed inputs. Reconnect has one mechanism: the session is closed and re-opened with no routes, then
``restore_routes`` gives it the routes the core still has towards it (``restore``); a session a media worker moved
(``SessionMoved``) gets the same call.

A signal the plane refuses (``SdpRejected`` raised in-process, or ``SignalRejected`` reported by a worker) gets one
answer, ``signal_refused``: an ``sdp_rejected`` error to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine
from callsd.core.calls.state import Route

from .signaling_fanout import DurableFanOut
from .signaling_outbox import Outbox
from .signaling_protocol import RequestId, SignalingError
from .signaling_session import Connection, HubCounters, MediaPlaneLike

__all__ = ["PlaneEffects", "routes_towards"]

log = logging.getLogger("callsd.signaling")


def routes_towards(machine: CallsMachine, session_id: str) -> list[Route]:
    """The routes the core has towards ``session_id`` (what a re-opened or moved media session must get back)."""
    channel_id = machine.channel_of(session_id)
    if channel_id is None:
        return []
    return [r for r in machine.routes(channel_id) if r.receiver_id == session_id]


class PlaneEffects:
    """Plan plane calls (see the module docstring); ``plane`` may be replaced before serving starts."""

    def __init__(self, plane: MediaPlaneLike, fanout: DurableFanOut, outbox: Outbox, counters: HubCounters, *,
                 simulcast: bool) -> None:
        self.plane = plane
        self._simulcast = simulcast  # calls.enable_simulcast: every session's plane is told (a remote host too)
        self._do = fanout.do
        self._outbox = outbox
        self._counters = counters
        self._answer_ids: dict[str, RequestId] = {}  # session -> request id of its last offer, for the answer

    def open(self, session_id: str, channel_id: str) -> None:
        self._counters.rtc_sessions_total += 1
        self._do(self._open_now, session_id, channel_id)

    def close(self, session_id: str) -> None:
        self._answer_ids.pop(session_id, None)
        self._do(self._close_now, session_id)

    def apply(self, routing: list[out.RoutingChange]) -> None:
        self._do(self._apply_now, routing)

    def screen(self, session_id: str, stream_id: str | None) -> None:
        self._do(self._screen_now, session_id, stream_id)

    def restore(self, routes: list[Route]) -> None:
        if routes:
            self._do(self._restore_now, routes)

    def signal(self, conn: Connection, session_id: str, msg: dict[str, Any], action: str) -> None:
        """Hand a client's ``sdp``/``ice`` to the plane (after the join that opened its media session). An offer's
        request id is kept for the plane's answer (``answer_id``); the latest offer's wins (a glare-ignored offer
        gets no answer)."""
        request_id = conn.request_id
        if msg.get("type") == "offer":
            self._answer_ids[session_id] = request_id
        self._do(self._signal_now, conn, session_id, msg, action, request_id)

    def answer_id(self, session_id: str) -> RequestId:
        """The request id of the offer the plane is answering now (then forgotten)."""
        return self._answer_ids.pop(session_id, None)

    def signal_refused(self, conn: Connection | None, session_id: str, action: str, reason: str,
                       request_id: RequestId = None) -> None:
        """The one answer to a refused ``sdp``/``ice``: an ``sdp_rejected`` error to the client, now."""
        log.info("media plane refused %s from %s: %s", action, session_id, reason)
        self._counters.rtc_errors["sdp"] += 1
        if conn is not None:
            self._outbox.error_now(conn, "sdp_rejected", f"the media plane could not use this {action}: {reason}"[:300],
                                   action, request_id)

    # -- the effects, run by the fan-out ---------------------------------------------------------------------------
    def _open_now(self, session_id: str, channel_id: str) -> None:
        self.plane.open_session(session_id, channel_id, self._simulcast)

    def _close_now(self, session_id: str) -> None:
        self.plane.close_session(session_id)

    def _apply_now(self, routing: list[out.RoutingChange]) -> None:
        self.plane.apply(routing)

    def _screen_now(self, session_id: str, stream_id: str | None) -> None:
        self.plane.set_screen_stream(session_id, stream_id)

    def _restore_now(self, routes: list[Route]) -> None:
        self.plane.restore_routes(routes)

    def _signal_now(self, conn: Connection, session_id: str, msg: dict[str, Any], action: str,
                    request_id: RequestId) -> None:
        try:
            self.plane.handle_signal(session_id, msg)
        except SignalingError as exc:
            self._outbox.error_now(conn, exc.code, exc.message, exc.action or action, request_id)
        except Exception as exc:  # the plane refused the SDP (or failed): tell the client, keep the server up
            self.signal_refused(conn, session_id, action, str(exc), request_id)
