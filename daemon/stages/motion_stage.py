"""Motion stage: preprocessing + optical flow; fans out to overlay (every frame) and to
infer (a clip of the last T frames every `stride` frames)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.config import ModelFacts
from daemon.ipc import Consumer, Policy, Producer, attach_consumer, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.clipmaker import ClipMaker
from daemon.stages.flow import FlowEstimator
from daemon.stages.kinds import (
    CLIP,
    FRAME,
    InPort,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, WorkerSpec, loan_slot, opened, timed

MOTION_FIELDS = ("clips_total",)
VIEW_CAPACITY = 4


@dataclass(frozen=True)
class MotionArgs:
    upstream_stats: tuple[str, ...]  # the camera's source: has it finished?
    facts: ModelFacts  # the clips the model takes (length, size, input)


class MotionStage:
    """Consumes the frames ring, produces the view ring and the shared clips ring."""

    def __init__(
        self, spec: WorkerSpec[MotionArgs], stats: StatsBlock, heartbeat: Heartbeat
    ) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        cfg = spec.config
        self._cam = next(c for c in cfg.cameras if c.name == spec.camera)
        self._flow = FlowEstimator(cfg.motion.method, cfg.motion.width, cfg.motion.height)
        self._view = records.view_record(self._cam, cfg)
        facts = spec.args.facts
        self._clip = records.clip_record(facts)
        self._clips = ClipMaker(facts.clip_length, cfg.inference.stride, *facts.clip_size)
        self._in: Consumer | None = None
        self._out_view: Producer | None = None
        self._out_clip: Producer | None = None
        self._upstream = Upstream(list(spec.args.upstream_stats))

    def open(self) -> None:
        self._in = attach_consumer(self._spec.rings["in"], KIND.name)
        self._out_view = attach_producer(self._spec.rings["view"], self._spec.slot("view"))
        self._out_clip = attach_producer(self._spec.rings["clips"], self._spec.slot("clips"))

    def step(self, stop: threading.Event) -> bool:
        lease = opened(self._in, "the frames ring").get(STEP_WAIT_S)
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

    def _publish_view(
        self, frame: np.ndarray, flow: np.ndarray, meta: FrameMeta, stop: threading.Event
    ) -> None:
        loan = loan_slot(opened(self._out_view, "the view ring"), stop, self._heartbeat)
        if loan is None:
            return  # dropped by the view ring's policy (counted there)
        with loan:
            fields = self._view.views(loan.array)
            fields["frame"][...] = frame
            fields["flow"][...] = flow
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def _publish_clip(self, meta: FrameMeta, stop: threading.Event) -> None:
        loan = loan_slot(opened(self._out_clip, "the clips ring"), stop, self._heartbeat)
        if loan is None:
            return
        with loan:
            fields = self._clip.views(loan.array)
            frames, flows = fields.get("frames"), fields.get("flow")  # what the model takes
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


def _view_ring(ctx: RingContext) -> RingShape:
    cam = ctx.camera
    return RingShape(
        records.view_record(cam, ctx.config).frame_spec(), VIEW_CAPACITY, Policy(cam.ring_policy)
    )


def _clips_ring(ctx: RingContext) -> RingShape:
    config, cams = ctx.config, ctx.cameras
    replicas = config.inference.replicas
    # Latest clip wins for live cameras; files that asked for lossless keep every clip.
    lossless = bool(cams) and all(c.ring_policy == "block" for c in cams)
    # Room for every camera's newest clip plus one per replica: batches form.
    return RingShape(
        records.clip_record(ctx.facts).frame_spec(),
        max(4, 2 * replicas, len(cams) + replicas),
        Policy.BLOCK if lossless else Policy.DROP_OLDEST,
    )


def _args(ctx: WorkerContext) -> MotionArgs:
    return MotionArgs(ctx.upstream_stats, ctx.facts)


KIND = StageKind(
    name="motion",
    factory=MotionStage,
    inputs=(InPort("in"),),
    outputs=(
        OutPort("view", ring="view", item=FRAME, shape=_view_ring),
        OutPort("clips", ring="clips", item=CLIP, shape=_clips_ring),
    ),
    args=_args,
    stats_fields=MOTION_FIELDS,
)
