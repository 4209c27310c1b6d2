"""``callsd_trio_tasks`` counts the tasks alive in the run (adapters/metrics.py): after its first scrape it keeps
count through a Trio instrument instead of walking the tree each scrape; the count must stay what a walk finds."""

from __future__ import annotations

import trio
import trio.testing
from callsd.adapters.metrics import TrioTaskCollector


def _walk() -> int:
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        assert task is not None
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def _scraped(collector: TrioTaskCollector) -> float:
    (family,) = list(collector.collect())
    return float(family.samples[0].value)


async def test_the_count_follows_tasks_spawned_and_ended_as_a_walk_would() -> None:
    collector = TrioTaskCollector()
    assert _scraped(collector) == _walk()
    async with trio.open_nursery() as nursery:
        release = trio.Event()
        for _ in range(25):
            nursery.start_soon(release.wait)
        await trio.testing.wait_all_tasks_blocked()
        assert _scraped(collector) == _walk()
        release.set()
    assert _scraped(collector) == _walk()


def test_a_new_run_is_counted_afresh_and_nothing_is_exported_outside_one() -> None:
    collector = TrioTaskCollector()
    assert list(collector.collect()) == []

    async def main() -> tuple[float, int]:
        return _scraped(collector), _walk()

    for _ in range(2):
        scraped, walked = trio.run(main)
        assert scraped == walked
