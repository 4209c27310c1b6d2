"""Snapshots: the whole machine state as a versioned, JSON-able dict, and back.

A snapshot lets a server restart (or the replay tool start) without replaying the log from the first record:
``restore(snapshot at seq N)`` followed by the records after N gives the same machine as replaying every record
(property_tests check it). The format, version 1::

    {"v": 1,
     "config": {"max_participants": 0, "reconnect_window_ms": 30000, "allow_screen_sharing": true},
     "calls": [{"channel_id": ..., "call_id": ..., "started_at": ms, "host_id": ..., "screen_sharer": id|null,
                "screen_stream_id": id|null, "ever": [session ids, first-join order],
                "participants": [{"session_id": ..., "user_id": ..., "joined_at": ms, "muted": bool,
                                  "video": bool, "hand_raised_at": ms|null, "reconnect_deadline": ms|null,
                                  "tracks": [[track_id, kind], ...]}, ...]}, ...]}

Lists keep the machine's orders (calls by start, participants by join, tracks by publish), which the outputs
depend on. This module knows the state (``state.py``), not the machine: ``machine.py`` imports it for
``snapshot()``/``restore()``, and ``checkpoint.py`` wraps a machine's snapshot with the log position it reflects.
"""

from __future__ import annotations

from typing import Any

from ..errors import RemoteProtocolError
from .events import TrackKind
from .state import Call, Config, Participant

__all__ = ["SNAPSHOT_VERSION", "SnapshotError", "dump_state", "load_state"]

SNAPSHOT_VERSION = 1


class SnapshotError(RemoteProtocolError):
    """A snapshot document is malformed or of an unknown version."""


def dump_state(config: Config, calls: list[Call]) -> dict[str, Any]:
    return {
        "v": SNAPSHOT_VERSION,
        "config": {
            "max_participants": config.max_participants,
            "reconnect_window_ms": config.reconnect_window_ms,
            "allow_screen_sharing": config.allow_screen_sharing,
        },
        "calls": [
            {
                "channel_id": c.channel_id,
                "call_id": c.call_id,
                "started_at": c.started_at,
                "host_id": c.host_id,
                "screen_sharer": c.screen_sharer,
                "screen_stream_id": c.screen_stream_id,
                "ever": list(c.ever),
                "participants": [
                    {
                        "session_id": p.session_id,
                        "user_id": p.user_id,
                        "joined_at": p.joined_at,
                        "muted": p.muted,
                        "video": p.video,
                        "hand_raised_at": p.hand_raised_at,
                        "reconnect_deadline": p.reconnect_deadline,
                        "tracks": [[t, k.value] for t, k in p.tracks.items()],
                    }
                    for p in c.participants.values()
                ],
            }
            for c in calls
        ],
    }


def _get(d: Any, key: str, kind: type | tuple[type, ...], where: str, *, nullable: bool = False) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SnapshotError(f"{where}: missing {key!r}")
    value = d[key]
    if value is None and nullable:
        return None
    bad_bool = isinstance(value, bool) and kind is int
    if bad_bool or not isinstance(value, kind):
        raise SnapshotError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def load_state(data: Any) -> tuple[Config, list[Call]]:
    """Parse ``dump_state``'s output; raises ``SnapshotError`` naming the bad path."""
    if not isinstance(data, dict):
        raise SnapshotError("snapshot: expected an object")
    if data.get("v") != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot: unknown version {data.get('v')!r}")
    cfg = _get(data, "config", dict, "snapshot")
    config = Config(
        max_participants=_get(cfg, "max_participants", int, "config"),
        reconnect_window_ms=_get(cfg, "reconnect_window_ms", int, "config"),
        allow_screen_sharing=_get(cfg, "allow_screen_sharing", bool, "config"),
    )
    calls: list[Call] = []
    seen_sessions: set[str] = set()
    seen_channels: set[str] = set()
    for i, cd in enumerate(_get(data, "calls", list, "snapshot")):
        where = f"calls[{i}]"
        c = Call(
            channel_id=_get(cd, "channel_id", str, where),
            call_id=_get(cd, "call_id", str, where),
            started_at=_get(cd, "started_at", int, where),
            host_id=_get(cd, "host_id", str, where),
            screen_sharer=_get(cd, "screen_sharer", str, where, nullable=True),
            screen_stream_id=_get(cd, "screen_stream_id", str, where, nullable=True),
        )
        if c.channel_id in seen_channels:
            raise SnapshotError(f"{where}: second call in channel {c.channel_id!r}")
        seen_channels.add(c.channel_id)
        for sid in _get(cd, "ever", list, where):
            if not isinstance(sid, str):
                raise SnapshotError(f"{where}.ever: expected session ids, got {sid!r}")
            c.ever[sid] = None
        for j, pd in enumerate(_get(cd, "participants", list, where)):
            pwhere = f"{where}.participants[{j}]"
            p = Participant(
                session_id=_get(pd, "session_id", str, pwhere),
                user_id=_get(pd, "user_id", str, pwhere),
                joined_at=_get(pd, "joined_at", int, pwhere),
                muted=_get(pd, "muted", bool, pwhere),
                video=_get(pd, "video", bool, pwhere),
                hand_raised_at=_get(pd, "hand_raised_at", int, pwhere, nullable=True),
                reconnect_deadline=_get(pd, "reconnect_deadline", int, pwhere, nullable=True),
            )
            for t in _get(pd, "tracks", list, pwhere):
                if not (isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) and t[0] not in p.tracks):
                    raise SnapshotError(f"{pwhere}.tracks: bad entry {t!r}")
                try:
                    p.tracks[t[0]] = TrackKind(t[1])
                except ValueError:
                    raise SnapshotError(f"{pwhere}.tracks: unknown kind {t[1]!r}") from None
            if p.session_id in seen_sessions:
                raise SnapshotError(f"{pwhere}: session {p.session_id!r} is in two places")
            seen_sessions.add(p.session_id)
            if p.session_id not in c.ever:
                raise SnapshotError(f"{pwhere}: session {p.session_id!r} missing from ever")
            c.participants[p.session_id] = p
        if not c.participants:
            raise SnapshotError(f"{where}: a call without participants")
        if c.host_id not in c.participants:
            raise SnapshotError(f"{where}: host {c.host_id!r} is not a participant")
        if c.screen_sharer is not None and c.screen_sharer not in c.participants:
            raise SnapshotError(f"{where}: screen sharer {c.screen_sharer!r} is not a participant")
        calls.append(c)
    return config, calls
