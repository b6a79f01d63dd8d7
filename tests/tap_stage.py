"""A stage actiond does not ship: it passes each frame on and counts it.

tests/test_pipeline_graph.py inserts it between the source and the motion stage of a
test graph, to prove that adding a stage takes this one module and one edge line. It is
importable by the spawned worker because the test's sys.path travels with the spawn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.ipc import Consumer, FrameSpec, Policy, Producer, attach_consumer, attach_producer
from daemon.ipc.stats import StatsBlock
from daemon.stages.kinds import (
    FRAME,
    Export,
    InPort,
    Loss,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, WorkerSpec, loan_slot, timed

LOST_NOT_TAPPED = Loss(FRAME, "not_tapped")  # declared, never counted: exported at zero


@dataclass(frozen=True)
class TapArgs:
    upstream_stats: tuple[str, ...]


class TapStage:
    def __init__(self, spec: WorkerSpec[TapArgs], stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._upstream = Upstream(list(spec.args.upstream_stats))
        self._in: Consumer | None = None
        self._out: Producer | None = None

    def open(self) -> None:
        self._in = attach_consumer(self._spec.rings["in"], KIND.name)
        self._out = attach_producer(self._spec.rings["out"], self._spec.slot("out"))

    def step(self, stop: threading.Event) -> bool:
        assert self._in is not None and self._out is not None
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return not self._upstream.finished()
        with lease:
            started = time.perf_counter()
            self._stats.add("frames_in_total")
            loan = loan_slot(self._out, stop, self._heartbeat)
            if loan is not None:
                with loan:
                    np.copyto(loan.array, lease.array)
                    loan.publish(lease.meta.frame_id, lease.meta.timestamp_ns, lease.meta.camera)
        self._stats.add("tapped_total")
        timed(self._stats, started)
        return True

    def close(self) -> None:
        for endpoint in (self._in, self._out):
            if endpoint is not None:
                endpoint.close()
        self._upstream.close()


def _tapped_ring(ctx: RingContext) -> RingShape:
    cam = ctx.camera
    return RingShape(
        FrameSpec((cam.height, cam.width, 3), "uint8"), cam.ring_capacity, Policy(cam.ring_policy)
    )


def _args(ctx: WorkerContext) -> TapArgs:
    return TapArgs(ctx.upstream_stats)


KIND = StageKind(
    name="tap",
    factory=TapStage,
    inputs=(InPort("in"),),
    outputs=(OutPort("out", ring="tapped", item=FRAME, shape=_tapped_ring),),
    args=_args,
    stats_fields=("tapped_total",),
    losses=(LOST_NOT_TAPPED,),
    # Not in the metrics catalog: left out of the scrape, never failing it.
    exports=(Export("actiond_tap_frames_total", "tapped_total"),),
)
