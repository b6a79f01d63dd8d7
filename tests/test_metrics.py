"""The Prometheus endpoint: real rings and stats blocks, scraped over HTTP, checked by
prometheus_client's parser, the metric catalog and `promtool check metrics`."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import uvloop
from metrics_helpers import HTTP_TIMEOUT_S, histogram_series, label_set, parse_samples, scrape_text
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from ring_workers import ShmArea

import daemon
from daemon import metrics_catalog as mc
from daemon.ipc import FrameSpec, Policy, RingSpec, RingStats, attach_producer
from daemon.ipc.stats import LATENCY_BUCKETS_S, StatsBlock
from daemon.outputs.metrics import (
    SHARED_CAMERA,
    ActiondCollector,
    CameraView,
    EventMetrics,
    MetricsServer,
    MetricsServerError,
    MetricsSnapshot,
    WorkerView,
    make_registry,
    snapshot_on_loop,
)
from daemon.outputs.sinks.protocol import SinkView
from daemon.stages.registry import KINDS, stats_fields
from daemon.stages.worker import COMMON_FIELDS

pytest_plugins = ["ring_workers"]  # the shm fixture: a private tmpfs dir, leak-checked
pytestmark = pytest.mark.timeout(30)

FRAME = FrameSpec((8, 8, 3), "uint8")
PROMTOOL_TIMEOUT_S = 30
CAMERA = "front"
# Latencies observed into the blocks: one below the first bound, one mid-way, one huge.
PROCESSING_S = (0.0005, 0.02, 0.7)
INFERENCE_S = {0: (0.03, 0.2), 1: (4.0,)}
Served = tuple[MetricsServer, EventMetrics]


def _fill_rings(shm: ShmArea) -> list[tuple[str, RingStats]]:
    oldest = shm.ring("front.frames", RingSpec(FRAME, capacity=4, policy=Policy.DROP_OLDEST))
    newest = shm.ring("clips", RingSpec(FRAME, capacity=2, policy=Policy.DROP_NEWEST))
    frame = np.zeros(FRAME.shape, np.uint8)
    with attach_producer(oldest.path) as producer:
        assert all(producer.put(frame, i, camera=CAMERA) for i in range(7))  # 3 dropped
    with attach_producer(newest.path) as producer:
        accepted = [producer.put(frame, i, camera=CAMERA) for i in range(5)]
    assert accepted == [True, True, False, False, False]
    with oldest.consumer("main") as consumer:
        lease = consumer.get(1.0)
        assert lease is not None
        lease.release()
    return [("front.frames", oldest.stats()), ("clips", newest.stats())]


def _make_blocks(shm: ShmArea) -> dict[str, StatsBlock]:
    blocks: dict[str, StatsBlock] = {}
    for name, kind in (
        ("source", "source"),
        ("motion", "motion"),
        ("overlay", "overlay"),
        ("infer.0", "infer"),
        ("infer.1", "infer"),
        ("gate", "gate"),
    ):
        block = StatsBlock.create(f"{name}.stats", stats_fields(kind), shm.run_id, shm.dir)
        blocks[name] = block
        block.add("frames_in_total", 10)
        block.add("frames_out_total", 9)
    for seconds in PROCESSING_S:
        blocks["motion"].observe("processing_seconds", seconds)
    for replica, latencies in INFERENCE_S.items():
        for seconds in latencies:
            blocks[f"infer.{replica}"].observe("inference_seconds", seconds)
    blocks["source"].set("reconnects_total", 2)
    blocks["source"].set("stalls_total", 5)
    blocks["overlay"].set("mjpeg_viewers", 3)
    blocks["overlay"].set("mjpeg_viewers_refused_total", 7)
    return blocks


def _workers(blocks: dict[str, StatsBlock]) -> list[WorkerView]:
    views = []
    for name, block in blocks.items():
        stage = name.split(".")[0]
        camera = "" if stage == "infer" else CAMERA
        up = name != "infer.1"  # one replica down: infer is not all up
        restarts = {"overlay": 3, "infer.0": 1, "infer.1": 4}.get(name, 0)
        views.append(kind_view(name, camera, stage, up, restarts, block.snapshot()))
    return views


def kind_view(
    name: str, camera: str, stage: str, up: bool, restarts: int, stats: dict[str, float]
) -> WorkerView:
    """A worker's view with what its stage kind declares, as the supervisor builds it."""
    kind = KINDS[stage]
    return WorkerView(
        name,
        camera,
        stage,
        up,
        restarts,
        stats,
        tuple((e.metric, e.field) for e in kind.exports),
        tuple((loss.item, loss.reason, loss.field) for loss in kind.losses),
    )


@pytest.fixture
def pipeline(shm: ShmArea) -> Iterator[MetricsSnapshot]:
    """A snapshot of real rings and stats blocks: one camera, two infer replicas."""
    rings = _fill_rings(shm)
    blocks = _make_blocks(shm)
    try:
        yield MetricsSnapshot(
            workers=_workers(blocks),
            rings=rings,
            cameras=[CameraView(CAMERA, False, 25.0), CameraView("back", True, 10.0)],
            providers=["CPUExecutionProvider"],
            sinks=[
                SinkView(
                    "mqtt",
                    up=True,
                    delivered_total=12,
                    pending=3,
                    dropped_total=1,
                    snapshots_dropped_total=2,
                ),
                SinkView(
                    "jsonl",
                    up=False,
                    delivered_total=15,
                    pending=0,
                    dropped_total=0,
                    retries_total=4,
                ),
                SinkView(
                    "console",
                    up=True,
                    delivered_total=7,
                    pending=0,
                    dropped_total=0,
                    logins_failed_total=5,
                ),
            ],
        )
    finally:
        for block in blocks.values():
            block.close(unlink=True)


@pytest.fixture
def served(pipeline: MetricsSnapshot) -> Iterator[Served]:
    registry, events = make_registry(
        lambda: pipeline, cameras=[CAMERA, "back"], actions=["walk", "help"]
    )
    with MetricsServer("127.0.0.1:0", registry) as server:
        yield server, events


def _expected_cumulative(values: tuple[float, ...]) -> list[tuple[float, float]]:
    return [(b, float(sum(v <= b for v in values))) for b in LATENCY_BUCKETS_S] + [
        (float("inf"), float(len(values)))
    ]


def test_scrape_reports_stage_counters_and_histograms(served: Served) -> None:
    server, _ = served
    samples = parse_samples(scrape_text(server.url))
    motion = label_set(camera=CAMERA, stage="motion")
    infer = label_set(camera=SHARED_CAMERA, stage="infer")
    assert samples["actiond_stage_frames_in_total"][motion] == 10
    assert samples["actiond_stage_frames_out_total"][motion] == 9
    assert samples["actiond_stage_frames_in_total"][infer] == 20, "replicas are summed"
    assert label_set(camera="", stage="infer") not in samples["actiond_stage_frames_in_total"]
    buckets, count, total = histogram_series(
        samples, "actiond_stage_processing_seconds", camera=CAMERA, stage="motion"
    )
    assert buckets == _expected_cumulative(PROCESSING_S)
    assert count == len(PROCESSING_S) and total == pytest.approx(sum(PROCESSING_S))
    all_inference = tuple(s for lat in INFERENCE_S.values() for s in lat)
    buckets, count, total = histogram_series(
        samples, "actiond_inference_seconds", camera=SHARED_CAMERA
    )
    assert buckets == _expected_cumulative(all_inference)
    assert buckets[-1][1] == count == len(all_inference)
    assert total == pytest.approx(sum(all_inference))
    for key, count in samples["actiond_stage_processing_seconds_count"].items():
        series, _, _ = histogram_series(samples, "actiond_stage_processing_seconds", **dict(key))
        assert [c for _, c in series] == sorted(c for _, c in series), "cumulative"
        assert series[-1] == (float("inf"), count)


def test_scrape_reports_rings_workers_cameras_and_mqtt(served: Served) -> None:
    server, _ = served
    samples = parse_samples(scrape_text(server.url))
    frames, clips = label_set(ring="front.frames"), label_set(ring="clips")
    assert samples["actiond_ring_capacity_slots"] == {frames: 4, clips: 2}
    assert samples["actiond_ring_occupancy_slots"] == {frames: 3, clips: 2}
    drops = samples["actiond_ring_drops_total"]
    assert drops[label_set(ring="front.frames", reason="drop_oldest")] == 3
    assert drops[label_set(ring="clips", reason="drop_newest")] == 3
    assert drops[label_set(ring="clips", reason="drop_oldest")] == 0
    assert sum(drops.values()) == 6
    restarts = samples["actiond_worker_restarts_total"]
    assert restarts[label_set(camera=CAMERA, stage="overlay")] == 3
    assert restarts[label_set(camera=SHARED_CAMERA, stage="infer")] == 5
    up = samples["actiond_worker_up"]
    assert up[label_set(camera=CAMERA, stage="source")] == 1
    assert up[label_set(camera=SHARED_CAMERA, stage="infer")] == 0, "one replica is down"
    assert samples["actiond_camera_failed"] == {
        label_set(camera=CAMERA): 0,
        label_set(camera="back"): 1,
    }
    assert samples["actiond_camera_expected_fps"][label_set(camera=CAMERA)] == 25.0
    assert samples["actiond_source_reconnects_total"] == {label_set(camera=CAMERA): 2}
    assert samples["actiond_source_stalls_total"] == {label_set(camera=CAMERA): 5}
    assert samples["actiond_mjpeg_viewers"] == {label_set(camera=CAMERA): 3}
    assert samples["actiond_mjpeg_viewers_refused_total"] == {label_set(camera=CAMERA): 7}
    assert samples["actiond_inference_providers_info"] == {
        label_set(provider="CPUExecutionProvider"): 1
    }
    assert samples["actiond_build_info"] == {label_set(version=daemon.__version__): 1}
    assert samples["actiond_sink_up"] == {
        label_set(sink="mqtt"): 1,
        label_set(sink="jsonl"): 0,
        label_set(sink="console"): 1,
    }
    assert samples["actiond_sink_delivered_total"] == {
        label_set(sink="mqtt"): 12,
        label_set(sink="jsonl"): 15,
        label_set(sink="console"): 7,
    }
    assert samples["actiond_sink_pending_events"] == {
        label_set(sink="mqtt"): 3,
        label_set(sink="jsonl"): 0,
        label_set(sink="console"): 0,
    }
    assert samples["actiond_sink_dropped_total"] == {
        label_set(sink="mqtt", reason="outbox_full"): 1,
        label_set(sink="jsonl", reason="outbox_full"): 0,
        label_set(sink="console", reason="outbox_full"): 0,
    }
    assert samples["actiond_sink_retries_total"] == {label_set(sink="jsonl"): 4}
    assert samples["actiond_sink_snapshots_dropped_total"] == {
        label_set(sink="mqtt"): 2,
        label_set(sink="jsonl"): 0,
        label_set(sink="console"): 0,
    }
    assert samples["actiond_console_logins_failed_total"] == {label_set(): 5}


def test_live_values_are_read_at_scrape_time(shm: ShmArea) -> None:
    block = StatsBlock.create("live.stats", stats_fields("source"), shm.run_id, shm.dir)
    try:

        def snapshot() -> MetricsSnapshot:
            return MetricsSnapshot(
                workers=[WorkerView("front.source", CAMERA, "source", True, 0, block.snapshot())]
            )

        registry, _ = make_registry(snapshot)
        key = label_set(camera=CAMERA, stage="source")
        with MetricsServer("127.0.0.1:0", registry) as server:
            first = parse_samples(scrape_text(server.url))["actiond_stage_frames_out_total"][key]
            block.add("frames_out_total", 7)
            second = parse_samples(scrape_text(server.url))["actiond_stage_frames_out_total"][key]
        assert (first, second) == (0, 7)
    finally:
        block.close(unlink=True)


def test_events_and_latency(served: Served) -> None:
    server, events = served
    before = parse_samples(scrape_text(server.url))
    assert before["actiond_events_total"][label_set(camera="back", action="help")] == 0, (
        "configured series start at zero"
    )
    events.event(CAMERA, "walk")
    events.event(CAMERA, "walk")
    events.event("back", "help")
    for seconds in (0.3, 1.5, 40.0):
        events.latency(CAMERA, seconds)
    samples = parse_samples(scrape_text(server.url))
    assert samples["actiond_events_total"][label_set(camera=CAMERA, action="walk")] == 2
    assert samples["actiond_events_total"][label_set(camera="back", action="help")] == 1
    assert samples["actiond_events_total"][label_set(camera=CAMERA, action="help")] == 0
    buckets, count, total = histogram_series(
        samples, "actiond_event_latency_seconds", camera=CAMERA
    )
    bounds = mc.HISTOGRAM_BUCKETS_S["actiond_event_latency_seconds"]
    assert [b for b, _ in buckets] == [*bounds, float("inf")]
    assert dict(buckets)[0.5] == 1 and dict(buckets)[2.0] == 2 and dict(buckets)[32.0] == 2
    assert buckets[-1][1] == count == 3 and total == pytest.approx(41.8)
    with pytest.raises(ValueError, match="monotonic clock"):
        events.latency(CAMERA, -0.1)
    with pytest.raises(ValueError, match=">= 0 s"):
        events.latency(CAMERA, float("nan"))


def test_no_sink_series_without_sinks(pipeline: MetricsSnapshot) -> None:
    snapshot = MetricsSnapshot(workers=pipeline.workers, sinks=())
    registry, _ = make_registry(lambda: snapshot)
    with MetricsServer("127.0.0.1:0", registry) as server:
        text = scrape_text(server.url)
    assert "actiond_stage_frames_in_total" in text
    assert "actiond_sink" not in text, "no sink series (not even HELP) without a sink"


def test_exported_metrics_match_the_catalog(served: Served) -> None:
    server, events = served
    events.latency(CAMERA, 1.0)
    exported = {}
    for family in text_string_to_metric_families(scrape_text(server.url)):
        name = family.name + ("_total" if family.type == mc.COUNTER else "")
        spec = mc.BY_NAME.get(name)
        assert spec is not None, f"{name} is not in daemon.metrics_catalog"
        assert family.type == spec.type, name
        assert not name.endswith("_created")
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(spec.labels), sample
            if sample.name.endswith("_bucket"):
                assert float(sample.labels["le"]) in (
                    *mc.HISTOGRAM_BUCKETS_S[name],
                    float("inf"),
                ), sample
        exported[name] = family
    assert set(exported) == {spec.name for spec in mc.CATALOG}, "every catalog metric"
    assert mc.HISTOGRAM_BUCKETS_S["actiond_stage_processing_seconds"] == LATENCY_BUCKETS_S
    assert mc.HISTOGRAM_BUCKETS_S["actiond_inference_seconds"] == LATENCY_BUCKETS_S


def test_scrape_passes_promtool_check_metrics(served: Served) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install the Debian package `prometheus`")
    server, events = served
    events.event(CAMERA, "walk")
    events.latency(CAMERA, 0.7)
    text = scrape_text(server.url)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", (
        result.stdout + result.stderr
    )


def test_torn_histogram_read_is_exported_cumulative() -> None:
    """A scrape racing StatsBlock.observe() can see a later bucket ahead of an earlier one
    and of the count; the export must still be a valid cumulative histogram."""
    fields = stats_fields("motion")
    stats = dict.fromkeys(fields, 0.0)
    stats.update(
        {
            "processing_seconds_bucket_5": 2.0,
            "processing_seconds_bucket_6": 1.0,
            "processing_seconds_bucket_7": 3.0,
            "processing_seconds_count": 2.0,
            "processing_seconds_sum": 0.3,
        }
    )
    view = WorkerView("front.motion", CAMERA, "motion", True, 0, stats)
    registry, _ = make_registry(lambda: MetricsSnapshot(workers=[view]))
    samples = parse_samples(generate_latest(registry).decode())
    buckets, count, _ = histogram_series(
        samples, "actiond_stage_processing_seconds", camera=CAMERA, stage="motion"
    )
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    assert counts[5:8] == [2.0, 2.0, 3.0] and count == 3.0 == counts[-1]


def test_missing_stats_field_fails_the_scrape_naming_the_worker() -> None:
    view = WorkerView(
        "front.motion", CAMERA, "motion", True, 0, {"frames_in_total": 1.0, "frames_out_total": 1.0}
    )
    registry, _ = make_registry(lambda: MetricsSnapshot(workers=[view]))
    with pytest.raises(KeyError, match="front.motion.*histogram_fields"):
        generate_latest(registry)


def test_a_stage_kind_the_catalog_does_not_know_is_scraped() -> None:
    """A new kind ("tap") gets the series every stage has and its losses; an export the
    catalog lacks, or one naming a field its block lacks, is left out, not a failed scrape."""
    stats = dict.fromkeys(COMMON_FIELDS, 0.0)
    stats.update({"frames_in_total": 4.0, "lost_frame_skipped_total": 2.0})
    tap = WorkerView(
        "front.tap",
        CAMERA,
        "tap",
        True,
        0,
        stats,
        exports=(
            ("actiond_tap_things_total", "things_total"),
            ("actiond_source_reconnects_total", "reconnects_total"),
        ),
        losses=(
            ("frame", "skipped", "lost_frame_skipped_total"),
            ("frame", "other", "lost_frame_other_total"),
        ),
    )
    registry, _ = make_registry(lambda: MetricsSnapshot(workers=[tap]))
    samples = parse_samples(generate_latest(registry).decode())
    assert samples["actiond_stage_frames_in_total"][label_set(camera=CAMERA, stage="tap")] == 4.0
    assert samples["actiond_lost_total"] == {
        label_set(camera=CAMERA, stage="tap", item="frame", reason="skipped"): 2.0
    }
    assert "actiond_source_reconnects_total" not in samples


def test_registry_rejects_a_second_collector_for_the_same_names() -> None:
    registry, _ = make_registry(MetricsSnapshot)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ActiondCollector(MetricsSnapshot))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(EventMetrics())


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_stop_releases_the_port(served: Served) -> None:
    server, _ = served
    port = server.port
    assert port > 0 and scrape_text(server.url)
    server.stop()
    server.stop()  # idempotent
    assert _refused(port)
    registry, _ = make_registry(MetricsSnapshot)
    with MetricsServer(f"127.0.0.1:{port}", registry) as again:
        assert again.port == port
        assert "actiond_build_info" in scrape_text(again.url)
    assert _refused(port)


def test_listen_errors_name_the_problem() -> None:
    registry, _ = make_registry(MetricsSnapshot)
    with pytest.raises(MetricsServerError, match="host:port"):
        MetricsServer("localhost", registry)
    with MetricsServer("127.0.0.1:0", registry) as first:
        busy = MetricsServer(f"127.0.0.1:{first.port}", registry)
        with pytest.raises(MetricsServerError, match=f"127.0.0.1:{first.port}.*metrics.listen"):
            busy.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = MetricsServer("127.0.0.1:0", registry).port


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_snapshot_on_loop_builds_on_the_loop_thread(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    loop = new_loop()
    thread = threading.Thread(target=loop.run_forever, name="supervisor-loop")
    thread.start()
    built_on: list[str] = []

    def build() -> MetricsSnapshot:
        built_on.append(threading.current_thread().name)
        return MetricsSnapshot(cameras=[CameraView(CAMERA, True, 5.0)])

    try:
        registry, _ = make_registry(snapshot_on_loop(loop, build))
        with MetricsServer("127.0.0.1:0", registry) as server:
            samples = parse_samples(scrape_text(server.url))
        assert samples["actiond_camera_failed"] == {label_set(camera=CAMERA): 1}
        assert built_on == ["supervisor-loop"]
        wedge = threading.Event()
        loop.call_soon_threadsafe(wedge.wait)  # a wedged loop: the scrape must fail
        try:
            with pytest.raises(TimeoutError, match="did not build a metrics snapshot"):
                snapshot_on_loop(loop, build, timeout_s=0.2)()
        finally:
            wedge.set()
        # The loop runs callbacks in order: the timed-out build comes before this one.
        assert snapshot_on_loop(loop, build)().cameras[0].failed
        assert built_on == ["supervisor-loop"] * 2, "the timed-out build was cancelled"

        async def from_the_loop() -> MetricsSnapshot:
            return snapshot_on_loop(loop, build)()

        with pytest.raises(RuntimeError, match="its own loop"):
            asyncio.run_coroutine_threadsafe(from_the_loop(), loop).result(HTTP_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HTTP_TIMEOUT_S)
        loop.close()


def test_a_failing_snapshot_fails_the_scrape() -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("arbiter state unavailable")

    registry, _ = make_registry(broken)
    with (
        MetricsServer("127.0.0.1:0", registry) as server,
        pytest.raises(urllib.error.HTTPError) as err,
    ):
        scrape_text(server.url)
    assert err.value.code == 500
