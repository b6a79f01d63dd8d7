"""The Prometheus metric catalog: every metric actiond exports, in one place.

The collector builds its metric families from this table, and the shipped Grafana
dashboard and alert rules are tested against it, so a renamed metric breaks a test
instead of silently emptying a panel or muting an alert.

Names are the exposed names: counters carry their `_total` suffix; a histogram is listed
by its base name and is exposed as `<name>_bucket`, `<name>_sum` and `<name>_count`.
Labels are bounded by configuration (camera, stage, ring, reason, action, provider) and
by the declared stage kinds (stage, item, reason). Workers shared by all cameras (the
infer replicas) carry camera="all"; replicas are summed into one series per (camera,
stage). Every series also carries `device` (COMMON_LABELS): daemon.device_id, so a fleet
of boxes on one Prometheus is told apart by name (the dashboard's device selector).

Losses have one family, actiond_lost_total{camera,stage,item,reason}: every place a
frame, clip, result, event or snapshot can be lost declares a (item, reason) on its
stage kind (daemon.stages.kinds.Loss) and counts it in its stats block; the supervisor
adds its own (stage "intake"). The rings' drops stay beside it, in
actiond_ring_drops_total{ring,reason}.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from daemon.ipc.stats import LATENCY_BUCKETS_S

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
METRIC_TYPES = (COUNTER, GAUGE, HISTOGRAM)

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Per-frame work (optical flow a few ms, a model run on a small box up to ~1 s) is counted
# by the workers in their stats blocks: these are the buckets the blocks really have.
STAGE_BUCKETS_S = LATENCY_BUCKETS_S
# Capture -> event spans a whole clip (T frames at the camera's fps) plus inference.
# Tenths of a second up to 1 s (the target is a p99 under 1 s; quantiles are interpolated
# inside a bucket, so wide buckets there would hide it), then doubling.
EVENT_LATENCY_BUCKETS_S = (
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 32.0,
)  # fmt: skip


class MetricSpec(NamedTuple):
    """One exported metric: exposed name, Prometheus type, label names, help text."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


LOST_TOTAL = "actiond_lost_total"
# The daemon adds this label to every series it exports, valued daemon.device_id
# (daemon.outputs.metrics.DeviceLabel): boxes sharing a Prometheus stay apart by name.
# It is not repeated in each spec's labels below.
DEVICE_LABEL = "device"
COMMON_LABELS = (DEVICE_LABEL,)

CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec(
        "actiond_build_info",
        GAUGE,
        ("version",),
        "Always 1; the version label names the running actiond.",
    ),
    MetricSpec(
        "actiond_stage_frames_in_total",
        COUNTER,
        ("camera", "stage"),
        "Frames a stage took from its input ring (source: frames decoded).",
    ),
    MetricSpec(
        "actiond_stage_frames_out_total",
        COUNTER,
        ("camera", "stage"),
        "Frames a stage handed on to its output ring or outputs.",
    ),
    MetricSpec(
        "actiond_stage_processing_seconds",
        HISTOGRAM,
        ("camera", "stage"),
        "Time a stage spent on one frame, excluding waits for input.",
    ),
    MetricSpec(
        "actiond_event_latency_seconds",
        HISTOGRAM,
        ("camera",),
        "Time from the capture of a window's last frame to its action event (live sources "
        "only: a file's frames carry media time).",
    ),
    MetricSpec(
        "actiond_ring_occupancy_slots",
        GAUGE,
        ("ring",),
        "Slots of a frame ring that hold a frame not yet consumed.",
    ),
    MetricSpec("actiond_ring_capacity_slots", GAUGE, ("ring",), "Slots in a frame ring."),
    MetricSpec(
        "actiond_ring_drops_total",
        COUNTER,
        ("ring", "reason"),
        "Frames dropped by a ring, by reason (drop_oldest, drop_newest, reclaimed, busy).",
    ),
    MetricSpec(
        "actiond_worker_restarts_total",
        COUNTER,
        ("camera", "stage"),
        "Times the supervisor restarted a worker process (summed over replicas).",
    ),
    MetricSpec(
        "actiond_worker_up",
        GAUGE,
        ("camera", "stage"),
        "1 while every worker process of the camera and stage runs with a fresh heartbeat, else 0.",
    ),
    MetricSpec(
        "actiond_camera_failed",
        GAUGE,
        ("camera",),
        "1 when a camera exhausted its crash budget and was stopped, else 0.",
    ),
    MetricSpec(
        "actiond_camera_up",
        GAUGE,
        ("camera",),
        "1 while the camera's frames flow (its source runs and has its stream), else 0: "
        "what its MQTT availability topic says.",
    ),
    MetricSpec(
        "actiond_camera_expected_fps",
        GAUGE,
        ("camera",),
        "Frame rate the camera is configured or negotiated to deliver.",
    ),
    MetricSpec(
        "actiond_source_reconnects_total",
        COUNTER,
        ("camera",),
        "Times a source released and reopened its stream.",
    ),
    MetricSpec(
        "actiond_source_stalls_total",
        COUNTER,
        ("camera",),
        "Reads that timed out or returned no frame on an open stream.",
    ),
    MetricSpec(
        "actiond_analysis_skipped_total",
        COUNTER,
        ("camera",),
        "Frames the person pipeline's gate did not send for analysis (no motion, or above "
        "the camera's analyse_fps): skipped by design, not lost.",
    ),
    MetricSpec(
        "actiond_mjpeg_viewers",
        GAUGE,
        ("camera",),
        "Browsers watching the camera's MJPEG stream now.",
    ),
    MetricSpec(
        "actiond_mjpeg_viewers_refused_total",
        COUNTER,
        ("camera",),
        "MJPEG stream requests refused because display.mjpeg_max_clients were watching.",
    ),
    MetricSpec(
        "actiond_clips_total",
        COUNTER,
        ("camera",),
        "Event clips written (WebM, under <state_dir>/clips/<camera>/); clips not recorded "
        'are in actiond_lost_total{stage="overlay",item="recording"}.',
    ),
    MetricSpec(
        "actiond_clips_deleted_total",
        COUNTER,
        ("camera",),
        "Event clips of the camera deleted by retention (clips.max_age_days, "
        "clips.max_total_mb; it covers every camera's clips, whichever overlay runs it).",
    ),
    MetricSpec(
        "actiond_inference_seconds",
        HISTOGRAM,
        ("camera",),
        "Time of one model run (one clip) in onnxruntime, over all replicas.",
    ),
    MetricSpec(
        "actiond_inference_providers_info",
        GAUGE,
        ("provider",),
        "1 for each onnxruntime execution provider actually in use.",
    ),
    MetricSpec("actiond_events_total", COUNTER, ("camera", "action"), "Action events started."),
    MetricSpec(
        LOST_TOTAL,
        COUNTER,
        ("camera", "stage", "item", "reason"),
        "Items lost inside the pipeline, by the stage that lost them, what they were "
        "(frame, clip, result, event, snapshot, recording) and why. source: frame fps_limit "
        "(live frames skipped to honour the camera's fps), frame undecodable (damaged packets "
        "of a file or stream, skipped); infer: result no_ring "
        '(camera="all"); overlay: frame gap (frame ids that never reached it), '
        "frame viewer_behind (frames an MJPEG viewer missed), frame live_too_large (a "
        "live-view JPEG over its slot), recording disk_low / too_many_open / write_failed / "
        "cut_disk_low (event clips not recorded or cut short), frame clip_queue_full (a "
        "frame an event clip missed), result evicted, "
        "result not_arrived (a file's last results), event send_timeout / "
        "supervisor_gone / send_failed, snapshot too_large; intake: event "
        'not_stored, event malformed (camera="all"). Ring drops are in '
        "actiond_ring_drops_total.",
    ),
    MetricSpec(
        "actiond_sink_up",
        GAUGE,
        ("sink",),
        "1 while an event sink can deliver (MQTT: connected to the broker; jsonl: "
        "its last write succeeded; webhook: its last try was answered, 2xx or a "
        "refusal), else 0.",
    ),
    MetricSpec(
        "actiond_sink_retries_total",
        COUNTER,
        ("sink",),
        "Failed tries to deliver an event that the sink retries later (webhook: no "
        "answer, timeout, 5xx, 408, 429; jsonl: a failed write). MQTT re-sends after a "
        "reconnect and exports no such series.",
    ),
    MetricSpec(
        "actiond_console_logins_failed_total",
        COUNTER,
        (),
        "Failed logins to the web console (a wrong token, posted to /login or sent as "
        "Authorization: Bearer); after 5 from one address within a minute that address "
        "is refused (429) until the minute has passed.",
    ),
    MetricSpec(
        "actiond_sink_delivered_total",
        COUNTER,
        ("sink",),
        "Events an event sink delivered (MQTT: acknowledged by the broker; jsonl: "
        "written and fsync'd).",
    ),
    MetricSpec(
        "actiond_sink_pending_events",
        GAUGE,
        ("sink",),
        "Events in the durable outbox waiting for an event sink to deliver them.",
    ),
    MetricSpec(
        "actiond_sink_dropped_total",
        COUNTER,
        ("sink", "reason"),
        "Events an event sink never delivered, by reason (outbox_full: dropped "
        "oldest first from its full queue in the outbox; rejected: every webhook "
        "receiver refused it with a 4xx other than 408/429, or a redirect).",
    ),
    MetricSpec(
        "actiond_sink_snapshots_dropped_total",
        COUNTER,
        ("sink",),
        "Event snapshots dropped unsent to bound the outbox's size (oldest first; "
        "their events are kept).",
    ),
)

HISTOGRAM_BUCKETS_S: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "actiond_stage_processing_seconds": STAGE_BUCKETS_S,
        "actiond_event_latency_seconds": EVENT_LATENCY_BUCKETS_S,
        "actiond_inference_seconds": STAGE_BUCKETS_S,
    }
)

BY_NAME: Mapping[str, MetricSpec] = MappingProxyType({spec.name: spec for spec in CATALOG})


def series_names(spec: MetricSpec) -> tuple[str, ...]:
    """The sample names a metric shows up under in the exposition and in PromQL."""
    if spec.type == HISTOGRAM:
        return tuple(spec.name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return (spec.name,)


def spec_for_series(series: str) -> MetricSpec | None:
    """The catalog entry a PromQL/exposition sample name belongs to, None if unknown."""
    spec = BY_NAME.get(series)
    if spec is not None:
        # A histogram's base name has no samples of its own: PromQL must use a suffix.
        return spec if spec.type != HISTOGRAM else None
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and base in BY_NAME and BY_NAME[base].type == HISTOGRAM:
            return BY_NAME[base]
    return None
