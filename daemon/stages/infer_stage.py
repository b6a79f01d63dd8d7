"""Infer stage: one replica of the action model, shared by all cameras.

Replicas take turns on the shared clips ring (work-sharing); each result carries the
frame id of its clip's last frame, so the overlay joins it to the right frame whatever
order the replicas finish in.

Two things keep the model busy:
- Batching: when several clips are waiting (several cameras), one model run takes up to
  `max_batch` of them (1 for a model whose batch dimension is fixed at 1). A run of N
  clips costs less than N runs on a GPU, and about the same on a CPU.
- Prefetch: a feeder thread takes the next clips from the ring and turns them into the
  model's input while the model runs the current batch (onnxruntime, cv2 and numpy's
  large copies release the GIL), so the preparation (colour order, resize, float
  conversion, transpose: a few ms per clip) overlaps the run instead of adding to it.
  The feeder keeps at most one prepared batch waiting, so a clip waits at most one run
  longer than it would without prefetch, and only when the model is the bottleneck.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.ipc import Consumer, Lease, Producer, attach_consumer, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.packed import PackedSpec
from daemon.ipc.stats import StatsBlock, histogram_fields
from daemon.stages import records
from daemon.stages.model import ActionModel, ModelError
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec, loan_slot

log = logging.getLogger(__name__)

# clips_total / batches_total is the mean batch size; max_batch is the model's limit.
INFER_FIELDS = ("clips_total", "batches_total", "max_batch",
                *histogram_fields("inference_seconds"))
FEEDER_JOIN_S = 5.0   # the feeder's longest step is one ring wait plus one clip's prep


@dataclass(frozen=True)
class Batch:
    """Clips taken from the ring and prepared as one model input."""

    inputs: np.ndarray               # (len(metas), ...) as the model takes it
    metas: tuple[FrameMeta, ...]     # frame id, timestamp and camera of each clip
    prep_s: float                    # time spent preparing it (not waiting for clips)


class BatchFeeder:
    """Thread that takes clips from the ring and prepares the next batch ahead of the run.

    It owns the ring consumer (endpoints are not thread-safe). A lease is released as
    soon as its clip has been copied into the model input, so the slot is free for the
    producer while the clip waits for and goes through the model.
    """

    def __init__(self, consumer: Consumer, model: ActionModel, clip: PackedSpec,
                 upstream: Upstream, max_batch: int) -> None:
        self._in, self._model, self._clip = consumer, model, clip
        self._upstream, self._max_batch = upstream, max_batch
        self._ready: queue.Queue[Batch] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="infer-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self) -> bool:
        """True once upstream has finished and every clip has been handed over."""
        return self._finished.is_set()

    def next_batch(self, timeout_s: float) -> Batch | None:
        """The next prepared batch, or None if none came within `timeout_s`.

        Raises what stopped the feeder thread, so the worker fails instead of idling.
        """
        try:
            return self._ready.get(timeout=timeout_s)
        except queue.Empty:
            if self._error is not None:
                raise RuntimeError(f"infer feeder thread failed: {self._error}") from self._error
            if not self._thread.is_alive() and not self._finished.is_set():
                raise RuntimeError("infer feeder thread stopped without finishing")
            return None

    def stop(self) -> bool:
        """Stop the thread; False if it did not end in time (it may still hold views)."""
        self._stop.set()
        if self._thread.ident is None:
            return True
        self._thread.join(FEEDER_JOIN_S)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Read before looking: a clip published before upstream finished is
                # then surely visible to the get() below.
                upstream_done = self._upstream.finished()
                batch = self._collect()
                if batch is not None:
                    self._hand_over(batch)
                elif upstream_done:
                    self._finished.set()
                    return
        except BaseException as exc:  # handed to the main thread by next_batch()
            self._error = exc
            log.exception("infer feeder thread failed")

    def _collect(self) -> Batch | None:
        """One clip (waiting a bounded time), plus whatever else is ready up to max_batch."""
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return None
        started = time.perf_counter()
        inputs: list[np.ndarray] = []
        metas: list[FrameMeta] = []
        while lease is not None:
            with lease:
                inputs.append(self._prepare(lease))
                metas.append(lease.meta)
            if len(inputs) >= self._max_batch:
                break
            lease = self._in.try_get()
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        return Batch(batch, tuple(metas), time.perf_counter() - started)

    def _prepare(self, lease: Lease) -> np.ndarray:
        fields = self._clip.views(lease.array)
        x = self._model.make_input(fields["frames"], fields["flow"])
        # The slot is released before the run: the input must not be a view into it.
        return x.copy() if np.may_share_memory(x, lease.array) else x

    def _hand_over(self, batch: Batch) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(batch, timeout=STEP_WAIT_S)
                return
            except queue.Full:
                continue


class InferStage:
    """Runs the model on batches of clips and publishes each clip's scores to the results
    ring of its camera, under the clip's frame id."""

    def __init__(self, spec: WorkerSpec, stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._clip = records.clip_record(spec.config)
        self._model: ActionModel | None = None
        self._in: Consumer | None = None
        self._out: dict[str, Producer] = {}
        self._feeder: BatchFeeder | None = None
        self._unrouted: set[str] = set()   # cameras without a results ring, logged once
        self._upstream = Upstream(list(spec.extra.get("upstream_stats", [])))

    def open(self) -> None:
        try:
            self._model = ActionModel(self._spec.config.inference, str(self._spec.extra["model"]))
        except ModelError as exc:
            raise StageFatal(str(exc)) from exc
        max_batch = self._model.max_batch
        self._stats.set("max_batch", max_batch)
        self._in = attach_consumer(self._spec.rings["clips"], "infer", self._spec.replica)
        for role, path in self._spec.rings.items():
            if role.startswith("results:"):
                self._out[role.split(":", 1)[1]] = attach_producer(path, self._spec.replica)
        self._feeder = BatchFeeder(self._in, self._model, self._clip, self._upstream, max_batch)
        self._feeder.start()

    def step(self, stop: threading.Event) -> bool:
        model, feeder = self._model, self._feeder
        if model is None or feeder is None:
            raise RuntimeError("InferStage.step() called before open()")
        finished = feeder.finished()   # before waiting: no batch slips past
        batch = feeder.next_batch(STEP_WAIT_S)
        if batch is None:
            return not finished
        started = time.perf_counter()
        scores = model.run(batch.inputs)
        self._stats.observe("inference_seconds", time.perf_counter() - started)
        for meta, row in zip(batch.metas, scores):
            self._publish(meta, row, stop)
        self._account(batch, batch.prep_s + time.perf_counter() - started)
        return True

    def _publish(self, meta: FrameMeta, scores: np.ndarray, stop: threading.Event) -> None:
        out = self._out.get(meta.camera)
        if out is None:
            if meta.camera not in self._unrouted:
                self._unrouted.add(meta.camera)
                log.warning("clips from camera %r: this worker has no results ring for it; "
                            "their scores are dropped", meta.camera)
            return
        loan = loan_slot(out, stop, self._heartbeat)
        if loan is None:
            return  # dropped by the results ring's policy (counted there)
        with loan:
            loan.array.view("float32")[: scores.size] = scores
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def _account(self, batch: Batch, work_s: float) -> None:
        # Every clip of a batch took the whole batch's work time to come out. Busy time
        # counts preparation and run, which overlap: it can exceed wall time.
        n = len(batch.metas)
        for _ in range(n):
            self._stats.observe("processing_seconds", work_s)
        self._stats.add("busy_seconds_total", work_s)
        self._stats.add("frames_in_total", n)
        self._stats.add("frames_out_total", n)
        self._stats.add("clips_total", n)
        self._stats.add("batches_total")

    def close(self) -> None:
        for out in self._out.values():
            out.close()
        if self._feeder is not None and not self._feeder.stop():
            # Unmapping the ring or the upstream blocks under the thread's views would
            # raise or crash; the process is exiting, and the supervisor reclaims the
            # slots it held.
            log.error("infer feeder thread did not stop within %.0f s", FEEDER_JOIN_S)
            return
        if self._in is not None:
            self._in.close()
        self._upstream.close()
