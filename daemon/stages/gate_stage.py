"""Gate stage (pipeline "person"): every frame goes to the overlay's view ring; frames to
analyse go to the shared detect replicas, at the camera's `analyse_fps` while something
moves and at `perception.keepalive_fps` while the scene is still (daemon.stages.gate).

Frames not analysed are skipped by design, not lost: counted in `analysis_skipped_total`.
The view record is the clip pipeline's (frame + flow) so the overlay reads one layout;
the gate computes no flow, so the flow field is left zero and no arrows are drawn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.config import CameraConfig, PerceptionConfig
from daemon.ipc import Consumer, Policy, Producer, attach_consumer, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.gate import Gate, GateSettings
from daemon.stages.kinds import (
    FRAME,
    Export,
    InPort,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, WorkerSpec, loan_slot, timed

# Slots of the shared analysis ring per person camera (plus one per detect replica).
ANALYSIS_SLOTS_PER_CAMERA = 2
# clips_total: frames sent for analysis (the name the overlay reads from whatever feeds
# it, to wait at a file's end for a result for each); moving: 1 while the scene moves.
GATE_FIELDS = ("clips_total", "analysis_skipped_total", "moving")
VIEW_CAPACITY = 4


@dataclass(frozen=True)
class GateArgs:
    upstream_stats: tuple[str, ...]  # the camera's source: has it finished?
    settings: GateSettings


class GateStage:
    """Consumes the camera's frames ring; produces its view ring and, for the frames the
    gate admits, the shared analysis ring."""

    def __init__(self, spec: WorkerSpec[GateArgs], stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        cfg = spec.config
        self._cam = next(c for c in cfg.cameras if c.name == spec.camera)
        self._view = records.view_record(self._cam, cfg)
        self._gate = Gate(spec.args.settings)
        self._in: Consumer | None = None
        self._out_view: Producer | None = None
        self._out_frames: Producer | None = None
        self._analysis = records.analysis_record(self._cam.width * self._cam.height * 3)
        self._upstream = Upstream(list(spec.args.upstream_stats))

    def open(self) -> None:
        self._in = attach_consumer(self._spec.rings["in"], KIND.name)
        if "view" in self._spec.rings:  # graph clip_with_people: motion makes the view
            self._out_view = attach_producer(self._spec.rings["view"], self._spec.slot("view"))
        self._out_frames = attach_producer(self._spec.rings["frames"], self._spec.slot("frames"))
        self._analysis = records.analysis_record_of(int(self._out_frames.spec.frame.nbytes))

    def step(self, stop: threading.Event) -> bool:
        if self._in is None:
            raise RuntimeError("GateStage.step() called before open()")
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return not self._upstream.finished()
        with lease:
            started = time.perf_counter()
            self._stats.add("frames_in_total")
            meta, frame = lease.meta, lease.array
            admitted = self._gate.admit(frame, meta.timestamp_ns)
            self._stats.set("moving", int(self._gate.moving))
            if admitted:
                self._publish_frame(frame, meta, stop)
            else:
                self._stats.add("analysis_skipped_total")
            self._publish_view(frame, meta, stop)
        timed(self._stats, started)
        return True

    def _publish_view(self, frame: np.ndarray, meta: FrameMeta, stop: threading.Event) -> None:
        if self._out_view is None:
            return
        loan = loan_slot(self._out_view, stop, self._heartbeat)
        if loan is None:
            return  # dropped by the view ring's policy (counted there)
        with loan:
            fields = self._view.views(loan.array)
            fields["frame"][...] = frame
            fields["flow"].fill(0.0)
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def _publish_frame(self, frame: np.ndarray, meta: FrameMeta, stop: threading.Event) -> None:
        if self._out_frames is None:
            return
        loan = loan_slot(self._out_frames, stop, self._heartbeat)
        if loan is None:
            return  # dropped by the analysis ring's policy (counted there)
        with loan:
            h, w = frame.shape[:2]
            fields = self._analysis.views(loan.array)
            fields["frame"][: frame.size] = frame.reshape(-1)
            # How to analyse it travels with the frame: a reload that changes a camera
            # restarts its gate, not the shared detect replicas.
            fields["info"][...] = (w, h, int(self._cam.tiled_detection))
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)
        self._stats.add("clips_total")

    def close(self) -> None:
        for endpoint in (self._in, self._out_view, self._out_frames):
            if endpoint is not None:
                endpoint.close()
        self._upstream.close()


def gate_settings(cam: CameraConfig, perception: PerceptionConfig) -> GateSettings:
    return GateSettings(
        analyse_fps=cam.analyse_fps,
        keepalive_fps=min(perception.keepalive_fps, cam.analyse_fps),
        motion_min_share=perception.motion_min_share,
    )


def _view_ring(ctx: RingContext) -> RingShape:
    cam = ctx.camera
    return RingShape(
        records.view_record(cam, ctx.config).frame_spec(), VIEW_CAPACITY, Policy(cam.ring_policy)
    )


def _frames_ring(ctx: RingContext) -> RingShape:
    cams, replicas = ctx.cameras, ctx.config.perception.replicas
    # Files that asked for lossless keep every analysed frame; live cameras drop the oldest.
    lossless = bool(cams) and all(c.ring_policy == "block" for c in cams)
    # Two frames per camera plus one per replica: while a replica works through a batch
    # of one frame per camera, every camera's next frame still finds a slot (with one per
    # camera, cameras in step -- one stream, or the same frame rate -- lost frames to
    # drop_oldest whenever a batch took longer than a frame period).
    return RingShape(
        records.analysis_record(records.analysis_frame_bytes(cams)).frame_spec(),
        max(4, ANALYSIS_SLOTS_PER_CAMERA * len(cams) + replicas),
        Policy.BLOCK if lossless else Policy.DROP_OLDEST,
    )


def _args(ctx: WorkerContext) -> GateArgs:
    if ctx.camera is None:
        raise ValueError("a gate runs per camera")
    return GateArgs(ctx.upstream_stats, gate_settings(ctx.camera, ctx.config.perception))


KIND = StageKind(
    name="gate",
    factory=GateStage,
    inputs=(InPort("in"),),
    outputs=(
        OutPort("view", ring="view", item=FRAME, shape=_view_ring),
        OutPort("frames", ring="analysis", item=FRAME, shape=_frames_ring),
    ),
    args=_args,
    stats_fields=GATE_FIELDS,
    exports=(Export("actiond_analysis_skipped_total", "analysis_skipped_total"),),
)
