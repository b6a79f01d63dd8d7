"""Pipelining benchmark: the seed's sequential loop against our ring pipeline.

The seed's stage profile (decode 4 ms, flow 20 ms, inference 15 ms, display 5 ms) is
simulated two ways: as waiting work (time.sleep: I/O, a GPU, a camera) and as CPU-busy
work (a spin loop: pure Python compute). Each way runs three times in one go: the seed's
sequential loop in one process; our pipeline (one spawn-context worker process per stage
joined by block-policy frame rings); and our pipeline with the slowest stage replicated
(work-sharing replicas on one ring). Throughput is measured at the sink.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess

import numpy as np

from daemon.bench.report import print_report
from daemon.exitcodes import ExitCode
from daemon.ipc import FrameRing, FrameSpec, Policy, RingSpec, attach_consumer, attach_producer

STAGES_MS = (("decode", 4.0), ("flow", 20.0), ("inference", 15.0), ("display", 5.0))
FRAME_SHAPE = (360, 640, 3)
RING_CAPACITY = 4
GET_TIMEOUT_S = 10.0
CTX = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class StageRun:
    """One stage process of the benchmark pipeline."""

    index: int
    work_ms: float
    mode: str
    in_path: str
    out_path: str
    member: int
    frames: int


def _work(ms: float, mode: str) -> None:
    if mode == "wait":
        time.sleep(ms / 1000)
        return
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        continue  # CPU-busy on purpose: this simulates compute


def _source(run: StageRun) -> None:
    out = attach_producer(run.out_path)
    frame = np.zeros(FRAME_SHAPE, np.uint8)
    for i in range(run.frames):
        _work(run.work_ms, run.mode)
        out.put(frame, i, time.monotonic_ns(), timeout=GET_TIMEOUT_S)
    out.close()


def _stage(run: StageRun, quota: int) -> None:
    inp = attach_consumer(run.in_path, "next", run.member)
    out = attach_producer(run.out_path, run.member)
    for _ in range(quota):
        lease = inp.get(GET_TIMEOUT_S)
        if lease is None:
            break
        with lease:
            meta = lease.meta
            _work(run.work_ms, run.mode)
            out.put(lease.array, meta.frame_id, meta.timestamp_ns, timeout=GET_TIMEOUT_S)
    inp.close()
    out.close()


def sequential_fps(frames: int, mode: str) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        for _, ms in STAGES_MS:
            _work(ms, mode)
    return frames / (time.perf_counter() - started)


def pipelined(frames: int, mode: str, replicas: dict[int, int]) -> dict[str, float]:
    """Run the stages as processes; replicas maps stage index -> replica count."""
    run_id = f"{os.getpid()}-bench{time.monotonic_ns() % 100000}"
    rings = []
    for i in range(len(STAGES_MS)):
        producers = replicas.get(i, 1)
        consumers = replicas.get(i + 1, 1)
        spec = RingSpec(
            FrameSpec(FRAME_SHAPE),
            RING_CAPACITY,
            Policy.BLOCK,
            (("next", consumers),),
            producers=producers,
        )
        rings.append(FrameRing.create(f"pipe{i}", spec, run_id))
    try:
        procs = _start_stages(frames, mode, replicas, rings)
        return _sink(rings[-1], frames, procs)
    finally:
        for ring in rings:
            ring.close()


def _start_stages(
    frames: int, mode: str, replicas: dict[int, int], rings: list[FrameRing]
) -> list[SpawnProcess]:
    procs = []
    name, ms = STAGES_MS[0]
    procs.append(
        CTX.Process(
            target=_source,
            args=(StageRun(0, ms, mode, "", str(rings[0].path), 0, frames),),
            name=name,
        )
    )
    for i in range(1, len(STAGES_MS)):
        name, ms = STAGES_MS[i]
        n = replicas.get(i, 1)
        for member in range(n):
            quota = frames // n + (member < frames % n)
            run = StageRun(i, ms, mode, str(rings[i - 1].path), str(rings[i].path), member, frames)
            procs.append(CTX.Process(target=_stage, args=(run, quota), name=f"{name}.{member}"))
    for proc in procs:
        proc.start()
    return procs


def _sink(ring: FrameRing, frames: int, procs: list[SpawnProcess]) -> dict[str, float]:
    consumer = ring.consumer("next")
    latencies_ms, first_s, got = [], 0.0, 0
    while got < frames:
        lease = consumer.get(GET_TIMEOUT_S)
        if lease is None:
            raise RuntimeError(f"pipeline stalled after {got} of {frames} frames")
        with lease:
            latencies_ms.append((time.monotonic_ns() - lease.meta.timestamp_ns) / 1e6)
        got += 1
        if got == 1:
            first_s = time.perf_counter()
    elapsed = time.perf_counter() - first_s
    consumer.close()
    for proc in procs:
        proc.join()
    warm = np.array(latencies_ms[len(latencies_ms) // 10 :])
    return {
        "fps": (frames - 1) / elapsed,
        "latency_ms_p50": float(np.percentile(warm, 50)),
        "latency_ms_p99": float(np.percentile(warm, 99)),
    }


def run_mode(frames: int, mode: str) -> dict[str, object]:
    total_s = sum(ms for _, ms in STAGES_MS) / 1000
    slowest_i = max(range(len(STAGES_MS)), key=lambda i: STAGES_MS[i][1])
    slowest_s = STAGES_MS[slowest_i][1] / 1000
    cores = os.cpu_count() or 1
    bound = 1 / slowest_s if mode == "wait" else min(1 / slowest_s, cores / total_s)
    seq = sequential_fps(max(10, frames // 4), mode)
    pipe = pipelined(frames, mode, {})
    rep = pipelined(frames, mode, {slowest_i: 2})
    return {
        "work": "waiting (sleep)" if mode == "wait" else "cpu-busy (spin)",
        "sequential_fps": round(seq, 2),
        "pipelined_fps": round(pipe["fps"], 2),
        "bound_fps": round(bound, 2),
        "replicated_fps": round(rep["fps"], 2),
        "replicated_stage": STAGES_MS[slowest_i][0],
        "one_over_slowest_fps": 1 / slowest_s,
        "latency_ms": {
            "p50": round(pipe["latency_ms_p50"], 2),
            "p99": round(pipe["latency_ms_p99"], 2),
        },
        "replicated_latency_ms": {
            "p50": round(rep["latency_ms_p50"], 2),
            "p99": round(rep["latency_ms_p99"], 2),
        },
        "pipelined_vs_bound": round(pipe["fps"] / bound, 3),
        "pipelined_vs_sequential": round(pipe["fps"] / seq, 3),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=300, help="frames per pipeline run")
    parser.add_argument("--json", action="store_true", help="print JSON only")


def run(args: argparse.Namespace) -> int:
    if args.frames < 20:
        print("actiond bench pipeline: --frames must be at least 20", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"bench pipeline: {args.frames} frames, waiting work ...", file=sys.stderr)
    result = run_mode(args.frames, "wait")
    print("bench pipeline: cpu-busy work ...", file=sys.stderr)
    result["cpu_busy"] = run_mode(args.frames, "cpu")
    result.update(stages_ms=dict(STAGES_MS), cores=os.cpu_count(), frames=args.frames)
    print_report(result, args.json)
    return ExitCode.OK
