"""Infer stage: one replica of the action model, shared by all cameras.

Replicas take turns on the shared clips ring (work-sharing); each result carries the
frame id of its clip's last frame, so the overlay joins it to the right frame whatever
order the replicas finish in.
"""

from __future__ import annotations

import threading
import time

from daemon.ipc import Consumer, Producer, attach_consumer, attach_producer
from daemon.ipc.stats import StatsBlock, histogram_fields
from daemon.stages import records
from daemon.stages.model import ActionModel, ModelError
from daemon.stages.upstream import Upstream
from daemon.stages.worker import (STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec, loan_slot,
                                  timed)

INFER_FIELDS = ("clips_total", *histogram_fields("inference_seconds"))


class InferStage:
    """Runs the model on clips and publishes scores to each camera's results ring."""

    def __init__(self, spec: WorkerSpec, stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._clip = records.clip_record(spec.config)
        self._model: ActionModel | None = None
        self._in: Consumer | None = None
        self._out: dict[str, Producer] = {}
        self._upstream = Upstream(list(spec.extra.get("upstream_stats", [])))

    def open(self) -> None:
        try:
            self._model = ActionModel(self._spec.config.inference, str(self._spec.extra["model"]))
        except ModelError as exc:
            raise StageFatal(str(exc)) from exc
        self._in = attach_consumer(self._spec.rings["clips"], "infer", self._spec.replica)
        for role, path in self._spec.rings.items():
            if role.startswith("results:"):
                self._out[role.split(":", 1)[1]] = attach_producer(path, self._spec.replica)

    def step(self, stop: threading.Event) -> bool:
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return not self._upstream.finished()
        started = time.perf_counter()
        self._stats.add("frames_in_total")
        with lease:
            fields = self._clip.views(lease.array)
            batch = self._model.make_input(fields["frames"], fields["flow"])
            meta = lease.meta
        t0 = time.perf_counter()
        scores = self._model.run(batch)[0]
        self._stats.observe("inference_seconds", time.perf_counter() - t0)
        out = self._out.get(meta.camera)
        if out is not None:
            loan = loan_slot(out, stop, self._heartbeat)
            if loan is not None:
                with loan:
                    loan.array.view("float32")[: scores.size] = scores
                    loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)
        self._stats.add("clips_total")
        timed(self._stats, started)
        return True

    def close(self) -> None:
        for endpoint in (self._in, *self._out.values()):
            if endpoint is not None:
                endpoint.close()
        self._upstream.close()
