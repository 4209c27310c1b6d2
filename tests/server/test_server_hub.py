"""The signaling hub alone, with in-memory transports and virtual time (no HTTP server): timers on the clock the
hub is given, slow clients, and the pump's behaviour on transport edge cases."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from callsd.adapters.signaling import HubSettings, SignalingHub
from callsd.core.calls import events as ev
from hub_support import MemoryRecorder, MemoryTransport


def _hub(**settings: Any) -> tuple[SignalingHub, MemoryRecorder]:
    rec = MemoryRecorder()
    ids = iter(f"id{i}" for i in range(1000))
    hub = SignalingHub(rec, rec.machine, settings=HubSettings(**settings),
                       clock_ms=lambda: int(trio.current_time() * 1000), new_id=lambda prefix: prefix + next(ids))
    return hub, rec


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_reconnect_window_runs_on_the_hub_clock(autojump_clock):
    hub, rec = _hub()
    hub.feed(ev.Configure(at=0, reconnect_window_ms=10_000))
    a, b = MemoryTransport(), MemoryTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        nursery.start_soon(hub.serve_connection, a)
        nursery.start_soon(hub.serve_connection, b)
        await _settle()
        await a.push("join", {"channel_id": "c"})
        await b.push("join", {"channel_id": "c"})
        await _settle()
        b_session = b.sent[0]["data"]["session_id"]
        await b.inbox_send.send(None)  # b's socket closes
        await _settle()
        assert a.types()[-1] == "user_disconnected"
        dropped_at = trio.current_time()
        with trio.fail_after(60):
            while "user_left" not in a.types():
                await trio.sleep(0.5)
        assert 10 <= trio.current_time() - dropped_at <= 11
        assert a.sent[-1]["data"] == {"channel_id": "c", "session_id": b_session, "reason": "timed_out"}
        assert [type(e).__name__ for e in rec.log][-2:] == ["Disconnect", "TimerFired"]
        nursery.cancel_scope.cancel()


async def test_a_stuck_client_is_closed_without_stalling_the_others():
    hub, _ = _hub(rate=1e9, burst=10**9)
    stuck, busy = MemoryTransport(stuck=True), MemoryTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        nursery.start_soon(hub.serve_connection, stuck)
        nursery.start_soon(hub.serve_connection, busy)
        await _settle()
        await stuck.push("join", {"channel_id": "c"})
        await busy.push("join", {"channel_id": "c"})
        await _settle()
        for i in range(1100):  # one event per action for everyone in the call: the stuck outbox overflows
            await busy.push("raise_hand" if i % 2 == 0 else "lower_hand")
        with trio.fail_after(10):
            while stuck.closed is None:
                await trio.sleep(0.01)
        assert stuck.closed == (1008, "too slow: outbox full")
        await _settle()
        assert busy.types().count("user_raised_hand") == 550
        assert hub.counters.ws_closed_slow == 1
        nursery.cancel_scope.cancel()


async def test_recover_disconnects_sessions_of_a_previous_process():
    hub, rec = _hub()
    rec.machine.handle(ev.JoinCall(at=1, channel_id="c", session_id="s1", user_id="u", call_id="k"))
    hub.recover()
    assert rec.machine.participant("s1").connected is False
    assert "reconnect:s1" in hub.timers.pending


async def test_a_failing_recorder_becomes_an_internal_error_not_a_crash():
    hub, rec = _hub()
    real = rec.handle

    def flaky(event: ev.InputEvent) -> list[Any]:
        if isinstance(event, ev.RaiseHand):
            raise RuntimeError("disk on fire")
        return real(event)

    rec.handle = flaky  # type: ignore[method-assign]
    a = MemoryTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        nursery.start_soon(hub.serve_connection, a)
        await _settle()
        await a.push("join", {"channel_id": "c"})
        await a.push("raise_hand")
        await a.push("ping")
        await _settle()
        assert a.sent[-2]["data"] == {"code": "internal_error", "message": "the server failed to handle this message",
                                      "action": "raise_hand"}
        assert a.types()[-1] == "pong"
        nursery.cancel_scope.cancel()


async def test_a_store_failure_is_fatal(tmp_path, connect):
    import pytest
    from callsd.app.config import load_config
    from callsd.app.server import ServerControl, ServerFailed, serve

    config = load_config(None, {"CALLSD_HTTP_PORT": "0", "CALLSD_STORE_DATA_DIR": str(tmp_path)})
    with pytest.raises(BaseExceptionGroup) as raised:  # noqa: PT012
        async with trio.open_nursery() as nursery:
            info = await nursery.start(lambda task_status: serve(config, control=ServerControl(), media=False,
                                                                 task_status=task_status))

            def broken(records: Any) -> None:
                raise OSError(5, "Input/output error")

            info.hub._recorder.store.append = broken
            async with connect(info) as a:
                err = await a.request("join", {"channel_id": "c"}, expect="error")
                assert err["code"] == "internal_error"
            await trio.sleep_forever()  # the server stops by itself
    leaf: BaseException = raised.value
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, ServerFailed) and "event log failed" in str(leaf)
