"""The infer worker's two helper threads, which keep its model thread running the model.

- BatchFeeder takes clips from the clips ring and prepares the next batch while the model
  runs the current one. onnxruntime, cv2 and numpy's large copies release the GIL, so the
  preparation (colour order, resize, float conversion, transpose) overlaps the run instead
  of adding to it.
- ResultPublisher writes each clip's scores to its camera's results ring and accounts the
  batch while the model runs the next one. Publishing costs a lock and a wake-up per clip:
  a few percent of a sub-millisecond model's run, paid on the model's thread otherwise.

Both hand work over through queues of one item, so a clip waits at most one run longer
than it would without them, and only when the model is the bottleneck; a full results
ring still holds the model back (and through it the clips ring) as it would without.
Each thread owns its ring endpoints: endpoints are not thread-safe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

from daemon.ipc import Consumer, Producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.packed import PackedSpec
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.kinds import RESULT, Loss
from daemon.stages.model import ActionModel
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, loan_slot

log = logging.getLogger(__name__)

THREAD_JOIN_S = 5.0  # a helper's longest step: one ring wait plus one clip or one batch
# Batch buffers: the model runs one while the feeder fills the other. Reused, so a batch
# costs no allocation and no page faults, and its memory stays in cache.
BATCH_BUFFERS = 2
# A clip's result for a camera this replica has no results ring for (its camera was
# removed by a reload while the clip was in the ring): counted, logged once per camera.
LOST_NO_RING = Loss(RESULT, "no_ring")


@dataclass(frozen=True)
class Batch:
    """Clips taken from the ring and prepared into the first rows of a batch buffer."""

    buffer: np.ndarray  # (max_batch, ...) float32, owned by the feeder's pool
    metas: tuple[FrameMeta, ...]  # frame id, timestamp and camera of each clip
    prep_s: float  # time spent preparing it (not waiting for clips)

    @property
    def inputs(self) -> np.ndarray:
        """The model input: the filled rows."""
        return self.buffer[: len(self.metas)]


@dataclass(frozen=True)
class Scored:
    """A batch's scores, on their way to the results rings."""

    metas: tuple[FrameMeta, ...]
    scores: np.ndarray  # (len(metas), labels)
    prep_s: float
    run_s: float


class HelperThread:
    """A daemon thread whose failure is handed to the model's thread by check()."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        """Raise what stopped the thread, so the worker fails instead of idling."""
        if self._error is not None:
            raise RuntimeError(f"{self._thread.name} thread failed: {self._error}") from self._error

    def stop(self) -> bool:
        """Stop the thread; False if it did not end in time (it may still hold views)."""
        self._stop.set()
        if self._thread.ident is None:
            return True
        self._thread.join(THREAD_JOIN_S)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the model's thread by check()
            log.exception("%s thread failed", self._thread.name)
            # The kept error must not keep its frames' locals (views into ring slots)
            # alive: the rings could not be unmapped.
            traceback.clear_frames(exc.__traceback__)
            self._error = exc

    def _run(self) -> None:
        raise NotImplementedError


class BatchFeeder(HelperThread):
    """Takes clips from the ring and prepares the next batch ahead of the run.

    A lease is released as soon as its clip has been written into the batch buffer, so
    the slot is free for the producer while the clip waits for and goes through the model.
    """

    def __init__(
        self, consumer: Consumer, model: ActionModel, clip: PackedSpec, upstream: Upstream
    ) -> None:
        super().__init__("infer-feeder")
        self._in, self._model, self._clip, self._upstream = consumer, model, clip, upstream
        _, height, width, _ = clip.fields[0][1]  # (T, H, W, C): frames and flows alike
        shape = (model.max_batch, *model.input_shape(height, width))
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(BATCH_BUFFERS):
            self._free.put(np.zeros(shape, np.float32))
        self._ready: queue.Queue[Batch] = queue.Queue(maxsize=1)
        self._finished = threading.Event()

    def finished(self) -> bool:
        """True once upstream has finished and every clip has been handed over."""
        return self._finished.is_set()

    def next_batch(self, timeout_s: float) -> Batch | None:
        """The next prepared batch, or None if none came within `timeout_s`."""
        try:
            return self._ready.get(timeout=timeout_s)
        except queue.Empty:
            self.check()
            if not self.is_alive() and not self.finished():
                raise RuntimeError("infer feeder thread stopped without finishing") from None
            return None

    def recycle(self, batch: Batch) -> None:
        """Give the batch's buffer back once the model has run it."""
        self._free.put(batch.buffer)

    def _run(self) -> None:
        buffer = None
        while not self._stop.is_set():
            if buffer is None:
                buffer = self._take_buffer()
                continue
            # Read before looking: a clip published before upstream finished is then
            # surely visible to the get() below.
            upstream_done = self._upstream.finished()
            batch = self._collect(buffer)
            if batch is not None:
                buffer = None
                self._hand_over(batch)
            elif upstream_done:
                self._finished.set()
                return

    def _take_buffer(self) -> np.ndarray | None:
        try:
            return self._free.get(timeout=STEP_WAIT_S)
        except queue.Empty:
            return None

    def _collect(self, buffer: np.ndarray) -> Batch | None:
        """One clip (waiting a bounded time), plus whatever else is ready, up to the
        buffer's rows."""
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return None
        started = time.perf_counter()
        metas: list[FrameMeta] = []
        while lease is not None:
            with lease:
                fields = self._clip.views(lease.array)
                self._model.make_input(fields.get("frames"), fields.get("flow"), buffer[len(metas)])
                metas.append(lease.meta)
            if len(metas) == len(buffer):
                break
            lease = self._in.try_get()
        return Batch(buffer, tuple(metas), time.perf_counter() - started)

    def _hand_over(self, batch: Batch) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(batch, timeout=STEP_WAIT_S)
                return
            except queue.Full:
                continue


class ResultPublisher(HelperThread):
    """Writes each clip's scores to the results ring of its camera, under the clip's frame
    id, and accounts each batch in the stats block.

    One thread and one FIFO queue: results leave in the order the batches were run, so
    each camera's results stay in clip order.
    """

    def __init__(
        self,
        outputs: dict[str, Producer],
        stats: StatsBlock,
        heartbeat: Heartbeat,
        record: PackedSpec,
    ) -> None:
        super().__init__("infer-publisher")
        self._out, self._stats, self._heartbeat = outputs, stats, heartbeat
        self._record = record
        self._queue: queue.Queue[Scored] = queue.Queue(maxsize=1)
        self._pending = 0  # submitted and not yet published
        self._lock = threading.Lock()
        self._unrouted: set[str] = set()  # cameras without a results ring, logged once

    def submit(self, scored: Scored, stop: threading.Event) -> bool:
        """Queue a batch's scores; waits while the previous batch is still being published
        (a full results ring). False if `stop` was set first."""
        self.check()
        with self._lock:
            self._pending += 1
        while not stop.is_set():
            try:
                self._queue.put(scored, timeout=STEP_WAIT_S)
                return True
            except queue.Full:
                self.check()
        with self._lock:
            self._pending -= 1
        return False

    def idle(self) -> bool:
        """True when every submitted batch has been published."""
        self.check()
        with self._lock:
            return self._pending == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                scored = self._queue.get(timeout=STEP_WAIT_S)
            except queue.Empty:
                continue
            started = time.perf_counter()
            for meta, row in zip(scored.metas, scored.scores):
                self._publish(meta, row)
            self._account(scored, time.perf_counter() - started)
            with self._lock:
                self._pending -= 1

    def _publish(self, meta: FrameMeta, scores: np.ndarray) -> None:
        out = self._out.get(meta.camera)
        if out is None:
            self._stats.add(LOST_NO_RING.field)
            if meta.camera not in self._unrouted:
                self._unrouted.add(meta.camera)
                log.warning(
                    "clips from camera %r: this worker has no results ring for it; "
                    "their scores are dropped",
                    meta.camera,
                )
            return
        loan = loan_slot(out, self._stop, self._heartbeat)
        if loan is None:
            return  # dropped by the results ring's policy (counted there), or stopping
        with loan:
            records.write_result(self._record, loan.array, {"scores": scores})
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def _account(self, scored: Scored, publish_s: float) -> None:
        # Every clip of a batch took the whole batch's work time to come out. Busy time
        # counts preparation, run and publishing, which overlap: it can exceed wall time.
        n = len(scored.metas)
        work_s = scored.prep_s + scored.run_s + publish_s
        self._stats.observe("inference_seconds", scored.run_s)
        self._stats.observe("processing_seconds", work_s, count=n)
        self._stats.add("busy_seconds_total", work_s)
        self._stats.add("frames_in_total", n)
        self._stats.add("frames_out_total", n)
        self._stats.add("clips_total", n)
        self._stats.add("batches_total")
