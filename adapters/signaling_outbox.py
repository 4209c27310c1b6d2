"""``Outbox``: the hub's session table and everything it sends to clients.

Every event for a client goes through here: ``send``/``queue`` hand it to the durable fan-out (adapters/
signaling_fanout.py), which puts it on the connection's bounded outbox once the input it follows is in the log;
``queue_now`` is that last step (also used when the log has failed and nothing else will run). A client whose outbox
is full (it does not read) is closed with 1008 rather than allowed to stall the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from .signaling_fanout import DurableFanOut
from .signaling_linger import Deferred, LingerClock
from .signaling_protocol import LAZY_EVENTS, RequestId, encode
from .signaling_session import Connection, HubCounters

__all__ = ["Outbox"]

CLOSE_FLUSH = 1.0  # seconds a socket closed by the server has to send what is queued for it


class Outbox:
    """The open connections by session id, and the one way to send them events."""

    def __init__(self, fanout: DurableFanOut, counters: HubCounters, linger: LingerClock) -> None:
        self.conns: dict[str, Connection] = {}  # session id -> its current socket
        self.fanout = fanout
        self.counters = counters
        self.linger = linger  # the hub's linger clock: lazy events for an idle writer are deferred on it
        self.log_failed = False  # set by the hub when the event log failed: errors then go out at once

    def get(self, session_id: str) -> Connection | None:
        return self.conns.get(session_id)

    def queue(self, conn: Connection, kind: str, text: str, lazy: bool | None = None) -> None:
        """Queue ``text`` for ``conn`` once everything recorded so far is durable (``DurableFanOut.do``). ``lazy``:
        it may wait a little for company in a batch frame (default: ``kind`` is one of ``LAZY_EVENTS``)."""
        conn.backlog += 1  # planned: it counts against the socket's back-pressure until it is sent
        self.fanout.do(self._planned_now, conn, kind, text, lazy)

    def _planned_now(self, conn: Connection, kind: str, text: str, lazy: bool | None) -> None:
        conn.backlog -= 1  # no longer planned; queued (and counted again) unless the outbox refuses it
        self.queue_now(conn, kind, text, lazy)

    def queue_now(self, conn: Connection, kind: str, text: str, lazy: bool | None = None) -> None:
        """Put ``text`` on ``conn``'s outbox now; a lazy event for a writer waiting on an empty outbox is deferred
        instead, without waking it (adapters/signaling_linger.py, "Deferred")."""
        is_lazy = kind in LAZY_EVENTS if lazy is None else lazy
        if is_lazy and conn.writer_idle and conn.batches:
            deferred = conn.deferred
            if deferred is None:
                deferred = conn.deferred = Deferred()
            if deferred.fits(text):
                deferred.add(text, self.linger, conn.outbox)
                conn.backlog += 1
                self.counters.ws_events["out", kind] += 1
                return
        try:
            conn.outbox.send_nowait((text, is_lazy))
            conn.writer_idle = False  # from now on, events queue behind this one
            conn.backlog += 1
            self.counters.ws_events["out", kind] += 1
        except trio.WouldBlock:
            if conn.close_code == 1000:  # count (and close) once
                self.counters.ws_closed_slow += 1
                conn.kill(1008, "too slow: outbox full")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def send(self, conn: Connection, kind: str, data: dict[str, Any], request_id: RequestId = None, *,
             lazy: bool | None = None) -> None:
        self.queue(conn, kind, encode(kind, data, request_id), lazy)

    def reply(self, conn: Connection, kind: str, data: dict[str, Any]) -> None:
        """A direct reply to the message ``conn`` is handling: it echoes the message's request ``id``."""
        self.send(conn, kind, data, conn.request_id)

    def to_sessions(self, session_ids: Iterable[str], kind: str, data: dict[str, Any]) -> None:
        """One event, encoded once, to every listed session that has a socket."""
        text = encode(kind, data)
        for sid in session_ids:
            conn = self.conns.get(sid)
            if conn is not None:
                self.queue(conn, kind, text)

    def error(self, conn: Connection, code: str, message: str, action: str | None) -> None:
        """The ``error`` event (a direct reply: it echoes the request id of the message being handled); after a log
        failure it goes out now (no later effect will run)."""
        if self.log_failed:
            self.error_now(conn, code, message, action, conn.request_id)
        else:
            self.send(conn, "error", {"code": code, "message": message, "action": action}, conn.request_id)

    def error_now(self, conn: Connection, code: str, message: str, action: str | None,
                  request_id: RequestId = None) -> None:
        self.queue_now(conn, "error", encode("error", {"code": code, "message": message, "action": action},
                                             request_id))

    def close_all(self, code: int, reason: str) -> None:
        """Close every socket after what is queued for it (``Connection.finish``, at most ``CLOSE_FLUSH`` s)."""
        for conn in list(self.conns.values()):
            conn.finish(code, reason, within=CLOSE_FLUSH)
