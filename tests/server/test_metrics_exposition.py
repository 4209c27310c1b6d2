"""The scrape's text is ``generate_latest``'s, byte for byte (adapters/exposition.py keeps names, labels and header
lines between scrapes), and ``callsd_process_*`` are ``ProcessCollector``'s families (adapters/process_metrics.py
reads them without listing the descriptor table)."""

from __future__ import annotations

import gc
import os
import resource

from callsd.adapters.exposition import MAX_KEPT, KeptFamily, TextExposition
from callsd.adapters.metrics import build_registry, render_metrics
from callsd.adapters.process_metrics import ProcessStats, open_descriptors
from callsd.adapters.signaling import NullMediaPlane, SignalingHub
from callsd.core.calls import events as ev
from callsd.core.calls.machine import CallsMachine
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _generic(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


_names = st.builds(str.__add__, st.sampled_from("aZ_:"), st.text("bY09_:", max_size=8)) | st.sampled_from(
    ["a.b", "x-y", "é"])
_label_names = st.builds(str.__add__, st.sampled_from("aZ_"), st.text("bY09_", max_size=5)) | st.sampled_from(
    ["a.b", "1x", "é", "__name__"])
_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12) | st.sampled_from(
    [0, 1, 999999, 1000000, 1234567.5, 1e21, -1e7, 0.1])


@st.composite
def _family(draw: st.DrawFn) -> Metric:
    name = draw(_names)
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown",
                                 "gaugehistogram"]))
    metric = Metric(name, draw(st.text(max_size=20)), kind)
    for _ in range(draw(st.integers(0, 5))):
        suffix = draw(st.sampled_from(["", "_total", "_bucket", "_sum", "_count", "_created", "_gsum", "_gcount",
                                       "_info"]))
        labels = draw(st.dictionaries(_label_names, st.text(max_size=8), max_size=3))
        timestamp = draw(st.none() | st.floats(0, 2e9))
        metric.samples.append(Sample(name + suffix, labels, draw(_numbers), timestamp))
    return metric


@settings(max_examples=200)
@given(st.lists(_family(), max_size=6), st.integers(1, 3))
def test_any_families_are_written_as_generate_latest_writes_them(families: list[Metric], scrapes: int) -> None:
    exposition = TextExposition()
    for _ in range(scrapes):  # the second scrape reads what the first kept
        assert exposition.render_families(families) == _generic(families)


def test_the_kept_text_is_bounded() -> None:
    exposition = TextExposition()
    for n in range(MAX_KEPT + 10):
        metric = Metric("m", "doc", "gauge")
        metric.samples.append(Sample("m", {"k": str(n)}, n))
        assert exposition.render_families([metric]) == _generic([metric])
    assert len(exposition._prefixes) <= MAX_KEPT  # noqa: SLF001


def _server_registry() -> CollectorRegistry:
    machine = CallsMachine()
    for i in range(12):
        machine.handle(ev.JoinCall(at=1000 + i, session_id=f"s{i}", channel_id=f"c{i // 8}", user_id=f"u{i}",
                                   call_id=f"call{i // 8}" if i % 8 == 0 else None))

    class Recorder:
        group_commit = False
        durable_seq = 0

    hub = SignalingHub(Recorder(), machine, plane=NullMediaPlane())  # type: ignore[arg-type]
    hub.counters.ws_events["in", "join"] = 12
    hub.counters.ws_events["out", "sdp_offer"] = 3
    hub.counters.rtc_errors["sdp"] = 1
    return build_registry(hub, None, "1.2.3")


def test_the_server_scrape_is_generate_latest_s_text() -> None:
    registry = _server_registry()
    without_process = CollectorRegistry(auto_describe=False)
    for collector in registry._collector_to_names:  # noqa: SLF001 - the same collectors, less the CPU clock
        if not isinstance(collector, ProcessStats):
            without_process.register(collector)
    for _ in range(2):
        body, content_type = render_metrics(without_process)
        assert body == generate_latest(without_process)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b'callsd_websocket_events_total{direction="in",type="join"} 12.0' in body
    assert b"callsd_participants 12.0" in body and b"callsd_calls 2.0" in body


def _values(collector: Collector) -> dict[str, tuple[str, str, float]]:
    return {m.name: (m.documentation, m.type, m.samples[0].value) for m in collector.collect()}


def test_process_families_are_process_collector_s() -> None:
    ours = _values(ProcessStats("callsd"))
    theirs = _values(ProcessCollector(namespace="callsd", registry=None))
    assert list(ours) == list(theirs)
    for name, (doc, kind, value) in theirs.items():
        assert ours[name][:2] == (doc, kind)
        if name.endswith(("start_time_seconds", "max_fds")):
            assert ours[name][2] == value
    assert ours["callsd_process_max_fds"][2] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert abs(ours["callsd_process_resident_memory_bytes"][2] - theirs["callsd_process_resident_memory_bytes"][2]) \
        < 64 << 20


def test_open_descriptors_follow_what_the_process_opens() -> None:
    gc.collect()  # earlier tests' unreferenced sockets close now, not between the counts
    before = open_descriptors()
    # the listing counts its own descriptor; the kernel's count, the descriptors reserved in the table
    assert abs(before - (len(os.listdir("/proc/self/fd")) - 1)) <= 1
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
    try:
        assert open_descriptors() == before + 5
    finally:
        for fd in opened:
            os.close(fd)
    assert open_descriptors() == before


@settings(max_examples=100)
@given(st.sampled_from(["counter", "gauge"]), st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)),
                                                         max_size=5),
       st.lists(st.integers(0, 10**9) | st.floats(allow_nan=False), min_size=5, max_size=5))
def test_a_kept_family_is_the_family_prometheus_client_builds(kind: str, keys: list[tuple[str, str]],
                                                              values: list[float]) -> None:
    kept = KeptFamily("callsd_x", "help", kind, ("a", "b"))
    for _ in range(2):  # the second time from the label dicts kept
        reference = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)("callsd_x", "help",
                                                                                      labels=["a", "b"])
        for key, value in zip(keys, values, strict=False):
            reference.add_metric(list(key), value)
        assert kept.series(list(zip(keys, values, strict=False))) == reference
    plain = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)("callsd_y", "help", value=values[0])
    assert KeptFamily("callsd_y", "help", kind).value(values[0]) == plain


@settings(max_examples=100)
@given(st.lists(st.tuples(st.text(max_size=4), st.lists(st.integers(0, 100), min_size=1, max_size=4),
                          st.floats(allow_nan=False)), max_size=4),
       st.sampled_from(["-1", "0.5"]))
def test_a_kept_histogram_is_the_family_prometheus_client_builds(series: list[tuple[str, list[int], float]],
                                                                 first_bound: str) -> None:
    kept = KeptFamily("callsd_h", "help", "histogram", ("cause",))
    for _ in range(2):
        reference = HistogramMetricFamily("callsd_h", "help", labels=["cause"])
        drawn = []
        for cause, counts, total in series:
            buckets = [(first_bound if i == 0 else str(i), float(c)) for i, c in enumerate(counts[:-1])]
            buckets.append(("+Inf", float(counts[-1])))
            reference.add_metric([cause], buckets, total)
            drawn.append(((cause,), buckets, total))
        assert kept.histograms(drawn) == reference
