"""Steps the call machine's handlers share, on plain state: deriving routes, and the small changes that several
commands make (mute, stop a screen share, lower a hand), each returning the outputs it caused.

Pure functions over ``state.Call``/``state.Participant``; only ``machine.py`` calls them, inside a handler that has
already checked its guards. Orders are the machine's fixed output order (module docstring of ``machine``):
publishers in join order, tracks in publish order, receivers in join order.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import events as ev
from . import outputs as out
from .state import Call, Participant, Route

__all__ = ["route_paused", "tracks_of", "routes_of", "set_muted", "stop_screen", "lower_hand"]

Outputs = list[out.OutputEvent]


def route_paused(publisher: Participant, kind: ev.TrackKind) -> bool:
    """The routing rule: a route is paused exactly when its track is audio and its publisher is muted."""
    return kind is ev.TrackKind.AUDIO and publisher.muted


def tracks_of(c: Call, *, exclude: str) -> Iterator[tuple[Participant, str, ev.TrackKind]]:
    """Every published track of the call except ``exclude``'s: publishers in join order, tracks in publish order."""
    for q in c.participants.values():
        if q.session_id != exclude:
            for track_id, kind in q.tracks.items():
                yield q, track_id, kind


def routes_of(c: Call) -> Iterator[Route]:
    """The call's forwarding table as a function of its state: every track to every other participant."""
    for q in c.participants.values():
        for track_id, kind in q.tracks.items():
            for r in c.participants:
                if r != q.session_id:
                    yield Route(
                        channel_id=c.channel_id,
                        track_id=track_id,
                        kind=kind,
                        publisher_id=q.session_id,
                        receiver_id=r,
                        paused=route_paused(q, kind),
                    )


def set_muted(c: Call, p: Participant, muted: bool, *, by: str) -> Outputs:
    """Mute or unmute ``p`` and pause or resume its audio routes; no output when nothing changes."""
    if p.muted == muted:
        return []
    p.muted = muted
    result: Outputs = [
        out.Muted(channel_id=c.channel_id, session_id=p.session_id, by=by)
        if muted
        else out.Unmuted(channel_id=c.channel_id, session_id=p.session_id)
    ]
    route_event = out.RoutePaused if muted else out.RouteResumed
    for track_id, kind in p.tracks.items():
        if kind is ev.TrackKind.AUDIO:
            for r in c.participants:
                if r != p.session_id:
                    result.append(
                        route_event(channel_id=c.channel_id, track_id=track_id, publisher_id=p.session_id, receiver_id=r)
                    )
    return result


def stop_screen(c: Call, sharer: str, *, by: str) -> Outputs:
    """End ``sharer``'s screen share (the caller checked that it is the call's sharer)."""
    c.screen_sharer = None
    c.screen_stream_id = None
    return [out.ScreenStopped(channel_id=c.channel_id, session_id=sharer, by=by)]


def lower_hand(c: Call, p: Participant, *, by: str) -> Outputs:
    """Lower ``p``'s raised hand; no output when it is not raised (a late duplicate of a click)."""
    if p.hand_raised_at is None:
        return []
    p.hand_raised_at = None
    return [out.HandLowered(channel_id=c.channel_id, session_id=p.session_id, by=by)]
