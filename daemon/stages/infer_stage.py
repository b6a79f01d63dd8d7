"""Infer stage: one replica of the action model, shared by all cameras.

Replicas take turns on the shared clips ring (work-sharing); each result carries the
frame id of its clip's last frame, so the overlay joins it to the right frame whatever
order the replicas finish in.

Three things keep the model busy:
- Batching: when several clips are waiting (several cameras), one model run takes up to
  `max_batch` of them (1 for a model whose batch dimension is fixed at 1). A run of N
  clips costs less than N runs on a GPU, and about the same on a CPU.
- Prefetch: a feeder thread prepares the next batch while the model runs this one.
- Publishing behind: a publisher thread writes this batch's scores to the results rings
  while the model runs the next one (see daemon.stages.infer_threads).
The worker's main thread only runs the model and hands batches between the two.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from daemon.config import Config, ModelFacts
from daemon.ipc import Consumer, Policy, Producer, attach_consumer, attach_producer
from daemon.ipc.stats import StatsBlock, histogram_fields
from daemon.stages import records
from daemon.stages.contract import ModelError
from daemon.stages.infer_threads import (
    LOST_NO_RING,
    THREAD_JOIN_S,
    BatchFeeder,
    ResultPublisher,
    Scored,
)
from daemon.stages.kinds import (
    RESULT,
    SHARED,
    Export,
    InPort,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.model import ActionModel
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec

log = logging.getLogger(__name__)

# clips_total / batches_total is the mean batch size; max_batch is the model's limit.
INFER_FIELDS = ("clips_total", "batches_total", "max_batch", *histogram_fields("inference_seconds"))
RESULTS_CAPACITY = 8


@dataclass(frozen=True)
class InferArgs:
    model: str  # the ONNX file
    result: records.ResultSpec  # what one result holds (the results rings' record)
    upstream_stats: tuple[str, ...]  # every camera's motion worker: have they finished?
    facts: ModelFacts  # the clips the model takes (the clips ring's record)


class InferStage:
    """Runs the model on batches of clips; each clip's scores go to the results ring of
    its camera, under the clip's frame id."""

    def __init__(
        self, spec: WorkerSpec[InferArgs], stats: StatsBlock, heartbeat: Heartbeat
    ) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._clip = records.clip_record(spec.args.facts)
        self._model: ActionModel | None = None
        self._in: Consumer | None = None
        self._out: dict[str, Producer] = {}
        self._feeder: BatchFeeder | None = None
        self._publisher: ResultPublisher | None = None
        self._upstream = Upstream(list(spec.args.upstream_stats))

    def open(self) -> None:
        try:
            self._model = ActionModel(self._spec.config.inference, self._spec.args.model)
        except ModelError as exc:
            raise StageFatal(str(exc)) from exc
        self._stats.set("max_batch", self._model.max_batch)
        self._in = attach_consumer(self._spec.rings["clips"], KIND.name, self._spec.replica)
        for camera, path in self._spec.camera_rings("results").items():
            self._out[camera] = attach_producer(path, self._spec.slot("results"))
        self._publisher = ResultPublisher(
            self._out, self._stats, self._heartbeat, records.result_record(self._spec.args.result)
        )
        self._publisher.start()
        self._feeder = BatchFeeder(self._in, self._model, self._clip, self._upstream)
        self._feeder.start()

    def step(self, stop: threading.Event) -> bool:
        model, feeder, publisher = self._model, self._feeder, self._publisher
        if model is None or feeder is None or publisher is None:
            raise RuntimeError("InferStage.step() called before open()")
        finished = feeder.finished()  # before waiting: no batch slips past
        batch = feeder.next_batch(STEP_WAIT_S)
        if batch is None:
            return not (finished and publisher.idle())
        started = time.perf_counter()
        scores = model.run(batch.inputs)
        run_s = time.perf_counter() - started
        feeder.recycle(batch)
        publisher.submit(Scored(batch.metas, scores, batch.prep_s, run_s), stop)
        return True

    def close(self) -> None:
        # The publisher first: what it holds is published or dropped before its rings close.
        if self._publisher is not None and not self._publisher.stop():
            log.error("infer publisher thread did not stop within %.0f s", THREAD_JOIN_S)
            return
        for out in self._out.values():
            out.close()
        if self._feeder is not None and not self._feeder.stop():
            # Unmapping the ring or the upstream blocks under the thread's views would
            # raise or crash; the process is exiting, and the supervisor reclaims the
            # slots it held.
            log.error("infer feeder thread did not stop within %.0f s", THREAD_JOIN_S)
            return
        if self._in is not None:
            self._in.close()
        self._upstream.close()


def _results_ring(ctx: RingContext) -> RingShape:
    # Only the newest results matter to the overlay, which joins them by frame id.
    return RingShape(
        records.result_record(ctx.result).frame_spec(), RESULTS_CAPACITY, Policy.DROP_OLDEST
    )


def _args(ctx: WorkerContext) -> InferArgs:
    return InferArgs(ctx.model_path, ctx.result, ctx.upstream_stats, ctx.facts)


def _replicas(config: Config) -> int:
    return config.inference.replicas


KIND = StageKind(
    name="infer",
    factory=InferStage,
    scope=SHARED,
    inputs=(InPort("clips"),),
    outputs=(OutPort("results", ring="results", item=RESULT, shape=_results_ring),),
    args=_args,
    stats_fields=INFER_FIELDS,
    losses=(LOST_NO_RING,),
    exports=(Export("actiond_inference_seconds", "inference_seconds"),),
    replicas=_replicas,
    status_unit="clips/s",
)
