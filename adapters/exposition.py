"""The Prometheus text exposition (format 0.0.4) of a registry, byte for byte what ``generate_latest`` writes, with
what does not change between scrapes kept between scrapes.

Why: the load tool scrapes ``/metrics`` once a second and the scrape runs on the event loop. prometheus_client's
``generate_latest`` spends ~3.5 µs per sample re-deriving text that is the same on every scrape: it validates and
escapes each metric name against a regular expression, sorts, escapes and joins each sample's labels, and formats
each family's ``# HELP``/``# TYPE`` lines (bench/metrics_scrape.py: ~0.45 ms of a ~0.75 ms scrape at 160 sessions).
Here a family's header lines are kept per (name, type, help) and a sample's ``name{labels} `` prefix per (name,
labels), both computed once with prometheus_client's own escaping functions; a scrape only formats the values.

A family this does not write the usual way (a sample with a timestamp, or the OpenMetrics ``_created``, ``_gsum``
and ``_gcount`` samples that the text format moves to families of their own) is written by ``generate_latest``
itself, so the output stays identical whatever a collector yields (tests/server/test_metrics_exposition.py holds
the two to the same bytes, Hypothesis-drawn families included).

The caches are bounded (``MAX_KEPT`` entries each, cleared when full): label values come from code and
configuration, but a collector that put something unbounded in a label would otherwise grow them for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["TextExposition", "KeptFamily", "CONTENT_TYPE", "MAX_KEPT"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_KEPT = 4096

# prometheus_client's renaming from the OpenMetrics types to the text format's: (suffix of the name, type written)
_TEXT_TYPE = {"counter": ("_total", "counter"), "info": ("_info", "gauge"), "stateset": ("", "gauge"),
              "gaugehistogram": ("", "histogram"), "unknown": ("", "untyped")}
_SEPARATE = ("_created", "_gsum", "_gcount")  # samples the text format moves to families of their own
_value_text: Callable[[float], str] = floatToGoString  # how generate_latest writes a value (Go's float format)


class _Header:
    """A family's ``# HELP`` and ``# TYPE`` lines, and the sample names that make it take the generic way."""

    __slots__ = ("text", "separate")

    def __init__(self, metric: Metric) -> None:
        suffix, kind = _TEXT_TYPE.get(metric.type, ("", metric.type))
        name = escape_metric_name(metric.name + suffix)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.text = f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"
        self.separate = frozenset(metric.name + s for s in _SEPARATE)


def _prefix(name: str, labels: dict[str, str]) -> str:
    """``name{label="value",...} `` as ``generate_latest``'s ``sample_line`` writes it (labels sorted by name)."""
    if not labels:
        return f"{escape_metric_name(name)} "
    text = ",".join('{}="{}"'.format(escape_label_name(k),
                                     v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
                    for k, v in sorted(labels.items()))
    return f"{escape_metric_name(name)}{{{text}}} "


class _One(Collector):
    """One family as a registry of its own, for ``generate_latest`` to write the rare family kept off the fast way."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


class TextExposition:
    """Writes registries' exposition. Its caches are keyed by content (names, labels, help), so one serves every
    registry of a process (adapters/metrics.py ``render_metrics``)."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], _Header] = {}
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def render(self, registry: CollectorRegistry) -> bytes:
        """The text exposition of everything ``registry`` collects now."""
        return self.render_families(registry.collect())

    def render_families(self, families: Iterable[Metric]) -> bytes:
        out: list[str] = []
        headers, prefixes = self._headers, self._prefixes
        for metric in families:
            key = (metric.name, metric.type, metric.documentation)
            header = headers.get(key)
            if header is None:
                if len(headers) >= MAX_KEPT:
                    headers.clear()
                header = headers[key] = _Header(metric)
            lines = [header.text]
            for s in metric.samples:
                if s.timestamp is not None or s.name in header.separate:
                    lines = [self._generic(metric)]
                    break
                labels = s.labels
                label_key = (s.name, tuple(labels.items()))
                prefix = prefixes.get(label_key)
                if prefix is None:
                    if len(prefixes) >= MAX_KEPT:
                        prefixes.clear()
                    prefix = prefixes[label_key] = _prefix(s.name, labels)
                value = s.value
                # a small int (most counters): repr(float(value)), which is what floatToGoString returns for it
                text = f"{value}.0" if type(value) is int and -1_000_000 < value < 1_000_000 else _value_text(value)
                lines.append(f"{prefix}{text}\n")
            out.extend(lines)
        return "".join(out).encode("utf-8")

    @staticmethod
    def _generic(metric: Metric) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_One(metric))
        return generate_latest(registry).decode("utf-8")


class KeptFamily:
    """A family's name, help, type and label names, and the label dicts of its series, kept between scrapes: a
    collector builds each scrape's ``Metric`` from (label values, value) pairs without ``add_metric``'s per-sample
    ``dict(zip(...))`` and checks (~1.5 µs a sample). The families are the ones ``CounterMetricFamily``,
    ``GaugeMetricFamily`` and ``HistogramMetricFamily`` build (a counter's samples are named ``<name>_total``)."""

    __slots__ = ("name", "documentation", "kind", "sample_name", "label_names", "_labels")

    def __init__(self, name: str, documentation: str, kind: str, label_names: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.kind = kind
        self.sample_name = f"{name}_total" if kind == "counter" else name
        self.label_names = label_names
        self._labels: dict[tuple[str, ...], dict[str, str]] = {}

    def series(self, values: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
        """The family with one sample per (label values, value), in that order."""
        metric = Metric(self.name, self.documentation, self.kind)
        name, names = self.sample_name, self.label_names
        samples = metric.samples
        for key, value in values:
            samples.append(Sample(name, self._label(names, key), value))
        return metric

    def value(self, value: float) -> Metric:
        """The family with its one unlabelled sample."""
        metric = Metric(self.name, self.documentation, self.kind)
        metric.samples.append(Sample(self.sample_name, {}, value))
        return metric

    def histograms(self, values: Iterable[tuple[tuple[str, ...], list[tuple[str, float]], float]]) -> Metric:
        """A histogram family (``kind`` "histogram"): per (label values, cumulative (le, count) buckets ending with
        +Inf, sum) the samples ``HistogramMetricFamily.add_metric`` makes, in its order."""
        metric = Metric(self.name, self.documentation, self.kind)
        names, bucket_names = self.label_names, (*self.label_names, "le")
        bucket, count, total = f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"
        samples = metric.samples
        for key, buckets, sum_value in values:
            for le, value in buckets:
                samples.append(Sample(bucket, self._label(bucket_names, (*key, le)), value))
            if float(buckets[0][0]) >= 0:  # as add_metric: no count and sum with negative buckets
                labels = self._label(names, key)
                samples.append(Sample(count, labels, buckets[-1][1]))
                samples.append(Sample(total, labels, sum_value))
        return metric

    def _label(self, names: tuple[str, ...], key: tuple[str, ...]) -> dict[str, str]:
        """The label dict of ``key`` (made once; a histogram's bucket keys are one longer than its series' keys)."""
        kept = self._labels
        labels = kept.get(key)
        if labels is None:
            if len(kept) >= MAX_KEPT:
                kept.clear()
            labels = kept[key] = dict(zip(names, key, strict=True))
        return labels
