"""The person pipeline's case of `actiond bench inference`: the shared `detect` stage
(NanoDet + MoveNet per person) against a bare onnxruntime loop doing the same work.

Frames: real frames of the bundled clip of a room people walk through
(daemon/assets/one-by-one-person-detection.mp4), the ones where the shipped detector
finds someone, at the camera size the demo config uses (640 x 360).
stage_fps: frames/s through the daemon's own path. A producer process puts the frames
into the shared analysis ring as the cameras' gates do (one producer slot per camera),
the real detect worker (worker_main, spawn context, rings made by the real Topology)
runs them, and this process reads each frame's detections out of its camera's results
ring; the clock starts after a warm-up.
bare_fps: detector.run once per frame, then pose.run once per person found, on inputs
prepared beforehand (the letterboxed frame and the person crops), same sessions options
and threads; measured before and after each stage run and averaged. ratio =
stage_fps / bare_fps, the run with the median ratio reported.
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


def bare_run(models: PersonModels, prep: Prepared, frames: int) -> tuple[float, float]:
    """The two sessions in a tight loop on the prepared inputs: (frames/s, people/frame)."""
    det_name = models.detector.get_inputs()[0].name
    pose_name = models.pose.get_inputs()[0].name

    def one(k: int) -> int:
        i = k % len(prep.frames)
        models.detector.run(None, {det_name: prep.det_inputs[i]})
        for x in prep.pose_inputs[i]:
            models.pose.run(None, {pose_name: x})
        return len(prep.pose_inputs[i])

    for k in range(BARE_WARMUP_FRAMES):
        one(k)
    started = time.perf_counter()
    people = sum(one(k) for k in range(frames))
    return frames / (time.perf_counter() - started), people / frames


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
    bare = [bare_run(models, prep, rounds * cameras)]
    stages = []
    for _ in range(repeats):
        stages.append(stage_run(config, rounds))
        bare.append(bare_run(models, prep, rounds * cameras))
    bare_fps = [(bare[i][0] + bare[i + 1][0]) / 2 for i in range(repeats)]
    ratios = [s["fps"] / b for s, b in zip(stages, bare_fps)]
    k = sorted(range(repeats), key=ratios.__getitem__)[repeats // 2]
    return {
        "model": "detect (NanoDet-g + MoveNet Lightning per person)",
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
    }
