"""``LeaseKeeper``: keep a PostgreSQL store's lease alive from a Trio task, and say when it is lost, on time.

The owner of a call acts for it only while it holds the call's lease (docs/adr/0016, "Why split brain cannot
happen"). The keeper renews the lease a third of its length after the request that granted it was sent (not
after the keeper got round to it), on a connection of its own (a renewal must not
queue behind a commit in flight), in a worker thread (psycopg blocks; the event loop must not). It declares the
lease lost, by setting ``lost``, at the first of:

- a renewal the database refuses (the lease was taken, released, or expired);
- the lease's *local deadline* passing with no successful renewal: the database may be unreachable or the renewal
  stuck behind a lock, and by the argument of ADR 0016 the node must stop before the database's expiry, whether or
  not it ever hears back. A renewal still in flight then is abandoned (its thread finishes on its own; if it
  succeeds late, the lease merely expires later, and the node has already stopped acting).

The owner waits on ``lost`` and stops acting for the call at once (the cluster closes its clients' links); the
database refuses its appends in any case.

A node hosting many channels gives their keepers one ``RenewalConnection`` instead of a connection each (one
PostgreSQL connection per hosted channel plus two per node, instead of two per channel): renewals are one short
UPDATE each, taken in turn. A renewal stuck behind another only makes it late, which the local deadline covers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import trio

from . import pg_leases
from .pg_leases import Lease
from .postgres import PostgresStore

__all__ = ["LeaseKeeper", "RenewalConnection"]

RENEW_FRACTION = 1 / 3  # renew after this fraction of the lease: two more tries before the local deadline


class RenewalConnection:
    """One autocommit connection shared by the lease keepers of a node, one renewal at a time (worker threads)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def renew(self, lease: Lease) -> Lease | None:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                return pg_leases.renew(self._conn, lease, now=time.monotonic)
            except psycopg.OperationalError:  # a broken connection: the next renewal opens a new one
                self._conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


class LeaseKeeper:
    def __init__(self, store: PostgresStore, *, renew_fraction: float = RENEW_FRACTION,
                 shared: RenewalConnection | None = None) -> None:
        if store.fence is None:
            raise ValueError("the store holds no lease to keep")
        self.store = store
        self.renew_fraction = renew_fraction
        self.lost = trio.Event()
        self.why = ""  # why the lease was lost, for the log line
        self.renewals = 0
        self.shared = shared  # the node's renewal connection; None: the keeper's own
        self._conn: psycopg.Connection[Any] | None = None
        self._in_flight = False  # a renewal is running in a worker thread
        self._done = False  # run() has returned: the last renewal closes the connection
        self._started = 0.0  # time.monotonic() when the last renewal's thread began (for the log line of a loss)
        self._woke = 0.0  # time.monotonic() when the task last woke to renew (likewise)

    def _renew(self, lease: Lease) -> Lease | None:
        """Worker thread: one renewal on the keeper's own connection. An abandoned renewal (see the module
        docstring) closes the connection itself when it ends, since the keeper may be gone by then."""
        self._in_flight = True
        self._started = time.monotonic()
        try:
            started = time.perf_counter()
            if self.shared is not None:
                renewed = self.shared.renew(lease)
            else:
                if self._conn is None or self._conn.closed:
                    self._conn = self.store.connect()
                renewed = pg_leases.renew(self._conn, lease, now=time.monotonic)
            if self.store.timing is not None:
                self.store.timing.observe("renew_lease", time.perf_counter() - started)
            return renewed
        finally:
            self._in_flight = False
            if self._done and self._conn is not None:
                self._conn.close()

    def _lose(self, why: str) -> None:
        self.why = why
        self.lost.set()

    def _no_answer(self, lease: Lease) -> str:
        """Why a renewal never came back, in numbers: a task or a thread that started late (the process starved of
        CPU, its event loop busy) or a database that answered late (a lock, a slow commit)."""
        due = lease.requested_at + lease.seconds * self.renew_fraction
        if self._woke < due:
            return f"the keeper's task had not woken {time.monotonic() - due:.2f} s after the renewal was due"
        if not self._in_flight or self._started < due:
            return (f"the keeper's task woke {self._woke - due:.2f} s after the renewal was due; its thread had not "
                    f"started {time.monotonic() - self._woke:.2f} s later")
        return (f"no answer: the renewal's task woke {self._woke - due:.2f} s and its thread started "
                f"{self._started - due:.2f} s after it was due, then waited "
                f"{time.monotonic() - self._started:.2f} s for the database")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew until the lease is lost (then return, ``lost`` set) or the task is cancelled."""
        task_status.started()
        retry_at = -math.inf  # after a failed renewal: not again before this (Trio's clock)
        try:
            while True:
                lease = self.store.fence
                if lease is None:
                    return self._lose("released")
                # Trio's clock and time.monotonic() count seconds from the same source; only their "now" differs.
                to_trio = trio.current_time() - time.monotonic()
                deadline = lease.local_deadline + to_trio
                # Due a fraction of the lease after its request was sent, not after this loop got here: a host that
                # took a second to rebuild its call from the log, or a renewal that came back late, must not push
                # the next renewal past the local deadline (under load a 2 s lease was lost 0.4 s after hosting).
                renew_at = max(lease.requested_at + lease.seconds * self.renew_fraction + to_trio, retry_at)
                with trio.move_on_at(deadline):
                    await trio.sleep_until(renew_at)
                    self._woke = time.monotonic()
                    try:
                        renewed = await trio.to_thread.run_sync(self._renew, lease, abandon_on_cancel=True)
                    except psycopg.Error as exc:  # unreachable: keep trying until the deadline
                        self.why = f"renewal failed: {' '.join(str(exc).split())}"
                        retry_at = trio.current_time() + lease.seconds * self.renew_fraction
                        continue
                    if renewed is None:
                        return self._lose(f"the database refused to renew epoch {lease.epoch}: taken or expired")
                    self.store.fence = renewed
                    self.renewals += 1
                    continue
                return self._lose(f"local deadline passed without a renewal ({self.why or self._no_answer(lease)})")
        finally:
            self._done = True
            if self._conn is not None and not self._in_flight:
                self._conn.close()
