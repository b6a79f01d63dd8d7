"""Detect stage (pipeline "person"): one replica of the person models, shared by every
person camera.

Replicas take turns on the shared analysis ring the gates fill. A replica takes the
frames of several cameras that are ready there (one per camera, up to
perception.batch_frames, waiting at most perception.batch_wait_ms for more), then
NanoDet finds the people in each (tiled for a camera with `tiled_detection`), MoveNet
gives all of them 17 keypoints in one batched call (daemon.stages.perception), and one
"detections" record per frame goes to its camera's results ring under the frame's id and
capture time. A frame with nobody in it still gets its (empty) record: the overlay
counts results to know a file is done.

The detector's batch is fixed at 1 (one call per frame); replicas are how it scales.
Batch sizes: frames_in_total / batches_total frames per batch, people_total /
pose_calls_total crops per pose call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.config import Config
from daemon.ipc import Consumer, Lease, Policy, Producer, attach_consumer, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.packed import PackedSpec
from daemon.ipc.stats import StatsBlock, histogram_fields
from daemon.stages import records
from daemon.stages.contract import ModelError
from daemon.stages.kinds import (
    RESULT,
    SHARED,
    InPort,
    Loss,
    OutPort,
    RingContext,
    RingShape,
    StageKind,
    WorkerContext,
)
from daemon.stages.perception import DEFAULT_DETECTOR, DEFAULT_POSE, People, PersonModels
from daemon.stages.upstream import Upstream
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec, loan_slot

log = logging.getLogger(__name__)

# Per-frame cost = busy_seconds_total / frames_out_total; per person = pose_seconds_total
# / people_total; the detector's share = detector_seconds_total.
DETECT_FIELDS = (
    "people_total",
    "batches_total",  # steps, each on the frames a replica took at once
    "pose_calls_total",  # pose model calls (each on up to perception.pose_batch crops)
    "detector_seconds_total",
    "pose_seconds_total",
    *histogram_fields("detect_seconds"),
)
# A frame of a camera this replica has no results ring for (removed by a reload while
# its frame was in the ring).
LOST_NO_RING = Loss(RESULT, "no_ring")
RESULTS_CAPACITY = 8


@dataclass(frozen=True)
class Held:
    """A frame taken from the analysis ring (a copy: its slot is released at once)."""

    frame: np.ndarray
    tiled: bool
    meta: FrameMeta

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.shape[1], self.frame.shape[0]


@dataclass(frozen=True)
class DetectArgs:
    upstream_stats: tuple[str, ...]  # every person camera's gate: have they finished?


class DetectStage:
    """Runs the person models on analysed frames; results to each frame's camera."""

    def __init__(
        self, spec: WorkerSpec[DetectArgs], stats: StatsBlock, heartbeat: Heartbeat
    ) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        cfg = spec.config
        self._p = cfg.perception
        self._result = records.person_result(cfg)
        self._record = records.result_record(self._result)
        self._models: PersonModels | None = None
        self._in: Consumer | None = None
        self._out: dict[str, Producer] = {}
        self._analysis: PackedSpec | None = None
        self._upstream = Upstream(list(spec.args.upstream_stats))
        self._warned: set[str] = set()
        # A frame taken while gathering a batch that already held its camera's: it
        # starts the next batch (a camera's frames stay in order, one per batch).
        self._next: Held | None = None

    def open(self) -> None:
        p = self._p
        try:
            self._models = PersonModels(
                p.detector or DEFAULT_DETECTOR, p.pose or DEFAULT_POSE, p.threads, p.providers
            )
        except ModelError as exc:
            raise StageFatal(str(exc)) from exc
        self._in = attach_consumer(self._spec.rings["frames"], KIND.name, self._spec.replica)
        self._analysis = records.analysis_record_of(int(self._in.spec.frame.nbytes))
        for camera, path in self._spec.camera_rings("results").items():
            self._out[camera] = attach_producer(path, self._spec.slot("results"))

    def step(self, stop: threading.Event) -> bool:
        if self._in is None or self._models is None or self._analysis is None:
            raise RuntimeError("DetectStage.step() called before open()")
        finished = self._upstream.finished()  # before waiting: no frame slips past
        first, self._next = self._next, None
        if first is None:
            lease = self._in.get(STEP_WAIT_S)
            if lease is None:
                return not finished
            first = self._hold(lease)
        started = time.perf_counter()
        held = self._take_ready(first, started)
        self._stats.add("batches_total")
        for one, people in zip(held, self._people(held)):
            self._publish(people, one.size, one.meta, stop)
        seconds, n = time.perf_counter() - started, len(held)
        # Every frame of a batch took the whole batch's time to come out (as in infer).
        self._stats.observe("detect_seconds", seconds, count=n)
        self._stats.observe("processing_seconds", seconds, count=n)
        self._stats.add("busy_seconds_total", seconds)
        self._stats.add("frames_out_total", n)
        return True

    def _hold(self, lease: Lease) -> Held:
        assert self._analysis is not None
        with lease:
            self._stats.add("frames_in_total")
            fields = self._analysis.views(lease.array)
            w, h, tiled = (int(v) for v in fields["info"])
            frame = fields["frame"][: h * w * 3].reshape(h, w, 3).copy()
            return Held(frame, bool(tiled), lease.meta)

    def _take_ready(self, first: Held, started: float) -> list[Held]:
        """`first` and the frames of other cameras ready in the ring, up to batch_frames
        frames, one per camera; waits for more until batch_wait_ms after `started`. A
        second frame of a camera held ends the batch and starts the next: batching one
        camera's frames would only make its earlier ones wait for its later ones."""
        assert self._in is not None
        held = [first]
        deadline = started + self._p.batch_wait_ms / 1000
        while len(held) < self._p.batch_frames:
            lease = self._in.try_get()
            if lease is None:
                left_s = deadline - time.perf_counter()
                lease = self._in.get(left_s) if left_s > 0 else None
            if lease is None:
                break
            one = self._hold(lease)
            if any(h.meta.camera == one.meta.camera for h in held):
                self._next = one
                break
            held.append(one)
        return held

    def _people(self, held: list[Held]) -> list[People]:
        """Each held frame's people: a detector call per frame, one pose batch for all."""
        models, p = self._models, self._p
        assert models is not None
        t0 = time.perf_counter()
        found = []
        for one in held:
            detect = models.detect_tiled if one.tiled else models.detect
            boxes, scores = detect(one.frame, p.min_score)
            found.append((boxes[: p.max_people], scores[: p.max_people]))
        t1 = time.perf_counter()
        crops = [(one.frame, box) for one, (boxes, _) in zip(held, found) for box in boxes]
        keypoints = models.keypoints_many(crops, p.pose_batch)
        calls = -(-len(crops) // p.pose_batch) if models.pose_batched else len(crops)
        t2 = time.perf_counter()
        self._stats.add("detector_seconds_total", t1 - t0)
        self._stats.add("pose_seconds_total", t2 - t1)
        self._stats.add("people_total", len(crops))
        self._stats.add("pose_calls_total", calls)
        out, at = [], 0
        for boxes, scores in found:
            out.append(People(boxes, scores, keypoints[at : at + len(boxes)]))
            at += len(boxes)
        return out

    def _publish(
        self, people: People, size: tuple[int, int], meta: FrameMeta, stop: threading.Event
    ) -> None:
        out = self._out.get(meta.camera)
        if out is None:
            self._stats.add(LOST_NO_RING.field)
            if meta.camera not in self._warned:
                self._warned.add(meta.camera)
                log.warning(
                    "detect: no results ring for camera %r; its results are lost", meta.camera
                )
            return
        loan = loan_slot(out, stop, self._heartbeat)
        if loan is None:
            return  # dropped by the results ring's policy (counted there) or stopping
        with loan:
            records.write_result(
                self._record,
                loan.array,
                detections_fields(people, size, self._result.max_detections),
            )
            loan.publish(meta.frame_id, meta.timestamp_ns, meta.camera)

    def close(self) -> None:
        for out in self._out.values():
            out.close()
        if self._in is not None:
            self._in.close()
        self._upstream.close()


def detections_fields(people: People, size: tuple[int, int], n_max: int) -> dict[str, np.ndarray]:
    """A detections record's fields for up to n_max people: boxes and keypoints as shares
    of the frame's width and height (the record's convention), class 0 (person)."""
    w, h = size
    n = min(len(people), n_max)
    scale = np.array([w, h, w, h], np.float32)
    kp = people.keypoints.copy()
    kp[:, :, 0] /= w
    kp[:, :, 1] /= h
    return {
        "count": np.array([n], np.int32),
        "boxes": _padded((people.boxes / scale)[:n], n_max),
        "scores": _padded(people.scores[:n], n_max),
        "classes": np.zeros(n_max, np.int32),
        "keypoints": _padded(kp[:n], n_max),
    }


def _padded(rows: np.ndarray, n_max: int) -> np.ndarray:
    """`rows` in an array of n_max rows (the record's size), zeros after them."""
    out = np.zeros((n_max, *rows.shape[1:]), rows.dtype)
    out[: len(rows)] = rows
    return out


def _results_ring(ctx: RingContext) -> RingShape:
    # Only the newest results matter to the overlay, which joins them by frame id.
    spec = records.person_result(ctx.config)
    return RingShape(records.result_record(spec).frame_spec(), RESULTS_CAPACITY, Policy.DROP_OLDEST)


def _args(ctx: WorkerContext) -> DetectArgs:
    return DetectArgs(ctx.upstream_stats)


def _replicas(config: Config) -> int:
    return config.perception.replicas


KIND = StageKind(
    name="detect",
    factory=DetectStage,
    scope=SHARED,
    inputs=(InPort("frames"),),
    outputs=(OutPort("results", ring="results", item=RESULT, shape=_results_ring),),
    args=_args,
    stats_fields=DETECT_FIELDS,
    losses=(LOST_NO_RING,),
    replicas=_replicas,
    status_unit="frames/s",
)
