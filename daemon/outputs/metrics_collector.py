"""The Prometheus collectors: one over the pipeline's state at scrape time, one for events.

The supervisor hands `ActiondCollector` a callable that returns a `MetricsSnapshot` (worker
stats blocks, ring counters, camera and MQTT state); every scrape calls it and turns it
into the metric families of `daemon.metrics_catalog`, so the numbers are read from shared
memory when Prometheus asks, never copied on a timer, and nothing needs
PROMETHEUS_MULTIPROC_DIR. `EventMetrics` holds the two metrics the supervisor counts
itself (events and their latency).

Both are plain collectors, not prometheus_client's Counter/Histogram: those also export
`<name>_created` series, which are not in the catalog, and turning them off is a
process-wide switch.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from daemon import __version__
from daemon import metrics_catalog as mc
from daemon.ipc.mapping import RingStats
from daemon.ipc.stats import LATENCY_BUCKETS_S
from daemon.outputs.sinks.protocol import SinkView

# Label value of the workers every camera shares (the infer replicas).
SHARED_CAMERA = "all"
PROCESSING_PREFIX = "processing_seconds"
EVENTS_TOTAL = "actiond_events_total"
EVENT_LATENCY = "actiond_event_latency_seconds"
SINK_DROPPED_OUTBOX_FULL = "outbox_full"
EVENT_METRICS = (EVENTS_TOTAL, EVENT_LATENCY)
COLLECTOR_METRICS = tuple(s.name for s in mc.CATALOG if s.name not in EVENT_METRICS)

LabelValues = tuple[str, ...]
log = logging.getLogger(__name__)
# prometheus_client leaves floatToGoString unannotated; its type, stated once here, lets
# the calls be checked: a bucket bound in, its text in the exposition format out.
go_float: Callable[[float], str] = floatToGoString


@dataclass(frozen=True)
class WorkerView:
    """One worker at scrape time: identity, liveness and a copy of its stats block."""

    name: str
    camera: str  # "" for workers shared by all cameras
    stage: str  # its stage kind (daemon.stages.registry)
    up: bool  # process running with a fresh heartbeat
    restarts_total: int
    stats: Mapping[str, float]  # StatsBlock.snapshot()
    # What its stage kind declares: (metric, stats field) exported per camera, and
    # (item, reason, stats field) exported in actiond_lost_total.
    exports: Sequence[tuple[str, str]] = ()
    losses: Sequence[tuple[str, str, str]] = ()


@dataclass(frozen=True)
class CameraView:
    """One configured camera at scrape time."""

    name: str
    failed: bool
    expected_fps: float
    up: bool = False  # frames flow now (what the MQTT availability topic says)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything one scrape exports; `sinks` holds the running event sinks only, so a
    disabled sink has no actiond_sink_* series at all (no alert fires for it)."""

    workers: Sequence[WorkerView] = ()
    rings: Sequence[tuple[str, RingStats]] = ()
    cameras: Sequence[CameraView] = ()
    providers: Sequence[str] = ()
    sinks: Sequence[SinkView] = ()
    # What the supervisor lost itself, by (camera, stage, item, reason) of
    # actiond_lost_total; the workers count theirs in their stats blocks.
    losses: Mapping[tuple[str, str, str, str], float] = field(default_factory=dict)


@dataclass
class HistogramCounts:
    """Cumulative ("le") bucket counts over `bounds`, plus count (+Inf) and sum."""

    bounds: tuple[float, ...]
    buckets: list[float] = field(default_factory=list)
    count: float = 0.0
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [0.0] * len(self.bounds)
        if len(self.buckets) != len(self.bounds):
            raise ValueError(f"{len(self.buckets)} bucket counts for {len(self.bounds)} bounds")

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.sum += value

    def merge(self, other: HistogramCounts) -> None:
        if other.bounds != self.bounds:
            raise ValueError(
                f"cannot merge histograms with bounds {other.bounds} "
                f"into one with bounds {self.bounds}"
            )
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.count += other.count
        self.sum += other.sum

    def exposition_buckets(self) -> list[tuple[str, float]]:
        return [(go_float(b), c) for b, c in zip(self.bounds, self.buckets)] + [
            ("+Inf", self.count)
        ]


def stats_histogram(worker: WorkerView, prefix: str) -> HistogramCounts:
    """The histogram a worker keeps in its stats block under `prefix` (histogram_fields)."""
    names = [f"{prefix}_bucket_{i}" for i in range(len(LATENCY_BUCKETS_S))]
    missing = [n for n in (*names, f"{prefix}_sum", f"{prefix}_count") if n not in worker.stats]
    if missing:
        raise KeyError(
            f"worker {worker.name!r} ({worker.stage}) has no stats fields "
            f"{missing}: its stage must declare histogram_fields({prefix!r})"
        )
    # The worker updates the fields one by one while we read them, so a scrape can see a
    # later bucket ahead of an earlier one or of the count (by one observation at most).
    # Exported buckets must be monotonic and end at the count: take running maxima.
    buckets, top = [], 0.0
    for name in names:
        top = max(top, worker.stats[name])
        buckets.append(top)
    count = max(worker.stats[f"{prefix}_count"], top)
    return HistogramCounts(LATENCY_BUCKETS_S, buckets, count, worker.stats[f"{prefix}_sum"])


class _Samples:
    """The samples of one scrape by metric and label values; workers that share a label
    set (the infer replicas) are summed, and their `up` is the lowest of them."""

    def __init__(self, warned: set[tuple[str, str]] | None = None) -> None:
        # (stage, problem) pairs already logged: the collector keeps them across scrapes.
        self.warned: set[tuple[str, str]] = warned if warned is not None else set()
        self._values: dict[str, dict[LabelValues, float]] = {}
        self._histograms: dict[str, dict[LabelValues, HistogramCounts]] = {}

    @staticmethod
    def _check(name: str, labels: LabelValues, kind: str) -> None:
        spec = mc.BY_NAME.get(name)
        if spec is None or (spec.type == mc.HISTOGRAM) != (kind == mc.HISTOGRAM):
            raise KeyError(f"{name} is not a {kind} in daemon.metrics_catalog")
        if len(labels) != len(spec.labels):
            raise ValueError(f"{name} takes labels {spec.labels}, got values {labels}")

    def add(self, name: str, labels: LabelValues, value: float) -> None:
        self._check(name, labels, "sample")
        series = self._values.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + float(value)

    def lowest(self, name: str, labels: LabelValues, value: float) -> None:
        self._check(name, labels, "sample")
        series = self._values.setdefault(name, {})
        series[labels] = min(series.get(labels, math.inf), float(value))

    def histogram(self, name: str, labels: LabelValues, counts: HistogramCounts) -> None:
        self._check(name, labels, mc.HISTOGRAM)
        series = self._histograms.setdefault(name, {})
        if labels in series:
            series[labels].merge(counts)
        else:
            series[labels] = HistogramCounts(
                counts.bounds, list(counts.buckets), counts.count, counts.sum
            )

    def families(self) -> Iterator[Metric]:
        """Families in catalog order; a metric without samples is left out entirely."""
        for spec in mc.CATALOG:
            if spec.type == mc.HISTOGRAM and spec.name in self._histograms:
                hist = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                for labels, counts in sorted(self._histograms[spec.name].items()):
                    hist.add_metric(list(labels), counts.exposition_buckets(), counts.sum)
                yield hist
            elif spec.name in self._values:
                yield _family(spec, sorted(self._values[spec.name].items()))


def _family(spec: mc.MetricSpec, samples: list[tuple[LabelValues, float]]) -> Metric:
    family: Metric
    if spec.type == mc.COUNTER:
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    else:
        family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family


def _empty_family(spec: mc.MetricSpec) -> Metric:
    """A family without samples: what describe() reports, for the registry's name check."""
    if spec.type == mc.HISTOGRAM:
        return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    return _family(spec, [])


def _stat(worker: WorkerView, name: str) -> float:
    if name not in worker.stats:
        raise KeyError(
            f"worker {worker.name!r} ({worker.stage}) has no stats field "
            f"{name!r}: its stage's *_FIELDS must declare it"
        )
    return worker.stats[name]


def _add_worker(samples: _Samples, worker: WorkerView) -> None:
    camera = worker.camera or SHARED_CAMERA
    key = (camera, worker.stage)
    samples.add("actiond_stage_frames_in_total", key, _stat(worker, "frames_in_total"))
    samples.add("actiond_stage_frames_out_total", key, _stat(worker, "frames_out_total"))
    samples.histogram(
        "actiond_stage_processing_seconds", key, stats_histogram(worker, PROCESSING_PREFIX)
    )
    samples.add("actiond_worker_restarts_total", key, worker.restarts_total)
    samples.lowest("actiond_worker_up", key, 1.0 if worker.up else 0.0)
    for item, reason, name in worker.losses:
        if name in worker.stats:
            samples.add(mc.LOST_TOTAL, (camera, worker.stage, item, reason), worker.stats[name])
        else:
            _warn_once(
                samples, worker.stage, f"has no stats field {name!r} for its loss {item}/{reason}"
            )
    for metric, name in worker.exports:
        _add_export(samples, worker, camera, metric, name)


def _add_export(samples: _Samples, worker: WorkerView, camera: str, metric: str, name: str) -> None:
    """A per-camera metric a stage kind declares; one the catalog does not know (or whose
    field is missing) is left out and logged once: it never fails the scrape."""
    spec = mc.BY_NAME.get(metric)
    if spec is None or spec.labels != ("camera",):
        _warn_once(
            samples,
            worker.stage,
            f"exports {metric}, which is not a per-camera metric of daemon.metrics_catalog",
        )
        return
    try:
        if spec.type == mc.HISTOGRAM:
            samples.histogram(metric, (camera,), stats_histogram(worker, name))
        else:
            samples.add(metric, (camera,), _stat(worker, name))
    except KeyError as exc:
        _warn_once(samples, worker.stage, str(exc))


def _warn_once(samples: _Samples, stage: str, problem: str) -> None:
    if (stage, problem) not in samples.warned:
        samples.warned.add((stage, problem))
        log.warning("metrics: stage %s %s; left out of the scrape", stage, problem)


def _add_ring(samples: _Samples, name: str, stats: RingStats) -> None:
    samples.add("actiond_ring_occupancy_slots", (name,), stats.occupancy)
    samples.add("actiond_ring_capacity_slots", (name,), stats.capacity)
    for reason, count in sorted(stats.drops.items()):
        samples.add("actiond_ring_drops_total", (name, reason), count)


def _add_sink(samples: _Samples, sink: SinkView) -> None:
    samples.add("actiond_sink_up", (sink.name,), 1.0 if sink.up else 0.0)
    samples.add("actiond_sink_delivered_total", (sink.name,), sink.delivered_total)
    samples.add("actiond_sink_pending_events", (sink.name,), sink.pending)
    samples.add(
        "actiond_sink_dropped_total", (sink.name, SINK_DROPPED_OUTBOX_FULL), sink.dropped_total
    )
    samples.add("actiond_sink_snapshots_dropped_total", (sink.name,), sink.snapshots_dropped_total)
    for reason, count in sink.other_drops:
        samples.add("actiond_sink_dropped_total", (sink.name, reason), count)
    if sink.retries_total is not None:
        samples.add("actiond_sink_retries_total", (sink.name,), sink.retries_total)
    if sink.logins_failed_total is not None:
        samples.add("actiond_console_logins_failed_total", (), sink.logins_failed_total)


def _snapshot_samples(
    snapshot: MetricsSnapshot, warned: set[tuple[str, str]] | None = None
) -> _Samples:
    """Every collector sample of one snapshot (the families come from `.families()`)."""
    samples = _Samples(warned)
    samples.add("actiond_build_info", (__version__,), 1.0)
    for worker in snapshot.workers:
        _add_worker(samples, worker)
    for name, stats in snapshot.rings:
        _add_ring(samples, name, stats)
    for camera in snapshot.cameras:
        samples.add("actiond_camera_failed", (camera.name,), 1.0 if camera.failed else 0.0)
        samples.add("actiond_camera_expected_fps", (camera.name,), camera.expected_fps)
        samples.add("actiond_camera_up", (camera.name,), 1.0 if camera.up else 0.0)
    for provider in dict.fromkeys(snapshot.providers):
        samples.add("actiond_inference_providers_info", (provider,), 1.0)
    for sink in snapshot.sinks:
        _add_sink(samples, sink)
    for labels, count in sorted(snapshot.losses.items()):
        samples.add(mc.LOST_TOTAL, labels, count)
    return samples


class ActiondCollector(Collector):
    """Exports every catalog metric except the event ones, from a snapshot taken at scrape
    time. `snapshot` runs in the HTTP server's thread (see snapshot_on_loop)."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot
        self._warned: set[tuple[str, str]] = set()  # problems logged once per collector

    def describe(self) -> Iterator[Metric]:
        for name in COLLECTOR_METRICS:
            yield _empty_family(mc.BY_NAME[name])

    def collect(self) -> Iterator[Metric]:
        yield from _snapshot_samples(self._snapshot(), self._warned).families()


class EventMetrics(Collector):
    """actiond_events_total{camera,action} and actiond_event_latency_seconds{camera},
    counted by the supervisor as events start; safe to call from any thread.

    `cameras` and `actions` (both from the config and the model) create the series at
    zero up front, so the first event shows up in rate() and increase().
    """

    def __init__(self, cameras: Sequence[str] = (), actions: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        self._bounds = mc.HISTOGRAM_BUCKETS_S[EVENT_LATENCY]
        self._events: dict[LabelValues, float] = {(c, a): 0.0 for c in cameras for a in actions}
        self._latency = {c: HistogramCounts(self._bounds) for c in cameras}

    def add_series(self, cameras: Sequence[str], actions: Sequence[str]) -> None:
        """Start the series of cameras and actions a reload added at zero."""
        with self._lock:
            for key in ((c, a) for c in cameras for a in actions):
                self._events.setdefault(key, 0.0)
            for camera in cameras:
                self._latency.setdefault(camera, HistogramCounts(self._bounds))

    def event(self, camera: str, action: str) -> None:
        with self._lock:
            key = (camera, action)
            self._events[key] = self._events.get(key, 0.0) + 1.0

    def latency(self, camera: str, seconds: float) -> None:
        """Record capture -> event time; both ends must come from time.monotonic_ns()."""
        if not seconds >= 0.0:  # also rejects NaN
            raise ValueError(
                f"event latency must be >= 0 s (got {seconds!r}); take capture "
                f"and event times from the same monotonic clock"
            )
        with self._lock:
            self._latency.setdefault(camera, HistogramCounts(self._bounds)).observe(seconds)

    def describe(self) -> Iterator[Metric]:
        for name in EVENT_METRICS:
            yield _empty_family(mc.BY_NAME[name])

    def collect(self) -> Iterator[Metric]:
        samples = _Samples()
        with self._lock:
            for key, count in self._events.items():
                samples.add(EVENTS_TOTAL, key, count)
            for camera, counts in self._latency.items():
                samples.histogram(EVENT_LATENCY, (camera,), counts)
        yield from samples.families()
