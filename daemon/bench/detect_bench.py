"""The person pipeline's case of `actiond bench inference`: the shared `detect` stage
(NanoDet per frame, MoveNet on the people of several frames per call) against a bare
onnxruntime loop doing the same work.

Frames: real frames of the bundled clip of a room people walk through
(daemon/assets/one-by-one-person-detection.mp4), the ones where the shipped detector
finds someone, at the camera size the demo config uses (640 x 360).
stage_fps: frames/s through the daemon's own path. A producer process puts the frames
into the shared analysis ring as the cameras' gates do (one producer slot per camera),
the real detect worker (worker_main, spawn context, rings made by the real Topology)
runs them, and this process reads each frame's detections out of its camera's results
ring; the clock starts after a warm-up.
bare_fps: detector.run once per frame, then the pose model (and its decoding) on the
people of perception.batch_frames frames per call, as the stage does when frames wait in
its ring, on inputs prepared beforehand (the letterboxed frame and the person crops),
same sessions options and threads; measured before and after each stage run and
averaged. ratio = stage_fps / bare_fps, the run with the median ratio reported.
frames_per_batch and people_per_pose_call: what the stage's batches held.
pose_ms_per_person: the pose model alone at 1, 2, 4 and 8 crops per call, and the
original model (batch fixed at 1, decoding in the graph) for comparison.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from daemon.bench.stage_harness import run_stage, window_fps
from daemon.config import CameraConfig, Config, DaemonConfig, PerceptionConfig, facts_without_model
from daemon.ipc import Producer, attach_producer
from daemon.ipc.packed import PackedSpec
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.detect_stage import DetectStage
from daemon.stages.perception import (
    DEFAULT_DETECTOR,
    DEFAULT_POSE,
    PersonModels,
    movenet_input,
    nanodet_input,
    pose_crop,
)
from daemon.supervisor.topology import Topology

ROOM_CLIP = Path(__file__).resolve().parent.parent / "assets" / "one-by-one-person-detection.mp4"
FRAME_SIZE = (640, 360)  # the demo camera's width x height
FRAME_STEP = 15  # frames of the clip apart, when looking for frames with people
DISTINCT_FRAMES = 12  # frames with someone in them, cycled
PUT_TIMEOUT_S = 60.0  # the first put waits for the worker's models to load
DETECT_WORKER = "detect.0"
BARE_WARMUP_FRAMES = 3
POSE_BATCHES = (1, 2, 4, 8)  # pose_costs: crops per pose call
POSE_PEOPLE_PER_RUN = 32  # pose_costs: crops timed per batch size and round
ORIGINAL_POSE = DEFAULT_POSE.parent / "movenet-lightning.onnx"  # batch 1, decoding inside


@dataclass(frozen=True)
class Prepared:
    """The bench frames and the bare loop's inputs made from them."""

    frames: list[np.ndarray]  # BGR, FRAME_SIZE
    det_inputs: list[np.ndarray]  # NanoDet's input per frame
    pose_inputs: list[list[np.ndarray]]  # MoveNet's input per person per frame
    prep_ms: float  # making those inputs, per frame


def room_frames(models: PersonModels, min_score: float) -> list[np.ndarray]:
    """DISTINCT_FRAMES frames of the bundled clip where the detector finds someone."""
    cap = cv2.VideoCapture(str(ROOM_CLIP))
    found: list[np.ndarray] = []
    index = 0
    try:
        while len(found) < DISTINCT_FRAMES:
            ok, frame = cap.read()
            if not ok:
                break
            index += 1
            if index % FRAME_STEP:
                continue
            frame = cv2.resize(frame, FRAME_SIZE, interpolation=cv2.INTER_AREA)
            if len(models.detect(frame, min_score)[1]):
                found.append(frame)
    finally:
        cap.release()
    if not found:
        raise RuntimeError(f"no frame of {ROOM_CLIP} has a person in it: is the clip there?")
    return found


def prepare(models: PersonModels, min_score: float, max_people: int) -> Prepared:
    """The frames, and the bare loop's inputs as the stage would make them."""
    frames = room_frames(models, min_score)
    boxes = [models.detect(f, min_score)[0][:max_people] for f in frames]
    started = time.perf_counter()
    det_inputs = [nanodet_input(f)[0] for f in frames]
    pose_inputs = [
        [movenet_input(f, pose_crop(b)) for b in found] for f, found in zip(frames, boxes)
    ]
    prep_ms = 1000 * (time.perf_counter() - started) / len(frames)
    return Prepared(frames, det_inputs, pose_inputs, prep_ms)


def bare_run(
    models: PersonModels, prep: Prepared, frames: int, p: PerceptionConfig
) -> tuple[float, float]:
    """The two sessions in a tight loop on the prepared inputs, batched as the stage
    batches a full ring (p.batch_frames frames, their people in calls of p.pose_batch):
    (frames/s, people/frame)."""
    det_name = models.detector.get_inputs()[0].name
    group = max(1, p.batch_frames)

    def batch(k: int) -> int:
        held = [(k + j) % len(prep.frames) for j in range(group)]
        for i in held:
            models.detector.run(None, {det_name: prep.det_inputs[i]})
        crops = [x for i in held for x in prep.pose_inputs[i]]
        if crops:
            models.pose_raw(np.concatenate(crops), p.pose_batch)
        return len(crops)

    for k in range(BARE_WARMUP_FRAMES):
        batch(k * group)
    batches = max(1, frames // group)
    started = time.perf_counter()
    people = sum(batch(k * group) for k in range(batches))
    return batches * group / (time.perf_counter() - started), people / (batches * group)


def pose_costs(
    models: PersonModels, single: PersonModels, prep: Prepared, repeats: int
) -> dict[str, Any]:
    """Milliseconds per person of the pose model alone (with its decoding) at batch sizes
    POSE_BATCHES, and of the original model (one call per person); the sizes take turns
    in each of `repeats` rounds (a busy machine slows all alike), medians reported."""
    crops = np.concatenate([x for found in prep.pose_inputs for x in found])
    runs: dict[str, list[float]] = {f"batch_{n}": [] for n in POSE_BATCHES}
    runs["original"] = []
    for _ in range(repeats):
        for n in POSE_BATCHES:
            x = np.concatenate([crops[i % len(crops) : i % len(crops) + 1] for i in range(n)])
            runs[f"batch_{n}"].append(_per_person_ms(models, x, n))
        runs["original"].append(_per_person_ms(single, crops[: POSE_BATCHES[-1]], 1))
    return {k: round(float(np.median(v)), 2) for k, v in runs.items()}


def _per_person_ms(models: PersonModels, x: np.ndarray, batch: int) -> float:
    models.pose_raw(x, batch)  # warm: a new shape may be planned on its first call
    calls = max(1, POSE_PEOPLE_PER_RUN // len(x))
    started = time.perf_counter()
    for _ in range(calls):
        models.pose_raw(x, batch)
    return 1000 * (time.perf_counter() - started) / (calls * len(x))


def detect_config(cameras: int, threads: int, shm_dir: str) -> Config:
    """`cameras` lossless person cameras around the shipped models."""
    w, h = FRAME_SIZE
    cams = tuple(
        CameraConfig(
            f"cam{i}", "test:bench", ring_policy="block", pipeline="person", width=w, height=h
        )
        for i in range(cameras)
    )
    return Config(
        daemon=DaemonConfig(shm_dir=shm_dir, log_level="warning"),
        cameras=cams,
        perception=PerceptionConfig(threads=threads),
    )


@dataclass(frozen=True)
class DetectFeed:
    """What the producer process puts: `rounds` frames per camera, then end-of-stream."""

    cameras: tuple[str, ...]
    ring: str
    gate_stats: tuple[str, ...]
    rounds: int


def feed(job: DetectFeed) -> None:
    """Producer process: plays every camera's gate into the analysis ring."""
    models = PersonModels(DEFAULT_DETECTOR, DEFAULT_POSE)
    frames = room_frames(models, PerceptionConfig().min_score)
    producers = [attach_producer(job.ring, i) for i in range(len(job.cameras))]
    record = records.analysis_record_of(int(producers[0].spec.frame.nbytes))
    for k in range(job.rounds):
        for i, producer in enumerate(producers):
            _put(producer, record, frames[(k + i) % len(frames)], k, job.cameras[i])
    for producer in producers:
        producer.close()
    for path in job.gate_stats:  # upstream finished: the worker drains and exits
        block = StatsBlock.attach(path)
        block.set("finished", 1)
        block.close()


def _put(producer: Producer, record: PackedSpec, frame: np.ndarray, k: int, camera: str) -> None:
    """One frame into the analysis ring, as a gate writes it (its views dropped after)."""
    w, h = FRAME_SIZE
    loan = producer.loan(timeout=PUT_TIMEOUT_S)
    if loan is None:
        raise RuntimeError("the analysis ring took no frame (detect worker stalled)")
    with loan:
        fields = record.views(loan.array)
        fields["frame"][: frame.size] = frame.reshape(-1)
        fields["info"][...] = (w, h, 0)
        loan.publish(k, time.monotonic_ns(), camera)


def stage_run(config: Config, rounds: int) -> dict[str, float]:
    """Frames/s through the real analysis ring -> detect worker -> results rings."""
    topo = Topology(config, f"bench{os.getpid()}", "", facts_without_model(config))
    topo.build()
    try:
        cams = tuple(c.name for c in config.cameras)
        gates = tuple(str(topo.stats[f"{c}.gate"].path) for c in cams)
        job = DetectFeed(cams, str(topo.rings["analysis"].path), gates, rounds)
        run = run_stage(topo, DETECT_WORKER, DetectStage, feed, job, rounds * len(cams))
        stats = topo.stats[DETECT_WORKER]
        frames = max(1.0, stats.get("frames_out_total") or stats.get("frames_in_total"))
        return {
            "fps": window_fps(run.arrivals),
            "results": len(run.arrivals),
            "dropped": run.dropped,
            "people_per_frame": stats.get("people_total") / frames,
            "frames_per_batch": stats.get("frames_in_total") / max(1.0, stats.get("batches_total")),
            "people_per_call": stats.get("people_total") / max(1.0, stats.get("pose_calls_total")),
        }
    finally:
        topo.close()


def bench_detect(
    cameras: int, threads: int, frames: int, repeats: int, shm_dir: str
) -> dict[str, Any]:
    """stage_fps, bare_fps and their ratio for the detect stage (see the module doc)."""
    p = replace(PerceptionConfig(), threads=threads)
    models = PersonModels(DEFAULT_DETECTOR, DEFAULT_POSE, threads, p.providers)
    prep = prepare(models, p.min_score, p.max_people)
    config = detect_config(cameras, threads, shm_dir)
    rounds = max(2, frames // cameras)
    p = replace(p, batch_frames=min(p.batch_frames, cameras))  # one frame per camera
    bare = [bare_run(models, prep, rounds * cameras, p)]
    stages = []
    for _ in range(repeats):
        stages.append(stage_run(config, rounds))
        bare.append(bare_run(models, prep, rounds * cameras, p))
    single = PersonModels(DEFAULT_DETECTOR, ORIGINAL_POSE, threads, p.providers)
    bare_fps = [(bare[i][0] + bare[i + 1][0]) / 2 for i in range(repeats)]
    ratios = [s["fps"] / b for s, b in zip(stages, bare_fps)]
    k = sorted(range(repeats), key=ratios.__getitem__)[repeats // 2]
    return {
        "model": "detect (NanoDet-g per frame + MoveNet Lightning, people batched)",
        "clip": ROOM_CLIP.name,
        "frame_size": list(FRAME_SIZE),
        "distinct_frames": len(prep.frames),
        "stage_fps": round(stages[k]["fps"], 2),
        "bare_fps": round(bare_fps[k], 2),
        "ratio": round(ratios[k], 3),
        "ratio_runs": [round(r, 3) for r in ratios],
        "people_per_frame": round(bare[0][1], 2),
        "stage_people_per_frame": round(stages[k]["people_per_frame"], 2),
        "threads": threads,
        "cameras": cameras,
        "frames": stages[k]["results"],
        "results_dropped": stages[k]["dropped"],
        "bare_fps_runs": [round(fps, 2) for fps, _ in bare],
        "prep_ms_per_frame": round(prep.prep_ms, 3),
        "frames_per_batch": round(stages[k]["frames_per_batch"], 2),
        "people_per_pose_call": round(stages[k]["people_per_call"], 2),
        "batch_frames": p.batch_frames,
        "pose_ms_per_person": pose_costs(models, single, prep, max(3, repeats)),
    }
