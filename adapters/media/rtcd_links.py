"""One rtcd host's ``MediaPlane`` shared by its control links (docs/rtcd.md).

A standalone ``callsd rtcd`` runs one plane on one UDP port and accepts several authenticated ``/ws`` links (two
``callsd serve`` processes, or a serve that reconnected). Each link opens sessions; ``LinkPlanes`` remembers which
link opened which session and hands the plane's events (every media event names its session) to that link only. A
session id already held by another link is refused (its ``open`` is ignored with a warning: ids are random, so
this is a client bug, not a collision). When a link ends, every session it opened is closed in the plane: a serve
that went away leaves nothing running.

Public API
    links = LinkPlanes()
    plane = MediaPlane(config, links.emit)
    view = links.attach(plane)            # one per link: the plane as that link may drive it
    await serve_plane_rpc(stream, view, view.pipe)
    links.detach(view)                    # closes the link's sessions
    links.sessions, links.calls           # for /system
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from callsd.core.calls import outputs as out
from callsd.core.calls.state import Route

from .events import MediaEvent
from .remote import EventPipe

if TYPE_CHECKING:
    from .plane import MediaPlane

__all__ = ["LinkPlanes", "LinkPlane"]

log = logging.getLogger("callsd.rtcd.links")


class LinkPlane:
    """The shared plane as one link drives it: records which sessions (and calls) are this link's."""

    def __init__(self, owner: LinkPlanes, plane: MediaPlane, number: int) -> None:
        self.owner = owner
        self.plane = plane
        self.number = number
        self.pipe = EventPipe()
        self.sessions: dict[str, str] = {}  # session id -> channel id

    @property
    def address(self) -> tuple[str, int] | None:
        return self.plane.address

    def media_counters(self) -> dict[str, int]:
        return self.plane.media_counters()

    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        holder = self.owner.holder.get(session_id)
        if holder is not None and holder is not self:
            log.warning("link %d opened session %s held by link %d: ignored", self.number, session_id, holder.number)
            return
        self.owner.holder[session_id] = self
        self.sessions[session_id] = channel_id
        self.plane.open_session(session_id, channel_id, simulcast)

    def _mine(self, session_id: str) -> bool:
        return session_id in self.sessions

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        if self._mine(session_id):
            self.plane.handle_signal(session_id, msg)

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        if self._mine(session_id):
            self.plane.set_screen_stream(session_id, stream_id)

    def apply(self, outputs: Iterable[out.OutputEvent]) -> None:
        self.plane.apply(outputs)

    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None:
        self.plane.restore_routes(routes)

    def close_session(self, session_id: str) -> None:
        if self.sessions.pop(session_id, None) is not None:
            self.owner.holder.pop(session_id, None)
            self.plane.close_session(session_id)


class LinkPlanes:
    """See the module docstring."""

    def __init__(self) -> None:
        self.holder: dict[str, LinkPlane] = {}
        self.links: list[LinkPlane] = []
        self._number = 0

    def emit(self, event: MediaEvent) -> None:
        link = self.holder.get(event.session_id)
        if link is not None:
            link.pipe.emit(event)

    def attach(self, plane: MediaPlane) -> LinkPlane:
        self._number += 1
        link = LinkPlane(self, plane, self._number)
        self.links.append(link)
        return link

    def detach(self, link: LinkPlane) -> None:
        for session_id in list(link.sessions):
            link.close_session(session_id)
        if link in self.links:
            self.links.remove(link)

    @property
    def sessions(self) -> int:
        return len(self.holder)

    @property
    def calls(self) -> int:
        return len({channel for link in self.links for channel in link.sessions.values()})
