"""Inference benchmark: our infer stage against a bare onnxruntime loop, same model and inputs.

stage_fps: clips/s through the daemon's own path. A producer process puts clips into the
shared clips ring (as the motion stages do, one producer per camera), the daemon's infer
worker (worker_main, spawn context, rings made by the real Topology) runs them, and this
process reads each clip's scores out of its camera's results ring. The clock starts
after a warm-up (the worker's model load and first runs are not counted).
bare_fps: session.run in a tight loop on the same clips, prepared beforehand with
make_input and batched like the stage batches them; measured before and after each stage
run and averaged, to soften a busy machine. ratio = stage_fps / bare_fps, from the median
of --repeats stage runs.
Each timed run takes at least --clips clips and, for a fast model, enough clips to last
about --min-seconds: a sub-millisecond model timed over 200 clips (70 ms) measures the
scheduler more than the stage.

Models: the bundled demo model; a generated R(2+1)D-like stack of Conv3D+ReLU layers
(random weights, rgb 8x112x112, about 2 GFLOPs per clip) with its batch fixed at 1; the
same weights with a free batch dimension, batched across cameras, and once more with
inference.max_batch = 1 (the `batching` section compares those two).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from daemon.bench.bare_loop import bare_batches, bare_run, bare_session, clips_for, prepare
from daemon.bench.clip_feed import FeedJob, feed
from daemon.bench.convnet import build_conv3d_model
from daemon.bench.detect_bench import bench_detect
from daemon.bench.report import machine_info
from daemon.bench.stage_harness import run_stage, window_fps
from daemon.config import CameraConfig, Config, DaemonConfig, InferenceConfig, ModelFacts
from daemon.exitcodes import ExitCode
from daemon.stages.contract import ModelError
from daemon.stages.infer_stage import InferStage
from daemon.stages.model import ActionModel
from daemon.supervisor.boot import DEFAULT_MODEL
from daemon.supervisor.topology import Topology

INFER_WORKER = "infer.0"


@dataclass(frozen=True)
class Case:
    """One model to benchmark."""

    name: str
    model_path: str
    gflops: float | None
    max_batch: int = 0  # inference.max_batch; 0: the model's limit


def bench_config(
    model_path: str, model: ActionModel, cameras: int, threads: int, shm_dir: str
) -> Config:
    """A pipeline config of `cameras` lossless cameras around the model."""
    cams = tuple(CameraConfig(f"cam{i}", "test:bench", ring_policy="block") for i in range(cameras))
    return Config(
        daemon=DaemonConfig(shm_dir=shm_dir, log_level="warning"),
        cameras=cams,
        inference=InferenceConfig(model=model_path, threads=threads, max_batch=model.max_batch),
    )


def stage_run(config: Config, facts: ModelFacts, rounds: int) -> dict[str, float]:
    """Clips/s through the real clips ring -> infer worker -> results rings."""
    topo = Topology(config, f"bench{os.getpid()}", config.inference.model, facts)
    topo.build()
    try:
        cams = [c.name for c in config.cameras]
        motion = tuple(str(topo.stats[f"{c}.motion"].path) for c in cams)
        job = FeedJob(config, facts, str(topo.rings["clips"].path), motion, rounds)
        run = run_stage(topo, INFER_WORKER, InferStage, feed, job, rounds * len(cams))
        stats = topo.stats[INFER_WORKER]
        return {
            "fps": window_fps(run.arrivals),
            "results": len(run.arrivals),
            "dropped": run.dropped,
            "batch": stats.get("clips_total") / max(1.0, stats.get("batches_total")),
        }
    finally:
        topo.close()


@dataclass(frozen=True)
class Settings:
    """The command line's choices, the same for every model."""

    cameras: int
    threads: int
    clips: int  # per timed run, at least
    min_run_s: float  # per timed run, about, for fast models
    repeats: int  # stage runs, each between two bare runs
    shm_dir: str


# One model's result: a JSON object (numbers, the model's name and path, lists of runs).
Result = dict[str, Any]


@dataclass(frozen=True)
class Runs:
    """What was measured for one model: every stage run, and the bare runs around them."""

    stages: list[dict[str, float]]  # stage_run's answers
    bare: list[tuple[float, float]]  # bare_run's (clips/s, ms per run), one more than stages
    prep_ms: float  # make_input, per clip
    batch: int  # the bare loop's batch
    max_batch: int
    clip_shape: list[int]


def bench_case(case: Case, settings: Settings) -> Result:
    """stage_fps, bare_fps and their ratio for one model.

    The bare loop runs before the first stage run and after every one, so each stage run
    has a bare run on either side; the reported run is the one with the median ratio (a
    shared machine's hiccup in one run does not decide the result), and every run's
    ratio is listed.
    """
    result = summarise(case, settings, measure(case, settings))
    _progress(
        f"{case.name}: stage {result['stage_fps']} clips/s, bare {result['bare_fps']} "
        f"clips/s, ratio {result['ratio']} (runs {result['ratio_runs']}), "
        f"batch {result['batch']}"
    )
    return result


def measure(case: Case, settings: Settings) -> Runs:
    """The bare loop, then `settings.repeats` times a stage run followed by the bare loop."""
    model = ActionModel(
        InferenceConfig(threads=settings.threads, max_batch=case.max_batch), case.model_path
    )
    config = bench_config(
        case.model_path, model, settings.cameras, settings.threads, settings.shm_dir
    )
    inputs, prep_ms = prepare(config, model)
    session = bare_session(case.model_path, model, settings.threads)
    # The bare loop runs full batches (its best case) whatever batches the stage forms.
    batch = model.max_batch
    batches = bare_batches(inputs, batch)
    clips = clips_for(session, batches, settings.clips, settings.min_run_s)
    rounds = max(2, clips // settings.cameras)
    _progress(
        f"{case.name}: {settings.repeats} infer stage run(s) of {rounds * settings.cameras}"
        f" clips from {settings.cameras} camera(s), bare loop (batch {batch}) around each"
    )
    bare = [bare_run(session, batches, clips)]
    stages = []
    for _ in range(settings.repeats):
        stages.append(stage_run(config, model.facts(config), rounds))
        bare.append(bare_run(session, batches, clips))
    return Runs(stages, bare, prep_ms, batch, model.max_batch, list(inputs[0].shape[1:]))


def summarise(case: Case, settings: Settings, runs: Runs) -> Result:
    """The reported run (median ratio), every run's ratio, and the bound on the stage."""
    bare, batch = runs.bare, runs.batch
    bare_fps = [(bare[i][0] + bare[i + 1][0]) / 2 for i in range(settings.repeats)]
    ratios = [stage["fps"] / fps for stage, fps in zip(runs.stages, bare_fps)]
    k = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    run_ms = float(np.median([ms for _, ms in bare]))
    # No stage that must prepare its inputs beats the slower of preparation and run.
    bound_fps = 1000 / max(runs.prep_ms, run_ms / batch)
    stage = runs.stages[k]
    result: Result = {
        "model": case.name,
        "path": case.model_path,
        "stage_fps": round(stage["fps"], 2),
        "bare_fps": round(bare_fps[k], 2),
        "ratio": round(ratios[k], 3),
        "ratio_runs": [round(r, 3) for r in ratios],
        "batch": round(stage["batch"], 2),
        "bare_batch": batch,
        "max_batch": runs.max_batch,
        "threads": settings.threads,
        "clip_shape": runs.clip_shape,
        "cameras": settings.cameras,
        "clips": stage["results"],
        "results_dropped": stage["dropped"],
        "bare_fps_runs": [round(fps, 2) for fps, _ in bare],
        "prep_ms_per_clip": round(runs.prep_ms, 3),
        "run_ms_per_batch": round(run_ms, 3),
        "bound_fps": round(bound_fps, 2),
        "ratio_to_bound": round(stage["fps"] / bound_fps, 3),
    }
    if case.gflops is not None:
        result["gflops_per_clip"] = round(case.gflops, 3)
    return result


def batching_summary(cameras: int, batched: Result, single: Result) -> dict[str, float]:
    """Batching on or off with the same model file (inference.max_batch = 0 or 1)."""
    return {
        "cameras": cameras,
        "batch": batched["batch"],
        "batch1_stage_fps": single["stage_fps"],
        "batched_stage_fps": batched["stage_fps"],
        "batch1_bare_fps": single["bare_fps"],
        "batched_bare_fps": batched["bare_fps"],
        "speedup": round(batched["stage_fps"] / single["stage_fps"], 3),
    }


def _progress(message: str) -> None:
    print(f"bench inference: {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clips",
        type=int,
        default=200,
        help="clips per timed run (stage and bare loop, per model), at least",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="a fast model runs more clips, so that each timed run lasts about this long",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="stage runs per model (the median ratio is reported)"
    )
    parser.add_argument(
        "--cameras", type=int, default=4, help="cameras feeding the shared clips ring"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="ONNX model to run besides the generated ones (default: the bundled demo model)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")


def run(args: argparse.Namespace) -> int:
    problem = _argument_problem(args)
    if problem:
        print(f"actiond bench inference: {problem}", file=sys.stderr)
        return ExitCode.CONFIG
    work = Path(tempfile.mkdtemp(prefix="actiond-bench-"))
    shm_dir = tempfile.mkdtemp(prefix="actiond-bench-", dir="/dev/shm")
    try:
        settings = Settings(
            args.cameras, args.threads, args.clips, args.min_seconds, args.repeats, shm_dir
        )
        results = [bench_case(c, settings) for c in _cases(args.model, work)]
        person = bench_detect(args.cameras, args.threads, args.clips, args.repeats, shm_dir)
    except ModelError as exc:
        print(f"actiond bench inference: model error: {exc}", file=sys.stderr)
        return ExitCode.BOOT
    except RuntimeError as exc:  # a stalled or failed worker: named in the message
        print(f"actiond bench inference: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm_dir, ignore_errors=True)
    _print_results(args.cameras, results, person, as_json=args.json)
    return ExitCode.OK


def _argument_problem(args: argparse.Namespace) -> str:
    """What is wrong with the command line, or ""."""
    if (
        args.clips < 20
        or args.cameras < 1
        or args.threads < 1
        or args.min_seconds < 0
        or args.repeats < 1
    ):
        return (
            "need --clips >= 20, --cameras >= 1, --threads >= 1, --min-seconds >= 0, --repeats >= 1"
        )
    if not args.model.is_file():
        return f"model {args.model} not found: pass --model PATH"
    return ""


def _cases(model: Path, work: Path) -> list[Case]:
    """The user's model (default: the bundled one) and the generated Conv3D models, written
    into `work`: batch fixed at 1, a free batch, and the free batch with max_batch = 1."""
    gflops = build_conv3d_model(work / "conv3d-b1.onnx", 1)
    build_conv3d_model(work / "conv3d-dyn.onnx", "N")
    name = "bundled" if model == DEFAULT_MODEL else model.stem
    return [
        Case(name, str(model.resolve()), None),
        Case("conv3d", str(work / "conv3d-b1.onnx"), gflops),
        Case("conv3d-dynamic-batch", str(work / "conv3d-dyn.onnx"), gflops),
        Case("conv3d-dynamic-batch-max1", str(work / "conv3d-dyn.onnx"), gflops, 1),
    ]


def _print_results(cameras: int, results: list[Result], person: Result, as_json: bool) -> None:
    machine = {
        **machine_info(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    doc = {
        "machine": machine,
        "models": results,
        "batching": batching_summary(cameras, batched=results[2], single=results[3]),
        "person": person,
    }
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        for result in results:
            print(json.dumps(result))
        print(json.dumps(doc["batching"]))
        print(json.dumps(person))
