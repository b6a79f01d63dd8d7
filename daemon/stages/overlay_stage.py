"""Overlay stage: joins each frame with the action result for it **by frame id**, draws
flow, label and fps, and feeds the display outputs.

Results come every `stride` frames from replicas that may finish out of order. A frame
is drawn with the newest result whose frame id is not after it; a result that arrives
later is applied from its own frame on, never to an earlier one (lockstep joins pair a
frame with another frame's result after any drop). Every result is fed to the event
tracker once, in frame order, with the first frame shown at or after it.

A file's last window is computed after its last frame has passed the overlay, so the
newest frame of a finite file is held until the next one comes; at the end of the file
the overlay waits (bounded) until it has a result for every clip the motion stage sent,
then shows the held frame with it. When a live stream is lost (the source says so in its
stats block), open events end at once with reason `stream_lost`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO

import numpy as np

from daemon.capture.table import SOURCES
from daemon.config import camera_display
from daemon.display.outputs import DisplayOutputs, DisplayUnavailable, open_outputs
from daemon.events import END_END_OF_STREAM, END_STOPPED, END_STREAM_LOST
from daemon.ipc import Consumer, attach_consumer
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.draw import draw_overlay, draw_people, draw_result
from daemon.stages.eventing import (
    EVENT_LOSSES,
    EventEmitter,
    event_scores,
    event_send_timeout_s,
    event_settings,
)
from daemon.stages.kinds import FRAME, RESULT, Export, InPort, Loss, StageKind, WorkerContext
from daemon.stages.overlay_taps import TAP_EXPORTS, TAP_FIELDS, TAP_LOSSES, FrameTaps
from daemon.stages.people_eventing import PeopleEmitter
from daemon.stages.presence import PEOPLE_PORT, Presence
from daemon.stages.upstream import SourceState, Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec, opened, timed

OVERLAY_FIELDS = (
    "last_frame_id",
    "last_result_frame_id",
    "frame_order_errors_total",
    "results_total",
    "display_fps",
    "events_total",
    "mjpeg_viewers",
    "mjpeg_viewers_refused_total",
)
# Frame ids that never reached the overlay (dropped upstream, by a ring or a stage).
LOST_GAP = Loss(FRAME, "gap")
# Frames an MJPEG viewer missed by reading slower than the overlay publishes (summed
# over viewers).
LOST_VIEWER_BEHIND = Loss(FRAME, "viewer_behind")
# Results pushed out of the join buffer before any frame took them to the events.
LOST_EVICTED = Loss(RESULT, "evicted")
# Results of a file's last clips that had not come LAST_RESULTS_WAIT_S after its end.
LOST_NOT_ARRIVED = Loss(RESULT, "not_arrived")
OVERLAY_LOSSES = (LOST_GAP, LOST_VIEWER_BEHIND, LOST_EVICTED, LOST_NOT_ARRIVED)
RESULTS_KEPT = 64
# At the end of a file: how long to wait for the results of the last clips (normally
# they come within one inference; they never come if a clip was dropped or lost).
LAST_RESULTS_WAIT_S = 5.0
DEFAULT_FPS = 10.0  # recorder frame rate when the camera's fps is left to the source
FPS_WINDOW_S = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlayArgs:
    result: records.ResultSpec  # what a result holds, and the model's labels
    camera_index: int  # the camera's index (its MJPEG port offset)
    events_socket: str  # "" : no events
    frame_log: str
    upstream_stats: tuple[str, ...]  # the camera's motion worker: has it finished?
    source_stats: str  # the camera's source: is its stream up?
    live_slot: str  # the console's live JPEG slot ("": none)


class OverlayStage:
    """Consumes the view ring and the camera's results ring; draws and displays."""

    def __init__(
        self, spec: WorkerSpec[OverlayArgs], stats: StatsBlock, heartbeat: Heartbeat
    ) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        cfg = spec.config
        self._cam = next(c for c in cfg.cameras if c.name == spec.camera)
        self._view = records.view_record(self._cam, cfg)
        self._result = spec.args.result
        self._labels = self._result.labels
        self._result_record = records.result_record(self._result)
        self._results: OrderedDict[int, tuple[records.Result, int]] = OrderedDict()
        self._fed_result_id = -1
        self._events: EventEmitter | None = None
        self._people: PeopleEmitter | None = None  # detections with keypoints: people
        self._presence: Presence | None = None  # require_person: who the detector found
        self._last_id = int(stats.get("last_frame_id")) if stats.get("frames_in_total") else -1
        self._fps_marks: list[float] = []
        self._frames_in: Consumer | None = None
        self._results_in: Consumer | None = None
        self._outputs: DisplayOutputs | None = None
        self._viewers_refused = 0
        self._viewer_skips = 0
        self._frame_log: IO[str] | None = None
        self._upstream = Upstream(list(spec.args.upstream_stats))
        self._source = SourceState(spec.args.source_stats)
        self._finite = SOURCES.kind_of(self._cam.source).ends and not self._cam.loop
        self._held: tuple[int, int, np.ndarray, np.ndarray] | None = None  # id, ns, frame, flow
        self._finish_deadline: float | None = None
        self._end_reason = END_STOPPED
        self._taps: FrameTaps | None = None  # the live slot's feed and the event clips

    def open(self) -> None:
        self._frames_in = attach_consumer(self._spec.rings["view"], KIND.name)
        self._results_in = attach_consumer(self._spec.rings["results"], KIND.name)
        if "people" in self._spec.rings:
            cfg, fps = self._spec.config, self._cam.analyse_fps
            ring = self._spec.rings["people"]
            self._presence = Presence(ring, cfg, fps, KIND.name, self._labels)
        display = camera_display(
            self._spec.config.display, self._cam.name, self._spec.args.camera_index
        )
        fps = self._cam.fps or DEFAULT_FPS
        try:
            self._outputs = open_outputs(
                display, fps, (self._cam.width, self._cam.height), title=self._cam.name
            )
        except (DisplayUnavailable, ValueError) as exc:
            raise StageFatal(f"camera {self._cam.name}: display: {exc}") from exc
        taps = self._taps = FrameTaps(
            self._spec.args.live_slot, self._cam, self._spec.config, self._stats
        )
        socket_path = self._spec.args.events_socket
        if socket_path and records.feeds_people(self._result):
            self._people = PeopleEmitter(
                self._cam,
                self._spec.config.people,
                socket_path,
                self._spec.config.display.jpeg_quality,
                self._stats,
                event_send_timeout_s(self._spec.config.daemon.heartbeat_timeout_s),
                live=SOURCES.kind_of(self._cam.source).live,
                beat=self._heartbeat.beat,
                clips=taps.clip_fields,
            )
        elif socket_path and self._labels:
            settings = event_settings(self._spec.config.events, self._labels)
            self._events = EventEmitter(
                self._cam.name,
                self._labels,
                settings,
                socket_path,
                self._spec.config.display.jpeg_quality,
                self._stats,
                event_send_timeout_s(self._spec.config.daemon.heartbeat_timeout_s),
                live=SOURCES.kind_of(self._cam.source).live,  # else media time: no latency
                beat=self._heartbeat.beat,  # a step may send many events, each may block
                clips=taps.clip_fields,
            )
        log_path = self._spec.args.frame_log
        if log_path:
            self._frame_log = open(log_path, "a", encoding="utf-8")

    def step(self, stop: threading.Event) -> bool:
        self._collect_results()
        lease = opened(self._frames_in, "the view ring").get(STEP_WAIT_S)
        if lease is None:
            return self._idle()
        started = time.perf_counter()
        self._stats.add("frames_in_total")
        held = None
        with lease:
            frame_id, capture_ns = lease.meta.frame_id, lease.meta.timestamp_ns
            fields = self._view.views(lease.array)
            if self._finite:
                held, self._held = (
                    self._held,
                    (frame_id, capture_ns, fields["frame"].copy(), fields["flow"].copy()),
                )
            else:
                self._show(frame_id, capture_ns, fields["frame"], fields["flow"])
        if held is not None:
            self._show(*held)
        timed(self._stats, started)
        return True

    def _show(self, frame_id: int, capture_ns: int, frame: np.ndarray, flow: np.ndarray) -> None:
        result_id, result, _ = self._result_for(frame_id)
        label, score = records.top_label(self._result, result)
        image = draw_overlay(frame, flow, "", 0.0, self._fps())
        draw_result(image, self._result, result)
        self._feed_events(frame_id, image)
        if self._people is not None:  # track ids and zones; the drawing is the snapshot
            tracks = [(t.track_id, t.box) for t in self._people.tracks]
            draw_people(image, tracks, self._people.engine.zones.polygons)
            self._people.send_pending(image)
        self._check_order(frame_id)
        opened(self._outputs, "the display outputs").show(image)
        opened(self._taps, "the frame taps").show(image, frame_id, capture_ns)
        self._count_viewers()
        self._log_frame(frame_id, result_id, label, score, records.people_seen(result))

    def _feed_events(self, frame_id: int, image: np.ndarray) -> None:
        """Feed every result not yet fed, up to this frame, once and in frame order: the
        tracker counts windows, so none may be skipped when several arrive together."""
        if self._events is None and self._people is None:
            return
        due = sorted(r for r in self._results if self._fed_result_id < r <= frame_id)
        for result_id in due:
            result, capture_ns = self._results[result_id]
            self._fed_result_id = result_id
            if self._people is not None:  # its events are sent once the frame is drawn
                self._stats.add("events_total", self._people.update(result, result_id, capture_ns))
            elif self._events is not None:
                scores = event_scores(self._result, result)
                if self._presence is not None:  # require_person: starts only with people
                    scores = self._presence.gate(scores, capture_ns, self._events.active)
                events = self._events.update(scores, result_id, capture_ns, image)
                self._stats.add("events_total", len(events))

    def _idle(self) -> bool:
        """No frame within a step. A lost live stream ends the open events; a finished
        upstream ends the stage once the last clips' results are in. False: finished."""
        if self._source.stream_lost():
            self._end_events_stream_lost()
        opened(self._taps, "the frame taps").idle()
        if not self._upstream.finished() or not self._last_results_in():
            return True
        if self._held is not None:
            held, self._held = self._held, None
            self._show(*held)
        self._end_reason = END_END_OF_STREAM
        return False

    def _end_events_stream_lost(self) -> None:
        # Results still on their way belong to frames before the loss: they must not
        # count towards an event once frames flow again.
        self._fed_result_id = max(self._fed_result_id, self._last_id)
        if self._people is not None and self._people.active:
            self._stats.add("events_total", self._people.end_all(END_STREAM_LOST))
            log.info("camera %s: stream lost; ended the people's events", self._cam.name)
        if self._events is None or not self._events.active:
            return
        ended = self._events.end_all(END_STREAM_LOST)
        self._stats.add("events_total", len(ended))
        log.info(
            "camera %s: stream lost; ended %s", self._cam.name, ", ".join(e.action for e in ended)
        )

    def _last_results_in(self) -> bool:
        """True once a result came for every clip the motion stage sent (or, if some
        never come, after LAST_RESULTS_WAIT_S)."""
        expected = int(self._upstream.total("clips_total"))
        received = int(self._stats.get("results_total"))
        if received >= expected:
            return True
        now = time.monotonic()
        if self._finish_deadline is None:
            self._finish_deadline = now + LAST_RESULTS_WAIT_S
        if now < self._finish_deadline:
            return False
        self._stats.add(LOST_NOT_ARRIVED.field, expected - received)
        log.warning(
            "camera %s: %d of %d clip results did not arrive within %.0f s of the "
            "end of the stream; finishing without them",
            self._cam.name,
            expected - received,
            expected,
            LAST_RESULTS_WAIT_S,
        )
        return True

    def _count_viewers(self) -> None:
        mjpeg = self._outputs.mjpeg if self._outputs is not None else None
        if mjpeg is None:
            return
        counters = mjpeg.counters
        self._stats.set("mjpeg_viewers", counters.clients)
        # The stats block outlives a restarted overlay: add what is new since last time.
        self._stats.add(
            "mjpeg_viewers_refused_total", counters.clients_refused - self._viewers_refused
        )
        self._viewers_refused = counters.clients_refused
        self._stats.add(LOST_VIEWER_BEHIND.field, counters.frames_skipped - self._viewer_skips)
        self._viewer_skips = counters.frames_skipped

    def _collect_results(self) -> None:
        if self._presence is not None:
            self._presence.collect()
        results_in = opened(self._results_in, "the results ring")
        while (lease := results_in.try_get()) is not None:
            with lease:
                result = records.read_result(self._result_record, lease.array)
                self._results[lease.meta.frame_id] = (result, lease.meta.timestamp_ns)
            self._stats.add("results_total")
        while len(self._results) > RESULTS_KEPT:
            result_id, _ = self._results.popitem(last=False)
            fed = self._events is not None or self._people is not None
            if fed and result_id > self._fed_result_id:
                self._stats.add(LOST_EVICTED.field)

    def _result_for(self, frame_id: int) -> tuple[int, records.Result | None, int]:
        best = max((rid for rid in self._results if rid <= frame_id), default=-1)
        result, capture_ns = self._results.get(best, (None, 0))
        return best, result, capture_ns

    def _check_order(self, frame_id: int) -> None:
        if frame_id <= self._last_id:
            self._stats.add("frame_order_errors_total")
        elif frame_id > self._last_id + 1 and self._last_id >= 0:
            self._stats.add(LOST_GAP.field, frame_id - self._last_id - 1)
        self._last_id = frame_id
        self._stats.set("last_frame_id", frame_id)

    def _fps(self) -> float:
        now = time.monotonic()
        self._fps_marks = [t for t in self._fps_marks if now - t < FPS_WINDOW_S] + [now]
        fps = (len(self._fps_marks) - 1) / max(now - self._fps_marks[0], 1e-6)
        self._stats.set("display_fps", fps)
        return fps

    def _log_frame(
        self, frame_id: int, result_id: int, label: str, score: float, people: list[int]
    ) -> None:
        self._stats.set("last_result_frame_id", result_id)
        if self._frame_log is not None:
            # Every camera's overlay appends to the same file: say whose frame it is.
            record: dict[str, object] = {
                "camera": self._cam.name,
                "frame_id": frame_id,
                "result_frame_id": result_id,
                "label": label,
                "score": round(score, 4),
            }
            if people:  # detections: per person, how many keypoints are sure
                record["people_keypoints"] = people
            self._frame_log.write(json.dumps(record) + "\n")
            self._frame_log.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close(self._end_reason)
        if self._people is not None:
            self._people.close(self._end_reason)
        if self._outputs is not None:
            self._outputs.close()
        if self._taps is not None:
            self._taps.close()
        if self._frame_log is not None:
            self._frame_log.close()
        for endpoint in (self._frames_in, self._results_in, self._presence):
            if endpoint is not None:
                endpoint.close()
        self._upstream.close()
        self._source.close()


def _args(ctx: WorkerContext) -> OverlayArgs:
    return OverlayArgs(
        ctx.result,
        ctx.camera_index,
        ctx.events_socket,
        ctx.config.display.frame_log,
        ctx.upstream_stats,
        ctx.origin_stats,
        ctx.live_slot,
    )


KIND = StageKind(
    name="overlay",
    factory=OverlayStage,
    # Results are a side input: the overlay ends with its frames, and waits (bounded)
    # for the last clips' results itself.
    inputs=(InPort("view"), InPort("results", follows=False), PEOPLE_PORT),
    args=_args,
    stats_fields=(*OVERLAY_FIELDS, *TAP_FIELDS),
    losses=(*OVERLAY_LOSSES, *EVENT_LOSSES, *TAP_LOSSES),
    exports=(
        Export("actiond_mjpeg_viewers", "mjpeg_viewers"),
        Export("actiond_mjpeg_viewers_refused_total", "mjpeg_viewers_refused_total"),
        *TAP_EXPORTS,
    ),
    # The MJPEG view, window and recorder, the event tracker and the people engine are
    # made at start.
    reload_sections=frozenset({"display", "clips", "events", "people"}),
)
