"""Detect stage (pipeline "person"): one replica of the person models, shared by every
person camera.

Replicas take turns on the shared analysis ring the gates fill. For each frame: NanoDet
finds the people (tiled for a camera with `tiled_detection`), MoveNet gives each one 17
keypoints (daemon.stages.perception), and one "detections" record goes to the frame's
camera's results ring under the frame's id and capture time. A frame with nobody in it
still gets its (empty) record: the overlay counts results to know a file is done.

Both models take one image per call (their batch dimension is fixed at 1), so there is
no batching across cameras; replicas are how the stage scales.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from daemon.config import Config
from daemon.ipc import Consumer, Policy, Producer, attach_consumer, attach_producer
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
from daemon.stages.worker import STEP_WAIT_S, Heartbeat, StageFatal, WorkerSpec, loan_slot, timed

log = logging.getLogger(__name__)

# Per-frame cost = busy_seconds_total / frames_out_total; per person = pose_seconds_total
# / people_total; the detector's share = detector_seconds_total.
DETECT_FIELDS = (
    "people_total",
    "detector_seconds_total",
    "pose_seconds_total",
    *histogram_fields("detect_seconds"),
)
# A frame of a camera this replica has no results ring for (removed by a reload while
# its frame was in the ring).
LOST_NO_RING = Loss(RESULT, "no_ring")
RESULTS_CAPACITY = 8


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
        lease = self._in.get(STEP_WAIT_S)
        if lease is None:
            return not finished
        with lease:
            started = time.perf_counter()
            self._stats.add("frames_in_total")
            meta = lease.meta
            fields = self._analysis.views(lease.array)
            w, h, tiled = (int(v) for v in fields["info"])
            # A copy: the slot is reused once released.
            frame = fields["frame"][: h * w * 3].reshape(h, w, 3).copy()
        people = self._people(frame, bool(tiled))
        self._publish(people, (w, h), meta, stop)
        self._stats.observe("detect_seconds", time.perf_counter() - started)
        timed(self._stats, started)
        return True

    def _people(self, frame: np.ndarray, tiled: bool) -> People:
        models, p = self._models, self._p
        assert models is not None
        t0 = time.perf_counter()
        detect = models.detect_tiled if tiled else models.detect
        boxes, scores = detect(frame, p.min_score)
        boxes, scores = boxes[: p.max_people], scores[: p.max_people]
        t1 = time.perf_counter()
        keypoints = np.stack([models.keypoints(frame, b) for b in boxes]) if len(boxes) else None
        t2 = time.perf_counter()
        self._stats.add("detector_seconds_total", t1 - t0)
        self._stats.add("pose_seconds_total", t2 - t1)
        self._stats.add("people_total", len(scores))
        if keypoints is None:
            keypoints = np.zeros((0, records.COCO_KEYPOINTS, 3), np.float32)
        return People(boxes, scores, keypoints)

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
