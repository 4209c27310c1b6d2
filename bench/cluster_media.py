"""One failover run with media (bench/cluster_failover.py): three simulated users of one call on three nodes,
talking (real ICE/DTLS/SRTP legs from callsd.peer, the load tool's users), then `kill -9` of the call's owner;
how long until each user receives audio again.

User 0 joins through node A first, so A hosts the call; users 1 and 2 join through B and C (relayed to A). All three
send audio. Once every user receives both others, after a random pause in [0, lease) (so the kill falls anywhere
between two lease renewals, as a real crash would), A is killed with SIGKILL at time K. Users 1 and 2 keep their
WebSocket (their node resumes the session on the new owner and passes its ``join_ack`` on); user 0's socket drops
and reconnects with the load tool's backoff (0.25-0.5 s, then doubling) through node B, as the load balancer would
send it once A fails its health check. Each user renegotiates media with the new owner. Per user:

- ``first_audio_s``: K → the first audio packet on the user's new media leg (what a listener notices first);
- ``all_audio_s``: K → audio from both other users on the new leg (polled every 20 ms).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import trio
from callsd.app.loadtest.worker import SimUser, WorkerSpec
from callsd.peer import Identity, MediaEngine

from .cluster_nodes import Node

POLL = 0.02
USERS = 3


@dataclass(frozen=True, slots=True)
class FailoverRun:
    index: int
    owner: str
    kill_phase_s: float  # the random pause between "everyone hears everyone" and the kill
    first_audio_s: tuple[float, ...]  # per user: user 0 was on the killed node
    all_audio_s: tuple[float, ...]

    @property
    def everyone_s(self) -> float:
        """When the last user heard every other again: the call is whole."""
        return max(self.all_audio_s)


def _spec(nodes: list[Node], index: int, lease: float) -> WorkerSpec:
    return WorkerSpec(ws_url=nodes[0].ws_url, index=0, calls=[0], total_calls=1, users_per_call=USERS,
                      unmuted=USERS, screen_sharing=0, video=False, video_bitrate=0, screen_bitrate=0,
                      join_duration=0.0, duration=3600.0, t0=time.monotonic(), run_id=f"{os.getpid()}-{index}",
                      join_timeout=4 * lease + 20, channel_prefix="failover", reconnect=True,
                      ws_urls=[node.ws_url for node in nodes])


def _hears_everyone(user: SimUser) -> bool:
    leg = user.leg
    return leg is not None and sum(1 for st in leg.streams.values() if st.kind == "audio" and st.received) \
        >= USERS - 1


async def _wait(condition: object, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout) as scope:
        while not condition():  # type: ignore[operator]
            await trio.sleep(POLL)
    if scope.cancelled_caught:
        raise RuntimeError(f"timed out: {what}")


async def failover_run(nodes: list[Node], index: int, lease: float) -> FailoverRun:
    """``nodes[0]`` is the owner to kill; ``nodes[1]`` takes its users' reconnects (the balancer's choice)."""
    spec = _spec(nodes, index, lease)
    engine = MediaEngine(Identity(), delay_sample=50)
    users = [SimUser(spec, engine, 0, k) for k in range(USERS)]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.receive_loop)
        nursery.start_soon(engine.send_loop)
        nursery.start_soon(engine.maintain_loop)
        nursery.start_soon(users[0].run, stop)
        await _wait(lambda: users[0].joined, 20, "the first user joined")  # its node hosts the call
        for user in users[1:]:
            nursery.start_soon(user.run, stop)
        await _wait(lambda: all(_hears_everyone(u) for u in users), 30, "everyone hears everyone")
        phase = random.uniform(0.0, lease)
        await trio.sleep(phase)
        legs_before = [u.leg for u in users]
        await trio.to_thread.run_sync(nodes[0].kill)
        killed = time.monotonic_ns()
        users[0].ws_url = nodes[1].ws_url  # the balancer's next pick, once the dead node fails its health check
        first: list[float | None] = [None] * USERS
        every: list[float | None] = [None] * USERS
        with trio.move_on_after(6 * lease + 30):
            while None in every:
                for k, user in enumerate(users):
                    leg = user.leg
                    if leg is None or leg is legs_before[k]:
                        continue
                    if first[k] is None and leg.first_audio_ns:
                        first[k] = (leg.first_audio_ns - killed) / 1e9
                    if every[k] is None and _hears_everyone(user):
                        every[k] = (time.monotonic_ns() - killed) / 1e9
                await trio.sleep(POLL)
        stop.set()
        engine.stop_sending()
        with trio.move_on_after(3):
            while any(u.ws is not None and not u.ws.closed for u in users):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    for user in users:
        for leg in user.legs:
            leg.close()
    if None in every or None in first:
        raise RuntimeError(f"run {index}: audio did not come back for every user (first {first}, all {every}); "
                           f"user traces: {[u.trace[-8:] for u in users]}")
    return FailoverRun(index, nodes[0].name, phase, tuple(f for f in first if f is not None),
                       tuple(e for e in every if e is not None))
