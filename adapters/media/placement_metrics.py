"""``callsd serve``'s view of where its calls run (media workers or rtcd hosts, adapters/media/router.py): calls and
sessions per host, whether each is up, accepting new calls, draining, and its last reported ``cpu_load``.
One series per plane, labelled by its name (``worker 0 (pid 123)``, ``rtcd 10.0.0.7:8045``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .router import PlaneRouter

__all__ = ["PlacementCollector"]


class PlacementCollector:
    def __init__(self, router: PlaneRouter) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        r = self.router
        calls = Counter(r.channel_worker.values())
        families = {
            "calls": GaugeMetricFamily("callsd_media_host_calls", "Calls placed on each media host", labels=["host"]),
            "sessions": GaugeMetricFamily("callsd_media_host_sessions", "Media sessions on each media host",
                                          labels=["host"]),
            "up": GaugeMetricFamily("callsd_media_host_up", "1 while the host's control link is up", labels=["host"]),
            "accepting": GaugeMetricFamily("callsd_media_host_accepting", "1 while new calls may be placed there",
                                           labels=["host"]),
            "draining": GaugeMetricFamily("callsd_media_host_draining", "1 while the host drains", labels=["host"]),
            "cpu": GaugeMetricFamily("callsd_media_host_cpu_load", "The host's last reported cpu_load",
                                     labels=["host"]),
        }
        latest: dict[str, int] = {}
        for i, plane in enumerate(r.planes):  # a relinked host keeps one series: its newest plane
            latest[plane.name] = i
        for name, i in sorted(latest.items()):
            plane = r.planes[i]
            families["calls"].add_metric([name], calls[i] if plane.alive else 0)  # a lost host holds nothing
            families["sessions"].add_metric([name], len(plane.sessions))
            families["up"].add_metric([name], 1 if plane.alive else 0)
            families["accepting"].add_metric([name], 1 if plane.alive and plane.accepting else 0)
            families["draining"].add_metric([name], 1 if plane.draining else 0)
            families["cpu"].add_metric([name], plane.cpu_load)
        yield from families.values()
