"""The load an rtcd host reports (``/system`` ``cpu_load``, what servers place calls by) is the CPU of its media
event loop's thread: Argon2id hashing for logins, on worker threads, does not move it; work on the loop does.
(Counted as process CPU, one retried login made an idle host look busier than one carrying a call.)"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio
from argon2 import PasswordHasher
from callsd.app import rtcd_service
from callsd.app.rtcd_service import sample_cpu_load

SAMPLE_S = 0.25  # four samples a second instead of one: the same smoothing, a shorter test


@dataclass(slots=True)
class Figure:
    cpu_load: float = 0.0


async def _for(seconds: float, step: Callable[[], Awaitable[None]]) -> None:
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        await step()


async def test_login_hashing_is_not_load_but_work_on_the_loop_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtcd_service, "CPU_SAMPLE_SECONDS", SAMPLE_S)
    figure = Figure()
    hasher = PasswordHasher()  # the parameters ClientStore hashes and verifies with

    async def hash_on_a_thread() -> None:
        await trio.to_thread.run_sync(hasher.hash, "k" * 40)

    async def spin_on_the_loop() -> None:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
        await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_cpu_load, figure)
        process_cpu = time.process_time()
        await _for(6 * SAMPLE_S, hash_on_a_thread)
        hashed = time.process_time() - process_cpu
        while_hashing = figure.cpu_load
        await _for(6 * SAMPLE_S, spin_on_the_loop)
        while_spinning = figure.cpu_load
        nursery.cancel_scope.cancel()
    assert hashed > 0.3  # the hashing really ran: as process CPU this would read well over half a core
    assert while_hashing < 0.05, while_hashing
    assert while_spinning > max(4 * while_hashing, 0.02), (while_hashing, while_spinning)  # the loop's CPU counts
