"""The loop-hold measurement (adapters/loop_holds.py): a step that blocks the loop is charged to its task, a GC
collection to its generation and not to the step it ran in, and the histogram reaches /metrics by cause.

No timed assertions: a blocked step is *at least* as long as its block, whatever else the machine does."""

from __future__ import annotations

import gc
import time

import pytest
import trio
import trio.testing
from callsd.adapters.loop_holds import (
    HOLD_BUCKETS,
    LoopHoldCollector,
    LoopHoldMonitor,
    cause_of,
    install_loop_holds,
)
from callsd.app.config import ConfigError, load_config
from prometheus_client import CollectorRegistry, generate_latest

BLOCK = 0.03  # seconds a step blocks the loop (time.sleep: the loop cannot run anything else meanwhile)


async def _blocker() -> None:
    time.sleep(BLOCK)


async def _quiet_ticks(count: int) -> None:
    for _ in range(count):
        await trio.lowlevel.checkpoint()


async def test_a_step_that_blocks_is_charged_to_its_task_and_its_pass_to_its_cause() -> None:
    monitor, uninstall = install_loop_holds()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_quiet_ticks, 50)
            nursery.start_soon(_blocker, name="callsd.adapters.media.transport.UdpEndpoint._receive_loop")
            nursery.start_soon(_blocker)
        await trio.lowlevel.checkpoint()  # one more pass: the last one is observed when the loop waits again
    finally:
        uninstall()
    names = {holder["name"]: holder for holder in monitor.top_holders()}
    mine = next(name for name in names if name.endswith("_blocker"))
    assert names[mine]["longest_step_ms"] >= BLOCK * 1000 and names[mine]["cause"] == "other"
    receive = names["callsd.adapters.media.transport.UdpEndpoint._receive_loop"]
    assert receive["longest_step_ms"] >= BLOCK * 1000 and receive["cause"] == "receive"
    assert not any(name.endswith("_quiet_ticks") for name in names)  # below the floor: not a holder
    over = sum(1 for bound in HOLD_BUCKETS if bound < BLOCK)  # the buckets a 30 ms pass is above
    held = sum(sum(monitor.buckets.get(cause, [])[over:]) for cause in ("other", "receive"))
    assert held >= 1  # the two blocks ran in one pass or two; either way a pass of >= 30 ms was observed
    assert monitor.passes > 50


async def test_a_forced_collection_is_charged_to_gc_not_to_the_step_that_ran_it() -> None:
    garbage = [[] for _ in range(300_000)]  # tracked objects the collector has to walk: a collection of some ms
    for index, item in enumerate(garbage):
        item.append(garbage[index - 1])
    monitor = LoopHoldMonitor(floor=0.0)
    trio.lowlevel.add_instrument(monitor)
    gc.callbacks.append(monitor.on_gc)
    try:
        async def collect() -> None:
            gc.collect()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, name="collector_step")
        await trio.lowlevel.checkpoint()
    finally:
        gc.callbacks.remove(monitor.on_gc)
        trio.lowlevel.remove_instrument(monitor)
    del garbage
    collection = monitor.top["gc gen 2"]
    step = monitor.top["collector_step"]
    assert collection.steps >= 1 and collection.cause == "gc2"
    assert step.longest < collection.longest  # the step itself did nothing but start the collection
    assert sum(monitor.buckets.get("gc2", [])) >= 1  # the pass it ran in is charged to the collector


async def _short() -> None:
    time.sleep(0.0005)


async def test_many_short_steps_in_one_pass_add_up_to_a_hold_of_their_task() -> None:
    monitor, uninstall = install_loop_holds()
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(200):  # all runnable at once: Trio runs them in one pass, the socket waits for all
                nursery.start_soon(_short)
        await trio.lowlevel.checkpoint()
    finally:
        uninstall()
    (holder,) = [h for h in monitor.top_holders() if h["name"].endswith("_short")]
    assert holder["pass_steps"] == 200 and holder["pass_ms"] >= 200 * 0.5
    assert sum(sum(counts[5:]) for counts in monitor.buckets.values()) >= 1  # a pass of > 100 ms was observed


def test_causes_are_a_few_fixed_values() -> None:
    assert cause_of("callsd.adapters.media.transport.UdpEndpoint._receive_loop") == "receive"
    assert cause_of("callsd.adapters.media.plane.MediaPlane._report_ticks") == "rtcp"
    assert cause_of("hypercorn.protocol.h11.H11Protocol.handle") == "http"
    assert cause_of("something.else") == "other"


def test_the_metric_renders_cumulative_buckets_by_cause() -> None:
    monitor = LoopHoldMonitor(floor=0.002)
    monitor._observe("gc2", 0.03)
    monitor._observe("gc2", 0.0025)
    monitor._observe("receive", 2.0)
    monitor._record("gc gen 2").note(0.03)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopHoldCollector(monitor))
    text = generate_latest(registry).decode()
    assert 'callsd_loop_hold_seconds_bucket{cause="gc2",le="0.002"} 0.0' in text
    assert 'callsd_loop_hold_seconds_bucket{cause="gc2",le="0.005"} 1.0' in text
    assert 'callsd_loop_hold_seconds_bucket{cause="gc2",le="0.05"} 2.0' in text
    assert 'callsd_loop_hold_seconds_bucket{cause="receive",le="1"} 0.0' in text
    assert 'callsd_loop_hold_seconds_bucket{cause="receive",le="+Inf"} 1.0' in text
    assert 'callsd_loop_hold_seconds_count{cause="gc2"} 2.0' in text
    assert 'callsd_loop_hold_longest_seconds{cause="gc2"} 0.03' in text
    assert 'callsd_loop_hold_top_seconds{cause="gc2",name="gc gen 2"} 0.03' in text
    assert "callsd_loop_passes_total 0.0" in text


def test_the_knob_defaults_on_and_is_read_from_the_environment() -> None:
    assert load_config(None, {}).metrics.loop_holds is True
    assert load_config(None, {"CALLSD_METRICS_LOOP_HOLDS": "false"}).metrics.loop_holds is False
    with pytest.raises(ConfigError, match="loop_holds"):
        load_config(None, {"CALLSD_METRICS_LOOP_HOLDS": "sometimes"})


async def test_a_server_exports_its_holds_and_its_socket_drops_unless_told_not_to(start_server) -> None:
    from attack_support import http_request

    info, _ = await start_server(media=True)
    status, body = await http_request(info.http_port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1")
    assert status == 200 and b"callsd_loop_passes_total" in body
    assert b'callsd_rtc_errors_total{type="socket_full"} 0.0' in body
    quiet, _ = await start_server(metrics={"loop_holds": False})
    status, body = await http_request(quiet.http_port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1")
    assert status == 200 and b"callsd_loop_passes" not in body


def test_kernel_drops_counts_what_a_full_receive_buffer_refused() -> None:
    import socket

    from callsd.adapters.media.udp import kernel_drops

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("127.0.0.1", 0))
        assert kernel_drops(receiver) == 0
        for _ in range(100):  # nobody reads: the buffer holds a few, the kernel drops the rest
            sender.sendto(b"x" * 500, receiver.getsockname())
        assert kernel_drops(receiver) > 50


async def test_one_hook_per_step_and_every_step_counted() -> None:
    """Trio dispatches only the hooks an instrument overrides: the monitor has ``after_task_step`` and no
    ``before_task_step`` (a step is timed from the end of the previous one), so each step costs one hook call; and
    each step is still counted, and a quiet step after a blocking one is not charged the block."""
    assert "before_task_step" not in vars(LoopHoldMonitor) and "after_task_step" in vars(LoopHoldMonitor)
    monitor, uninstall = install_loop_holds()
    try:
        before = monitor.steps
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_blocker)
            nursery.start_soon(_quiet_ticks, 100)
        await trio.lowlevel.checkpoint()
    finally:
        uninstall()
    assert monitor.steps - before >= 101  # the ticker's 100 checkpoints and the blocker's step, at least
    names = {holder["name"] for holder in monitor.top_holders()}
    assert any(name.endswith("_blocker") for name in names)
    assert not any(name.endswith("_quiet_ticks") for name in names)
