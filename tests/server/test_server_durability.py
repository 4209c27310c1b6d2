"""Group commit and durable fan-out (docs/adr/0006): the hub acts on an input only once its record is on disk.

These run the real hub over a real ``CallRecorder(group_commit=True)`` and ``SqliteStore``, with in-memory client
sockets and a recording media plane. A store whose commit waits on a gate the test holds shows what happens while a
record is not yet durable: nothing a client or the plane can observe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from callsd.adapters.media.events import TrackPublished
from callsd.adapters.signaling import NullMediaPlane, SignalingHub
from callsd.adapters.store import CallRecorder, SqliteStore
from callsd.core.calls import events as ev
from hub_support import GatedAppends, MemoryTransport, connected, group_commit_hub


class GatedStore(GatedAppends, SqliteStore):
    """A SqliteStore whose commits the test holds, or fails (hub_support.GatedAppends)."""


def _hub(tmp_path: Path) -> tuple[SignalingHub, CallRecorder, GatedStore, NullMediaPlane]:
    store = GatedStore(tmp_path / "log.db")
    hub, recorder, plane = group_commit_hub(store)
    return hub, recorder, store, plane


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked(0.01)


def _plane_kinds(plane: NullMediaPlane) -> list[str]:
    return [name for name, _ in plane.calls]


async def test_nothing_is_sent_or_applied_before_the_record_is_durable(tmp_path: Path) -> None:
    hub, recorder, store, plane = _hub(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await connected(hub, nursery), await connected(hub, nursery)
        try:
            # A join while the disk holds its commit: the machine has it, nobody sees it.
            store.gate.clear()
            await a.push("join", {"channel_id": "c"})
            await a.push("ping")
            with trio.fail_after(10):
                while recorder.seq < 1:
                    await trio.sleep(0.005)
            await _settle()
            assert recorder.machine.participant(a.sent[0]["data"]["session_id"]) is not None
            assert recorder.durable_seq == 0 and store.last_seq() == 0
            assert a.types() == ["hello"]  # neither the join_ack nor the pong that followed it
            assert "open_session" not in _plane_kinds(plane)
            store.gate.set()
            await a.wait_for("pong")
            assert a.types() == ["hello", "join_ack", "call_start", "user_joined", "pong"]
            assert _plane_kinds(plane) == ["open_session"]
            assert store.appends == [[1]]

            await b.push("join", {"channel_id": "c"})
            await b.settle()
            await a.wait_for("user_joined", 2)
            await a.settle()

            # A track published while the commit is held: no route reaches the plane, no event the clients.
            store.gate.clear()
            seen_a, seen_b = len(a.sent), len(b.sent)
            hub.emit(TrackPublished(session_id=a.sent[0]["data"]["session_id"], track_id="mic-a",
                                    kind=ev.TrackKind.AUDIO))
            with trio.fail_after(10):
                while recorder.seq < 3:
                    await trio.sleep(0.005)
            await _settle()
            assert "apply" not in _plane_kinds(plane)
            assert (len(a.sent), len(b.sent)) == (seen_a, seen_b)
            store.gate.set()
            with trio.fail_after(10):
                while "apply" not in _plane_kinds(plane):
                    await trio.sleep(0.005)
            routes = plane.calls[_plane_kinds(plane).index("apply")][1]
            assert [(r.track_id, r.receiver_id) for r in routes] == [("mic-a", b.sent[0]["data"]["session_id"])]
            assert store.last_seq() == 3
        finally:
            store.gate.set()
        nursery.cancel_scope.cancel()
    store.close()


async def test_concurrent_inputs_share_commits_and_keep_their_order(tmp_path: Path) -> None:
    hub, recorder, store, plane = _hub(tmp_path)
    clients = [MemoryTransport() for _ in range(8)]
    rounds = 30
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        for c in clients:
            nursery.start_soon(hub.serve_connection, c)
        for c in clients:
            await c.wait_for("hello")
            await c.push("join", {"channel_id": "c"})
            await c.wait_for("join_ack")

        async def act(c: MemoryTransport) -> None:
            for i in range(rounds):
                await c.push("raise_hand" if i % 2 == 0 else "lower_hand")

        commits_before, seq_before = recorder.commits, recorder.seq
        async with trio.open_nursery() as senders:
            for c in clients:
                senders.start_soon(act, c)
        with trio.fail_after(20):
            while recorder.seq < seq_before + len(clients) * rounds:
                await trio.sleep(0.005)
        await hub.flush()
        inputs = recorder.seq - seq_before
        assert inputs == len(clients) * rounds
        assert 0 < recorder.commits - commits_before < inputs  # group commit: fewer transactions than inputs
        for c in clients:  # let the writers hand every queued event to the sockets
            await c.wait_for("user_lowered_hand", len(clients) * rounds // 2)
        nursery.cancel_scope.cancel()
    # Every client saw the hand events in the log's order (the order the machine handled them).
    logged = [
        (r.event.type if hasattr(r.event, "type") else type(r.event).__name__, r.event.session_id)
        for r in store.iter_records(seq_before + 1)
        if r.seq <= seq_before + inputs
    ]
    names = {"RaiseHand": "user_raised_hand", "LowerHand": "user_lowered_hand"}
    expected = [(names[t], sid) for t, sid in logged]
    for c in clients:
        got = [(m["type"], m["data"]["session_id"]) for m in c.sent if m["type"] in names.values()]
        assert got == expected
    # The batches on disk are contiguous and in order.
    flat = [seq for batch in store.appends for seq in batch]
    assert flat == list(range(1, store.last_seq() + 1))
    assert store.last_seq() >= seq_before + inputs
    store.close()


async def test_a_failed_commit_fans_nothing_out_and_stops(tmp_path: Path) -> None:
    hub, recorder, store, plane = _hub(tmp_path)
    stopped: list[BaseException] = []
    hub.on_fatal = stopped.append
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await connected(hub, nursery), await connected(hub, nursery)
        await a.push("join", {"channel_id": "c"})
        await a.settle()  # join_ack, call_start, user_joined: all of them
        calls_before, a_before = list(plane.calls), len(a.sent)
        store.fail = OSError(5, "Input/output error")
        await b.push("join", {"channel_id": "c"})
        await b.push("raise_hand")
        await b.wait_for("error")
        await _settle()
        assert [m["data"]["code"] for m in b.sent if m["type"] == "error"] == ["internal_error"]
        assert "join_ack" not in b.types()
        assert len(a.sent) == a_before  # a never heard of b
        assert plane.calls == calls_before  # no media session for b
        assert len(stopped) == 1 and isinstance(stopped[0].__cause__, OSError)
        assert hub.fatal is stopped[0]
        assert store.last_seq() == 1  # the log holds only what was acted upon
        nursery.cancel_scope.cancel()
    store.close()


async def test_the_server_exits_on_a_failed_commit_without_fanning_it_out(tmp_path: Path, connect: Any) -> None:
    from callsd.app.config import load_config
    from callsd.app.server import ServerControl, ServerFailed, serve

    config = load_config(None, {"CALLSD_HTTP_PORT": "0", "CALLSD_STORE_DATA_DIR": str(tmp_path)})
    with pytest.raises(BaseExceptionGroup) as raised:  # noqa: PT012
        async with trio.open_nursery() as nursery:
            info = await nursery.start(lambda task_status: serve(config, control=ServerControl(), media=False,
                                                                 task_status=task_status))
            async with connect(info) as a, connect(info) as b:
                await a.request("join", {"channel_id": "c"}, expect="join_ack")
                store = info.hub._recorder.store

                def broken(records: Any) -> None:
                    raise OSError(5, "Input/output error")

                store.append = broken
                err = await b.request("join", {"channel_id": "c"}, expect="error")
                assert err["code"] == "internal_error"
                assert [m["type"] for m in b.seen if m["type"] == "join_ack"] == []
            await trio.sleep_forever()  # the server stops by itself
    leaf: BaseException = raised.value
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, ServerFailed) and "event log failed" in str(leaf)
