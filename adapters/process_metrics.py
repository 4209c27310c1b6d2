"""``callsd_process_*``: the families prometheus_client's ``ProcessCollector`` exports, read without walking the
descriptor table.

Why: ``ProcessCollector`` counts open descriptors with ``os.listdir("/proc/self/fd")`` (a directory entry per
descriptor, one per WebSocket: 0.72 ms of a 1.4 ms scrape at 1,600 sessions, bench/metrics_scrape.py) and re-reads
``/proc/self/limits`` every scrape. Linux (6.2 and later) gives the number of open descriptors as the size of that
directory, one ``stat``; the soft ``RLIMIT_NOFILE`` is what the limits file shows as "Max open files". An older
kernel reports the size 0, and the listing is used as before.

Names, help texts, order and values are ``ProcessCollector``'s (tests/server/test_metrics_exposition.py compares
them), but for one thing: ``open_fds`` is the kernel's count of the descriptor table's entries in use, so it no
longer counts the descriptor the listing held open while it ran (and may count one another thread is opening).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ProcessStats", "open_descriptors"]

_PAGESIZE = resource.getpagesize()


def open_descriptors(fd_dir: str = "/proc/self/fd") -> int:
    """How many descriptors this process has open: the directory's size where the kernel keeps it (one ``stat``),
    else its entries less the one the listing opened."""
    size = os.stat(fd_dir).st_size
    return size if size > 0 else len(os.listdir(fd_dir)) - 1


def _boot_time() -> float:
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0


class ProcessStats(Collector):
    """CPU, memory, start time and descriptors of this process, as ``ProcessCollector(namespace=...)`` names them."""

    def __init__(self, namespace: str = "callsd") -> None:
        self._prefix = f"{namespace}_process_"
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        try:
            self._btime = _boot_time()
        except OSError:  # no /proc: nothing to report, as ProcessCollector
            self._btime = 0.0

    def collect(self) -> Iterator[Metric]:
        if not self._btime:
            return
        p = self._prefix
        try:
            with open("/proc/self/stat", "rb") as stat:
                parts = stat.read().split(b")")[-1].split()
        except OSError:
            parts = []
        if parts:
            yield GaugeMetricFamily(p + "virtual_memory_bytes", "Virtual memory size in bytes.", value=float(parts[20]))
            yield GaugeMetricFamily(p + "resident_memory_bytes", "Resident memory size in bytes.",
                                    value=float(parts[21]) * _PAGESIZE)
            yield GaugeMetricFamily(p + "start_time_seconds", "Start time of the process since unix epoch in seconds.",
                                    value=float(parts[19]) / self._ticks + self._btime)
            yield CounterMetricFamily(p + "cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                                      value=float(parts[11]) / self._ticks + float(parts[12]) / self._ticks)
        try:
            fds = open_descriptors()
        except OSError:
            return
        yield GaugeMetricFamily(p + "open_fds", "Number of open file descriptors.", fds)
        yield GaugeMetricFamily(p + "max_fds", "Maximum number of open file descriptors.",
                                value=float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
