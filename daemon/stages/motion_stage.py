"""Motion stage: preprocessing + optical flow; fans out to overlay (every frame) and to
infer (a clip of the last T frames every `stride` frames)."""

from __future__ import annotations

import threading
import time
import numpy as np

from daemon.ipc import Consumer, Producer, attach_consumer, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.clipmaker import ClipMaker
from daemon.stages.flow import FlowEstimator
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, WorkerSpec, loan_slot, timed

MOTION_FIELDS = ("clips_total",)


class MotionStage:
    """Consumes the frames ring, produces the view ring and the shared clips ring."""

    def __init__(self, spec: WorkerSpec, stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        cfg = spec.config
        self._cam = next(c for c in cfg.cameras if c.name == spec.camera)
        self._flow = FlowEstimator(cfg.motion.method, cfg.motion.width, cfg.motion.height)
        self._view = records.view_record(self._cam, cfg)
        self._clip = records.clip_record(cfg)
        self._clips = ClipMaker(records.clip_length(cfg), cfg.inference.stride,
                                *records.clip_size(cfg))
        self._in: Consumer | None = None
        self._out_view: Producer | None = None
        self._out_clip: Producer | None = None
        self._upstream = Upstream(list(spec.extra.get("upstream_stats", [])))

    def open(self) -> None:
        self._in = attach_consumer(self._spec.rings["in"], "motion")
        self._out_view = attach_producer(self._spec.rings["view"])
        self._out_clip = attach_producer(self._spec.rings["clips"],
                                         int(self._spec.extra["camera_index"]))

    def step(self, stop: threading.Event) -> bool:
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return not self._upstream.finished()
        with lease:
            started = time.perf_counter()
            self._stats.add("frames_in_total")
            meta = lease.meta
            flow = self._flow(lease.array)
            clip_due = self._clips.push(lease.array, flow)
            self._publish_view(lease.array, flow, meta, stop)
        if clip_due:
            self._publish_clip(meta, stop)
        timed(self._stats, started)
        return True

    def _publish_view(self, frame: np.ndarray, flow: np.ndarray, meta: FrameMeta,
                      stop: threading.Event) -> None:
        loan = loan_slot(self._out_view, stop, self._heartbeat)
        if loan is None:
            return  # dropped by the view ring's policy (counted there)
        with loan:
            fields = self._view.views(loan.array)
            fields["frame"][...] = frame
            fields["flow"][...] = flow
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def _publish_clip(self, meta: FrameMeta, stop: threading.Event) -> None:
        loan = loan_slot(self._out_clip, stop, self._heartbeat)
        if loan is None:
            return
        with loan:
            fields = self._clip.views(loan.array)
            frames, flows = fields.get("frames"), fields.get("flow")   # what the model takes
            for i, (small, flow) in enumerate(self._clips.entries()):
                if frames is not None:
                    frames[i] = small
                if flows is not None:
                    flows[i] = flow
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)
        self._stats.add("clips_total")

    def close(self) -> None:
        for endpoint in (self._in, self._out_view, self._out_clip):
            if endpoint is not None:
                endpoint.close()
        self._upstream.close()
