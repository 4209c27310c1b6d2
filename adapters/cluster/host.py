"""``CallHost``: one channel's calls hosted on this node, for as long as this node holds the channel's lease.

Hosting a channel = its lease (a new epoch, adapters/store/pg_leases.py) + its log stream fenced by that lease +
a recorder rebuilt from the stream (checkpoint + tail, verified: adapters/store/startup.py) + a ``SignalingHub`` on
that recorder + a ``LeaseKeeper``. The core instance of the channel runs here only: every input of the call, from
this node's clients or relayed ones, goes through this hub, so the pure machine sees one ordered stream.

It stops acting (closes every socket it serves with ``MOVED``, stops its hub) at the first of: the keeper declares
the lease lost (refused, or the local deadline passed: ADR 0016's claim 1), the log refuses an append (a stale
epoch: claim 2, the hub's ``on_fatal``), or the node stops.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import trio
from callsd.adapters.signaling import SignalingHub
from callsd.adapters.store.lease_keeper import LeaseKeeper, RenewalConnection
from callsd.adapters.store.pg_timing import StoreTiming
from callsd.adapters.store.postgres import PostgresStore
from callsd.adapters.store.recorder import CallRecorder
from callsd.adapters.store.startup import LogRefused, open_verified

from .directory import stream_of
from .link import MOVED

__all__ = ["CallHost", "MakeHub", "open_host"]

log = logging.getLogger("callsd.cluster")


class MakeHub(Protocol):
    """The app's hub factory: a hub on ``recorder`` with the server's settings, configured and recovered."""

    def __call__(self, recorder: CallRecorder) -> SignalingHub: ...


class CallHost:
    def __init__(self, channel_id: str, store: PostgresStore, recorder: CallRecorder, hub: SignalingHub,
                 renewals: RenewalConnection | None = None) -> None:
        assert store.fence is not None
        self.channel_id = channel_id
        self.store = store
        self.recorder = recorder
        self.hub = hub
        self.epoch = store.fence.epoch
        self.keeper = LeaseKeeper(store, shared=renewals)
        self.stopped = trio.Event()  # set once it no longer acts for the channel
        self.why = ""
        self.release_when_stopped = False  # drain: expire the lease at once, so another node takes over now
        self.ended = trio.Event()  # run() has returned: the store is closed
        self._scope: trio.CancelScope | None = None

    @property
    def live(self) -> bool:
        """Whether this node may still act for the channel: not stopped, and the lease's local deadline not passed
        (checked before every send, so a node resuming from a pause acts on nothing before its keeper runs)."""
        fence = self.store.fence
        return not self.stopped.is_set() and fence is not None and fence.live(time.monotonic())

    def stop(self, why: str) -> None:
        """Stop acting for the channel now: nothing more is sent to its clients; the hub is cancelled."""
        if self.stopped.is_set():
            return
        self.why = why
        self.stopped.set()
        log.warning("channel %s (epoch %d): stopped hosting: %s", self.channel_id, self.epoch, why)
        self.hub.close_all(MOVED, "call moved")
        if self._scope is not None:
            self._scope.cancel()

    async def _release_when_idle(self, idle_seconds: float) -> None:
        """No call and no socket for ``idle_seconds``: give the channel up (release the lease, close its two
        database connections) instead of renewing it forever; the next join hosts it again wherever it lands."""
        idle_since: float | None = None
        while True:
            await trio.sleep(min(idle_seconds / 2, 5.0))
            if self.hub.machine.calls() or self.hub.open_connections:
                idle_since = None
            elif idle_since is None:
                idle_since = trio.current_time()
            elif trio.current_time() - idle_since >= idle_seconds:
                await self.hub.flush()
                self.release_when_stopped = True
                self.stop("idle")
                return

    async def run(self, *, idle_seconds: float = 0,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.hub.on_fatal = lambda exc: self.stop(f"the log refused a write: {exc!r}")
        try:
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.hub.run)
                    await nursery.start(self.keeper.run)
                    if idle_seconds > 0:
                        nursery.start_soon(self._release_when_idle, idle_seconds)
                    task_status.started()
                    await self.keeper.lost.wait()
                    self.stop(f"lease lost: {self.keeper.why}")
        finally:
            self.stop("node stopping")
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close)
            self.ended.set()

    def _close(self) -> None:
        try:
            if self.release_when_stopped:
                self.store.release_lease()
        except Exception as exc:  # the lease then expires on its own, a few seconds later
            log.warning("channel %s: releasing the lease failed: %r", self.channel_id, exc)
        finally:
            self.store.close()


def _acquire(url: str, channel_id: str, node_id: str, lease_seconds: float,
             timing: StoreTiming | None) -> tuple[PostgresStore, CallRecorder] | None:
    """Worker thread: the channel's lease and its rebuilt recorder, or None while another node holds it."""
    store = PostgresStore(url, stream=stream_of(channel_id))
    store.timing = timing
    try:
        if store.acquire_lease(node_id, lease_seconds) is None:
            store.close()
            return None
        return store, open_verified(store, group_commit=True, checkpoint_every=1000)
    except BaseException:
        store.close()
        raise


async def open_host(url: str, channel_id: str, node_id: str, lease_seconds: float,
                    make_hub: MakeHub, timing: StoreTiming | None = None,
                    renewals: RenewalConnection | None = None) -> CallHost | None:
    """Take the channel's lease and rebuild its calls from the log; None if another node's lease is live or the
    stream cannot be served (logged)."""
    try:
        got = await trio.to_thread.run_sync(_acquire, url, channel_id, node_id, lease_seconds, timing)
    except LogRefused as exc:
        log.error("channel %s: cannot host: %s", channel_id, exc)
        return None
    if got is None:
        return None
    store, recorder = got
    try:
        hub = make_hub(recorder)
    except BaseException:
        store.close()
        raise
    assert store.fence is not None
    log.info("channel %s: hosting at epoch %d (log up to seq %d)", channel_id, store.fence.epoch, recorder.seq)
    return CallHost(channel_id, store, recorder, hub, renewals)

