"""Leases on event streams: who may append to a call's log, at which epoch, until when (docs/adr/0016).

One row per stream in ``call_leases(stream, owner, epoch, expires_at)``. Rules, each one SQL statement:

- *acquire*: insert the row at epoch 1, or take an expired one at ``epoch + 1``. A live lease (even the same
  owner's) is not taken: the holder renews. Epochs only grow, because the row is never deleted.
- *renew*: push ``expires_at`` on, only while the lease is still this owner's, at this epoch, and unexpired. An
  expired lease is never revived: its next owner, even the same node, acquires a new epoch and rebuilds from the log.
- *release*: expire it now (same epoch), so another node can take it at once (drain, SIGTERM).

``expires_at`` is set and compared by the database's clock (``clock_timestamp()``), the one clock all nodes share.
A node cannot read that clock without a round trip, so it keeps a *local deadline* by its own monotonic clock:
the moment it *sent* the request, plus the lease, minus a margin for clock-rate error. Since the database granted
the lease after the request was sent, the local deadline falls before the database's expiry, so a node that obeys
its deadline stops acting before any other node can acquire the lease; and if it does not (paused by SIGSTOP, a GC,
a swapped-out page), the database refuses its appends anyway (postgres.py). The argument is in the ADR.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Lease", "StaleLease", "acquire", "renew", "release", "DEFAULT_MARGIN"]

DEFAULT_MARGIN = 0.2  # fraction of the lease a node gives up to clock-rate error and scheduling (min 0.5 s)
MIN_MARGIN_S = 0.5


class StaleLease(RuntimeError):
    """The database refused a write: the writer's lease is not the stream's live lease any more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    stream: str
    owner: str
    epoch: int
    seconds: float
    expires_at: datetime.datetime  # the database's clock
    local_deadline: float  # this process's monotonic clock: stop acting for the stream at this instant
    margin: float

    def live(self, now: float) -> bool:
        """Whether the holder may still act, by its own monotonic clock ``now``."""
        return now < self.local_deadline

    @property
    def requested_at(self) -> float:
        """The monotonic instant the request that granted (or last renewed) this lease was sent: its age counts
        from here, however long the holder then took to start using it (rebuilding a call from its log)."""
        return self.local_deadline - self.seconds + _given_up(self.seconds, self.margin)


def _given_up(seconds: float, margin: float) -> float:
    """The seconds at the end of a lease its holder does not use (clock-rate error and scheduling)."""
    return max(MIN_MARGIN_S, seconds * margin)


def _deadline(sent: float, seconds: float, margin: float) -> float:
    return sent + seconds - _given_up(seconds, margin)


_ACQUIRE = """
INSERT INTO call_leases AS held (stream, owner, epoch, expires_at)
VALUES (%(stream)s, %(owner)s, 1, clock_timestamp() + make_interval(secs => %(seconds)s))
ON CONFLICT (stream) DO UPDATE
    SET owner = excluded.owner, epoch = held.epoch + 1, expires_at = excluded.expires_at
    WHERE held.expires_at <= clock_timestamp()
RETURNING epoch, expires_at
"""

_RENEW = """
UPDATE call_leases SET expires_at = clock_timestamp() + make_interval(secs => %(seconds)s)
WHERE stream = %(stream)s AND owner = %(owner)s AND epoch = %(epoch)s AND expires_at > clock_timestamp()
RETURNING epoch, expires_at
"""

_RELEASE = """
UPDATE call_leases SET expires_at = LEAST(expires_at, clock_timestamp())
WHERE stream = %(stream)s AND owner = %(owner)s AND epoch = %(epoch)s
"""


def acquire(conn: Any, stream: str, owner: str, seconds: float, *, margin: float,
            now: Callable[[], float]) -> Lease | None:
    """The stream's lease for ``owner`` (a new epoch), or None while another lease on it is live."""
    if seconds <= 0:
        raise ValueError("a lease lasts a positive number of seconds")
    sent = now()
    row = conn.execute(_ACQUIRE, {"stream": stream, "owner": owner, "seconds": seconds}).fetchone()
    if row is None:
        return None
    return Lease(stream=stream, owner=owner, epoch=int(row[0]), seconds=seconds, expires_at=row[1],
                 local_deadline=_deadline(sent, seconds, margin), margin=margin)


def renew(conn: Any, lease: Lease, *, now: Callable[[], float]) -> Lease | None:
    """``lease`` extended by its length from now, or None if it is lost (taken, released or expired)."""
    sent = now()
    row = conn.execute(_RENEW, {"stream": lease.stream, "owner": lease.owner, "epoch": lease.epoch,
                                "seconds": lease.seconds}).fetchone()
    if row is None:
        return None
    return Lease(stream=lease.stream, owner=lease.owner, epoch=lease.epoch, seconds=lease.seconds,
                 expires_at=row[1], local_deadline=_deadline(sent, lease.seconds, lease.margin), margin=lease.margin)


def release(conn: Any, lease: Lease) -> None:
    conn.execute(_RELEASE, {"stream": lease.stream, "owner": lease.owner, "epoch": lease.epoch})
