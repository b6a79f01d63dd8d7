"""Source stage: decode one camera into its frames ring."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from daemon.ipc import FrameSpec, Policy, Producer, attach_producer
from daemon.ipc.stats import StatsBlock
from daemon.stages.capture import FrameSource, SourceError
from daemon.stages.kinds import (
    FRAME,
    Export,
    Loss,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.media_clock import FALLBACK_MEDIA_FPS
from daemon.stages.worker import Heartbeat, StageFatal, WorkerSpec, loan_slot, opened, timed

log = logging.getLogger(__name__)

# stream_up: 1 while frames flow, 0 before the first and while a live stream is lost
# (read by the overlay to end open events and by the supervisor for camera availability).
# last_capture_ns: the capture time published last (a restarted replay continues after it).
SOURCE_FIELDS = (
    "reconnects_total",
    "stalls_total",
    "source_fps",
    "last_frame_id",
    "stream_up",
    "last_capture_ns",
)
# Live frames the capture skipped to honour the camera's fps (not a fault, but frames
# that never enter the pipeline).
LOST_FPS_LIMIT = Loss(FRAME, "fps_limit")
# Damaged packets of a file or stream that did not decode and were skipped (mostly one
# frame each).
LOST_UNDECODABLE = Loss(FRAME, "undecodable")


@dataclass(frozen=True)
class SourceArgs:
    source: str  # the camera's source (resolved by the config loader)
    first_frame_id: int = 0  # a restarted source continues its frame ids
    first_media_ns: int = 0  # ... and a replay its media time (capture times never go back)


class SourceStage:
    """Reads frames from a FrameSource and puts them into the camera's frames ring."""

    def __init__(
        self, spec: WorkerSpec[SourceArgs], stats: StatsBlock, heartbeat: Heartbeat
    ) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._cam = next(c for c in spec.config.cameras if c.name == spec.camera)
        self._source = FrameSource(
            self._cam, spec.args.source, first_media_ns=spec.args.first_media_ns
        )
        self._out: Producer | None = None
        self._tee: Producer | None = None  # a second copy (graph clip_with_people: the gate)
        self._frame_id = spec.args.first_frame_id
        # The stats block outlives a restarted source: add what is new since last time.
        self._skipped_counted = 0
        self._undecodable_counted = 0

    def open(self) -> None:
        self._stats.set("stream_up", 0)  # a restarted worker has no stream yet
        self._out = attach_producer(self._spec.rings["out"])
        if "tee" in self._spec.rings:
            self._tee = attach_producer(self._spec.rings["tee"])
        try:
            self._source.open()
        except SourceError as exc:
            # A missing or undecodable file is not fixed by restarting.
            raise StageFatal(f"camera {self._cam.name}: {exc}") from exc

    def step(self, stop: threading.Event) -> bool:
        try:
            with self._heartbeat.blocking(on_beat=self._update_counters):
                item = self._source.read(stop)
        except SourceError as exc:
            # A crop outside the frame, a looped file gone when reopened: a restart reads
            # the same source with the same config, so it cannot help.
            raise StageFatal(f"camera {self._cam.name}: {exc}") from exc
        self._update_counters()
        if item is None:
            return stop.is_set()  # end of a finite file: the stage has finished
        frame, ts_ns = item
        self._stats.set("stream_up", 1)
        self._stats.add("frames_in_total")
        started = time.perf_counter()
        out = opened(self._out, "the frames ring")
        out.check_frame(frame)
        frame_id, self._frame_id = self._frame_id, self._frame_id + 1
        loan = loan_slot(out, stop, self._heartbeat)
        if loan is None:
            return True  # dropped by the ring's policy (counted there) or stopping
        with loan:
            np.copyto(loan.array, frame)
            loan.publish(frame_id, ts_ns, self._cam.name)
        tee = loan_slot(self._tee, stop, self._heartbeat) if self._tee is not None else None
        if tee is not None:  # None: dropped by the tee ring's policy (counted there)
            with tee:
                np.copyto(tee.array, frame)
                tee.publish(frame_id, ts_ns, self._cam.name)
        self._stats.set("last_frame_id", frame_id)
        self._stats.set("last_capture_ns", ts_ns)
        timed(self._stats, started)
        return True

    def _update_counters(self) -> None:
        self._stats.set("reconnects_total", self._source.reconnects_total)
        self._stats.set("stalls_total", self._source.stalls_total)
        self._stats.set("source_fps", self._source.native_fps)
        skipped = self._source.frames_skipped_total
        self._stats.add(LOST_FPS_LIMIT.field, skipped - self._skipped_counted)
        self._skipped_counted = skipped
        undecodable = self._source.frames_undecodable_total
        self._stats.add(LOST_UNDECODABLE.field, undecodable - self._undecodable_counted)
        self._undecodable_counted = undecodable
        if self._source.is_live and not self._source.connected:
            self._stats.set("stream_up", 0)

    def close(self) -> None:
        self._source.close()
        for out in (self._out, self._tee):
            if out is not None:
                out.close()


def _frames_ring(ctx: RingContext) -> RingShape:
    cam = ctx.camera
    return RingShape(
        FrameSpec((cam.height, cam.width, 3), "uint8"), cam.ring_capacity, Policy(cam.ring_policy)
    )


def _args(ctx: WorkerContext) -> SourceArgs:
    if ctx.camera is None:
        raise ValueError("a source runs per camera")
    return SourceArgs(ctx.camera.source)


def _respawn(args: SourceArgs, stats: StatsBlock) -> SourceArgs:
    # A restarted source continues the frame ids, so they stay monotonic downstream.
    if not stats.get("frames_out_total"):
        return args
    fps = stats.get("source_fps")
    period_ns = int(1e9 / (fps if fps > 0 else FALLBACK_MEDIA_FPS))
    return replace(
        args,
        first_frame_id=int(stats.get("last_frame_id")) + 1,
        first_media_ns=int(stats.get("last_capture_ns")) + period_ns,
    )


KIND = StageKind(
    name="source",
    factory=SourceStage,
    outputs=(
        OutPort("out", ring="frames", item=FRAME, shape=_frames_ring),
        OutPort("tee", ring="tee", item=FRAME, shape=_frames_ring),  # optional second copy
    ),
    args=_args,
    stats_fields=SOURCE_FIELDS,
    losses=(LOST_FPS_LIMIT, LOST_UNDECODABLE),
    exports=(
        Export("actiond_source_reconnects_total", "reconnects_total"),
        Export("actiond_source_stalls_total", "stalls_total"),
    ),
    origin=True,
    respawn=_respawn,
)
