"""The bare onnxruntime loop that `actiond bench inference` compares its infer stage with:
the bench clips prepared beforehand with make_input, batched as the stage batches them,
and session.run in a tight loop over them (no rings, no worker)."""

from __future__ import annotations

import math
import time

import numpy as np
import onnxruntime as ort

from daemon.bench.clip_feed import make_clips
from daemon.config import Config
from daemon.stages import records
from daemon.stages.model import ActionModel

BARE_WARMUP_RUNS = 3
CALIBRATION_S = 0.3  # bare runs that size the timed runs (see clips_for)


def prepare(config: Config, model: ActionModel) -> tuple[list[np.ndarray], float]:
    """The bench clips as model inputs (make_input), and the ms that took per clip."""
    facts = model.facts(config)
    record = records.clip_record(facts)
    packed = [buf for i in range(len(config.cameras)) for buf in make_clips(facts, i)]
    started = time.perf_counter()
    inputs = []
    for buf in packed:
        fields = record.views(buf)
        inputs.append(model.make_input(fields.get("frames"), fields.get("flow")))
    return inputs, 1000 * (time.perf_counter() - started) / len(inputs)


def bare_session(model_path: str, model: ActionModel, threads: int) -> ort.InferenceSession:
    """A session like the stage's (same providers and threads), for the bare loop."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model_path, options, providers=list(model.providers))


def bare_run(
    session: ort.InferenceSession, batches: list[np.ndarray], clips: int
) -> tuple[float, float]:
    """session.run in a tight loop on prepared batches: (clips/s, ms per run)."""
    batch, name = len(batches[0]), session.get_inputs()[0].name
    for j in range(BARE_WARMUP_RUNS):
        session.run(None, {name: batches[j % len(batches)]})
    runs = max(1, clips // batch)
    started = time.perf_counter()
    for j in range(runs):
        session.run(None, {name: batches[j % len(batches)]})
    elapsed = time.perf_counter() - started
    return runs * batch / elapsed, 1000 * elapsed / runs


def clips_for(
    session: ort.InferenceSession, batches: list[np.ndarray], clips: int, min_run_s: float
) -> int:
    """At least `clips`, and enough for each timed run to last `min_run_s`: a fast model
    is timed over many clips, so the ratio is not one scheduler hiccup."""
    batch, name = len(batches[0]), session.get_inputs()[0].name
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < CALIBRATION_S:
        session.run(None, {name: batches[runs % len(batches)]})
        runs += 1
    return max(clips, math.ceil(runs * batch / elapsed * min_run_s))


def bare_batches(inputs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """The prepared clips in batches of `batch`, cycling, as the bare loop runs them."""
    return [
        np.concatenate([inputs[(j + k) % len(inputs)] for k in range(batch)])
        for j in range(0, len(inputs), batch)
    ]
