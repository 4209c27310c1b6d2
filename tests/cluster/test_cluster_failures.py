"""Split brain and single-handler mode on real nodes: a node paused (SIGSTOP) past its lease never acts for the
call again once resumed, and with one handler every call is hosted by it."""

from __future__ import annotations

import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest
import trio
from callsd.adapters.cluster.front import DRAINING_CLOSE
from cluster_support import cluster_node, lease_lapsed, node_metric, owner_of, peer
from trio_websocket import ConnectionClosed

pytestmark = pytest.mark.slow


def _rows_by_epoch(pg_url: str, channel: str) -> dict[int, int]:
    with psycopg.connect(pg_url, autocommit=True) as db:
        rows = db.execute("SELECT epoch, count(*) FROM events WHERE stream = %s GROUP BY epoch",
                          ("channel/" + channel,)).fetchall()
    return {int(e): int(n) for e, n in rows}


async def test_an_owner_paused_past_its_lease_does_not_act_for_the_call_again(pg_url: str, tmp_path: Path) -> None:
    lease = 2.0
    n1, n2 = (cluster_node(tmp_path, pg_url, name, lease=lease) for name in ("n1", "n2"))
    for node in (n1, n2):
        await trio.to_thread.run_sync(node.start)
    try:
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(peer(n1))  # on the owner itself
            bob = await stack.enter_async_context(peer(n2))  # relayed to it
            await alice.join("room", "alice")
            await bob.join("room", "bob")
            await alice.expect("user_joined", session_id=bob.session_id)
            assert owner_of(pg_url, "room") == ("n1", 1)

            os.kill(n1.pid, signal.SIGSTOP)
            try:
                await alice.send("raise_hand")  # waits in n1's socket: n1 wakes with this input pending
                # n2 sees n1's lease lapse, takes the call (epoch 2) and resumes bob's session there.
                resumed = await bob.expect("join_ack", timeout=4 * lease + 10)
                assert resumed["reconnected"] is True
                assert owner_of(pg_url, "room") == ("n2", 2)
                await bob.send("raise_hand")
                await bob.expect("user_raised_hand", session_id=bob.session_id)
                epoch_1_rows = _rows_by_epoch(pg_url, "room")[1]
                seen_before = len(alice.seen)
            finally:
                os.kill(n1.pid, signal.SIGCONT)

            # n1 wakes with an input and timers pending: it must not act (neither log alice's raise nor answer it).
            # Alice's socket on n1 is resumed on n2; her pending raise is either dropped (never acknowledged) or
            # forwarded behind her resume and acknowledged by n2: either way once, by the new owner.
            back = await alice.expect("join_ack", timeout=15)
            assert back["reconnected"] is True and back["session_id"] == alice.session_id
            hands = {p["session_id"]: p["raised_hand"] for p in back["state"]["participants"]}
            assert hands[bob.session_id] > 0  # the state of the new owner, not the paused one's
            after = alice.seen[seen_before:]
            assert [m["type"] for m in after][0] == "join_ack", after  # nothing from the stale owner first
            assert not [m for m in after if m["type"] == "error"], after
            await alice.send("lower_hand")
            await alice.send("raise_hand")
            await alice.send("react", {"emoji": "done"})  # after her hand inputs, in one ordered stream
            await bob.expect("user_reacted", session_id=alice.session_id)
            assert _rows_by_epoch(pg_url, "room")[1] == epoch_1_rows  # n1 wrote nothing more
            assert owner_of(pg_url, "room") == ("n2", 2)

            # A newcomer's join_ack is the owner's state once every input above is acknowledged; every broadcast
            # bob and alice got before the newcomer's user_joined must agree with it, without duplicates.
            carol = await stack.enter_async_context(peer(n2))
            final = {p["session_id"]: p["raised_hand"] > 0
                     for p in (await carol.join("room", "carol"))["state"]["participants"]}
            assert final[alice.session_id] and final[bob.session_id], final
            for who in (alice, bob):
                await who.expect("user_joined", session_id=carol.session_id)
                for sid in (alice.session_id, bob.session_id):
                    hand = [m["type"] for m in who.seen if m["type"] in ("user_raised_hand", "user_lowered_hand")
                            and m["data"]["session_id"] == sid]
                    # raised, lowered, raised...: each acknowledged input once, ending in the owner's state (none
                    # for alice about bob: his raise came while she was away; her resume's state carried it)
                    alternating = (["user_raised_hand", "user_lowered_hand"] * len(hand))[:len(hand)]
                    assert hand == alternating and (not hand or hand[-1] == "user_raised_hand"), \
                        (who.session_id, sid, hand)
            raised = [m for m in bob.seen if m["type"] == "user_raised_hand" and
                      m["data"]["session_id"] == bob.session_id]
            assert len(raised) == 1, raised  # no duplicate of an acknowledged output
            with trio.fail_after(10):  # n1 counts the lease it lost (its host ends after closing its store)
                while await trio.to_thread.run_sync(node_metric, n1.url, "callsd_cluster_lease_losses_total") != 1:
                    await trio.sleep(0.1)
            assert node_metric(n2.url, "callsd_cluster_lease_losses_total") == 0
            owned = [node_metric(n.url, "callsd_cluster_calls_owned") for n in (n1, n2)]
            assert owned == [0, 1], owned
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)


async def test_single_handler_mode_hosts_every_call_on_the_handler(pg_url: str, tmp_path: Path) -> None:
    handler = cluster_node(tmp_path, pg_url, "h1")
    others = [cluster_node(tmp_path, pg_url, name, handler=False) for name in ("r1", "r2")]
    for node in (handler, *others):
        await trio.to_thread.run_sync(node.start)
    try:
        async with AsyncExitStack() as stack:
            for k, channel in enumerate(("a", "b", "c")):
                first = await stack.enter_async_context(peer(others[k % 2]))  # the first joiner: a non-handler
                second = await stack.enter_async_context(peer(others[(k + 1) % 2]))
                ack = await first.join(channel, "first")
                assert (await second.join(channel, "second"))["call_id"] == ack["call_id"]
                assert owner_of(pg_url, channel) == ("h1", 1)
    finally:
        for node in (handler, *others):
            await trio.to_thread.run_sync(node.stop)


async def test_single_handler_mode_keeps_the_calls_of_a_dead_handler_until_it_is_back(pg_url: str,
                                                                                       tmp_path: Path) -> None:
    """The only handler is killed: no other node may host its calls, so none takes them (the non-handler's client
    keeps its socket while its node looks for a handler); the handler restarts, rebuilds the call from the log at
    the next epoch, and the client is resumed on it with what was acknowledged before the kill."""
    handler = cluster_node(tmp_path, pg_url, "h1")
    relay = cluster_node(tmp_path, pg_url, "r1", handler=False)
    for node in (handler, relay):
        await trio.to_thread.run_sync(node.start)
    try:
        async with peer(relay) as alice:
            await alice.join("room", "alice")
            await alice.send("raise_hand")
            await alice.expect("user_raised_hand", session_id=alice.session_id)
            assert owner_of(pg_url, "room") == ("h1", 1)
            await trio.to_thread.run_sync(handler.kill)
            with trio.fail_after(15):  # wait out the lease
                while not lease_lapsed(pg_url):
                    await trio.sleep(0.2)
            await trio.sleep(1.0)  # r1 routes the channel every 0.2 s meanwhile: it must not take the lease
            assert owner_of(pg_url, "room") == ("h1", 1)
            await trio.to_thread.run_sync(handler.start)
            back = await alice.expect("join_ack", timeout=20)  # the same socket, resumed on the restarted handler
            assert back["reconnected"] is True and back["session_id"] == alice.session_id
            hands = {p["session_id"]: p["raised_hand"] for p in back["state"]["participants"]}
            assert hands[alice.session_id] > 0  # acknowledged before the kill, rebuilt from the log
            assert owner_of(pg_url, "room") == ("h1", 2)
    finally:
        for node in (handler, relay):
            await trio.to_thread.run_sync(node.stop)


async def test_sigterm_hands_the_call_to_another_node_at_once(pg_url: str, tmp_path: Path) -> None:
    """Drain: the owner releases the lease instead of letting it lapse; the call moves before the lease would
    have expired; the drained node closes its own client with 1012 (reconnect), and that client reconnects
    elsewhere with its session."""
    lease = 30.0  # far longer than the hand-over may take
    n1, n2 = (cluster_node(tmp_path, pg_url, name, lease=lease) for name in ("n1", "n2"))
    for node in (n1, n2):
        await trio.to_thread.run_sync(node.start)
    try:
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(peer(n1))
            bob = await stack.enter_async_context(peer(n2))
            await alice.join("room", "alice")
            await bob.join("room", "bob")
            await bob.send("raise_hand")
            await bob.expect("user_raised_hand", session_id=bob.session_id)
            assert owner_of(pg_url, "room") == ("n1", 1)
            assert n1.proc is not None
            n1.proc.terminate()  # SIGTERM
            resumed = await bob.expect("join_ack", timeout=10)  # well within the 30 s lease
            assert resumed["reconnected"] is True
            with pytest.raises(ConnectionClosed) as closed:  # alice's node tells her to reconnect elsewhere
                await alice.expect("nothing more", timeout=10)
            reason = closed.value.reason
            assert reason is not None and reason.code == DRAINING_CLOSE, reason
            assert owner_of(pg_url, "room") == ("n2", 2)  # n2 took the released lease; n1 never took it back
            await trio.to_thread.run_sync(lambda: n1.proc.wait(timeout=20))  # type: ignore[union-attr]
            alice2 = await stack.enter_async_context(peer(n2))
            await alice2.send("reconnect", {"session_id": alice.session_id, "channel_id": "room",
                                            "reconnect_secret": alice.secret})
            back = await alice2.expect("join_ack")
            hands = {p["session_id"]: p["raised_hand"] for p in back["state"]["participants"]}
            assert back["reconnected"] is True and hands[bob.session_id] > 0
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)


async def test_an_idle_channel_is_given_up_and_hosted_again_by_the_next_join(pg_url: str, tmp_path: Path) -> None:
    n1 = cluster_node(tmp_path, pg_url, "n1", CALLSD_CLUSTER_IDLE_RELEASE_SECONDS="1")
    await trio.to_thread.run_sync(n1.start)
    try:
        async with peer(n1) as alice:
            await alice.join("room", "alice")
            await alice.send("leave")
            await alice.expect("user_left", session_id=alice.session_id)
        with trio.fail_after(15):  # no call, no socket: the lease is released (not renewed until it lapses)
            while not lease_lapsed(pg_url):
                await trio.sleep(0.2)
        async with peer(n1) as bob:
            await bob.join("room", "bob")
            assert owner_of(pg_url, "room") == ("n1", 2)  # hosted again, at the next epoch
    finally:
        await trio.to_thread.run_sync(n1.stop)
