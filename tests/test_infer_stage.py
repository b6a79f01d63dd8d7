"""The infer stage with real rings, a real onnxruntime model and a real worker process.

Clips from two cameras go into a shared clips ring; the stage batches what is waiting
(when the model's batch dimension allows it), and each clip's scores must come out in
its own camera's results ring under its own frame id, equal to a direct session.run of
that clip alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from daemon_proc import wait_for
from onnx import TensorProto, helper, numpy_helper
from ring_workers import ShmArea

from daemon.config import CameraConfig, Config, InferenceConfig, MotionConfig, facts_without_model
from daemon.exitcodes import ExitCode
from daemon.ipc import FrameRing, Policy, RingSpec, attach_producer
from daemon.ipc.layout import FrameMeta
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.infer_stage import InferArgs, InferStage
from daemon.stages.infer_threads import LOST_NO_RING, ResultPublisher, Scored
from daemon.stages.model import ActionModel
from daemon.stages.records import CLIP_SCORES, ResultSpec
from daemon.stages.registry import stats_fields
from daemon.stages.worker import Heartbeat, WorkerSpec, worker_main

pytest_plugins = ["ring_workers"]  # the shm and spawn fixtures

CAMERAS = ("cam_a", "cam_b")
LABELS = ("one", "two", "three")
CLIP_T, SIZE = 4, 16
CLIPS_PER_CAMERA = 3
RING_CAPACITY = 8  # holds every clip of a test, so all can wait at once
STEP_DEADLINE_S = 30.0
JOIN_TIMEOUT_S = 60.0  # spawn + onnxruntime import on a loaded 2-core box


def _write_model(path: Path, batch: int | str) -> Path:
    """rgb clip (N,3,T,H,W) -> mean per channel -> linear map to one score per label."""
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((3, len(LABELS))).astype(np.float32)
    bias = np.arange(len(LABELS), dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["clip"], ["pooled"], axes=[2, 3, 4], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        helper.make_node("Add", ["logits", "b"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [batch, 3, CLIP_T, SIZE, SIZE])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, len(LABELS)])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {"labels": ",".join(LABELS), "layout": "NCTHW", "input": "rgb", "clip_length": str(CLIP_T)},
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@dataclass
class Rig:
    """The rings and stats blocks around one infer worker."""

    config: Config
    model_path: Path
    clips: FrameRing
    results: dict[str, FrameRing]
    upstream: StatsBlock
    stats: StatsBlock

    def spec(self) -> WorkerSpec[InferArgs]:
        rings = {"clips": str(self.clips.path)}
        rings.update({f"results:{c}": str(r.path) for c, r in self.results.items()})
        args = InferArgs(
            str(self.model_path),
            ResultSpec(CLIP_SCORES, LABELS),
            (str(self.upstream.path),),
            facts_without_model(self.config),
        )
        return WorkerSpec("infer", "infer.0", "", 0, str(self.stats.path), rings, self.config, args)

    def close(self) -> None:
        self.upstream.close(unlink=True)
        self.stats.close(unlink=True)


@pytest.fixture
def rig_for(shm: ShmArea, tmp_path: Path) -> Iterator[Callable[[int | str], Rig]]:
    """build(batch) -> a Rig whose model has that batch dimension (1, or a free name)."""
    made: list[Rig] = []

    def build(batch: int | str) -> Rig:
        config = Config(
            cameras=tuple(CameraConfig(c, "test:smpte", width=32, height=24) for c in CAMERAS),
            motion=MotionConfig(width=SIZE, height=SIZE),
            inference=InferenceConfig(model="", clip_length=CLIP_T),
        )
        clip_spec = records.clip_record(facts_without_model(config)).frame_spec()
        result_spec = records.result_record(ResultSpec(CLIP_SCORES, LABELS)).frame_spec()
        clips = shm.ring(
            "clips",
            RingSpec(
                clip_spec, RING_CAPACITY, Policy.BLOCK, (("infer", 1),), producers=len(CAMERAS)
            ),
        )
        results = {
            c: shm.ring(
                f"{c}.results",
                RingSpec(result_spec, RING_CAPACITY, Policy.DROP_OLDEST, (("overlay", 1),)),
            )
            for c in CAMERAS
        }
        upstream = StatsBlock.create("motion.stats", ("finished",), shm.run_id, shm.dir)
        stats = StatsBlock.create("infer.stats", stats_fields("infer"), shm.run_id, shm.dir)
        rig = Rig(
            config,
            _write_model(tmp_path / f"tiny-{batch}.onnx", batch),
            clips,
            results,
            upstream,
            stats,
        )
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.close()


Clips = dict[tuple[str, int], np.ndarray]  # (camera, frame id) -> clip record or scores


def _clip(camera: int, frame_id: int, config: Config) -> np.ndarray:
    """A packed clip record whose pixels differ per camera and frame id."""
    record = records.clip_record(facts_without_model(config))
    buf = np.zeros(record.nbytes, np.uint8)
    rng = np.random.default_rng(1000 * camera + frame_id)
    fields = record.views(buf)
    fields["frames"][...] = rng.integers(0, 256, fields["frames"].shape, dtype=np.uint8)
    fields["flow"][...] = rng.standard_normal(fields["flow"].shape).astype(np.float16)
    return buf


def _feed(rig: Rig) -> Clips:
    """Put every clip of both cameras, interleaved; returns them by (camera, frame id)."""
    sent = {}
    producers = [attach_producer(rig.clips.path, i) for i in range(len(CAMERAS))]
    try:
        for k in range(CLIPS_PER_CAMERA):
            for i, (camera, producer) in enumerate(zip(CAMERAS, producers)):
                frame_id = 100 * (i + 1) + k
                buf = _clip(i, frame_id, rig.config)
                assert producer.put(buf, frame_id, camera=camera, timeout=5.0)
                sent[(camera, frame_id)] = buf
    finally:
        for producer in producers:
            producer.close()
    return sent


def _expected(rig: Rig, sent: Clips) -> Clips:
    """Each clip's scores from a plain onnxruntime session, one clip per run."""
    model = ActionModel(rig.config.inference, str(rig.model_path))
    session = ort.InferenceSession(str(rig.model_path), providers=["CPUExecutionProvider"])
    record = records.clip_record(facts_without_model(rig.config))
    out = {}
    for key, buf in sent.items():
        fields = record.views(buf)
        x = model.make_input(fields["frames"], fields["flow"])
        out[key] = session.run(None, {"clip": x})[0][0]
    return out


def _collect(rig: Rig) -> Clips:
    """Everything in the results rings, by (ring's camera, frame id); each camera's
    results must come out in the order its clips went in (ascending frame ids)."""
    got = {}
    for camera, ring in rig.results.items():
        last_id = -1
        with ring.consumer("overlay") as consumer:
            while (lease := consumer.try_get()) is not None:
                with lease:
                    assert lease.meta.camera == camera, "result carries another camera's name"
                    assert lease.meta.frame_id > last_id, f"{camera}: results out of order"
                    last_id = lease.meta.frame_id
                    got[(camera, lease.meta.frame_id)] = lease.array.view("float32")[
                        : len(LABELS)
                    ].copy()
    return got


def _run_in_process(rig: Rig) -> None:
    """Drive the stage like a worker does until it reports that it has finished."""
    stage = InferStage(rig.spec(), rig.stats, Heartbeat(rig.stats))
    stop = threading.Event()
    deadline = time.monotonic() + STEP_DEADLINE_S
    try:
        stage.open()
        while stage.step(stop):
            assert time.monotonic() < deadline, "the stage did not finish after upstream did"
    finally:
        stage.close()


def _check_results(rig: Rig, sent: Clips) -> None:
    got = _collect(rig)
    assert sorted(got) == sorted(sent), f"results {sorted(got)} for clips {sorted(sent)}"
    expected = _expected(rig, sent)
    for key, scores in got.items():
        np.testing.assert_allclose(
            scores, expected[key], rtol=1e-5, atol=1e-6, err_msg=f"scores of clip {key}"
        )
    assert rig.clips.stats().occupancy == 0, "clip slots were not released"


@pytest.mark.timeout(60)
def test_clips_of_two_cameras_are_batched_and_routed(rig_for) -> None:
    rig = rig_for("N")
    sent = _feed(rig)  # every clip waits in the ring before the stage starts
    rig.upstream.set("finished", 1)
    _run_in_process(rig)
    clips = len(sent)
    assert rig.stats.get("clips_total") == clips
    assert rig.stats.get("max_batch") > 1, "a free batch dimension must allow batches"
    assert rig.stats.get("batches_total") < clips, "waiting clips were run one by one"
    assert rig.stats.get("inference_seconds_count") == rig.stats.get("batches_total")
    assert rig.stats.get("frames_out_total") == clips
    _check_results(rig, sent)


@pytest.mark.timeout(60)
def test_fixed_batch_model_runs_clips_one_by_one(rig_for) -> None:
    rig = rig_for(1)
    sent = _feed(rig)
    rig.upstream.set("finished", 1)
    _run_in_process(rig)
    assert rig.stats.get("max_batch") == 1
    assert rig.stats.get("batches_total") == len(sent) == rig.stats.get("clips_total")
    _check_results(rig, sent)


@pytest.mark.timeout(120)
def test_worker_finishes_only_after_upstream_finished_and_ring_empty(rig_for, spawn) -> None:
    rig = rig_for("N")
    proc = spawn(worker_main, rig.spec(), InferStage)
    sent = _feed(rig)
    wait_for(
        lambda: rig.stats.get("clips_total") == len(sent) or not proc.is_alive(),
        JOIN_TIMEOUT_S,
        "the worker to process every clip",
    )
    assert proc.is_alive(), f"the worker exited ({proc.exitcode}) before upstream finished"
    # Upstream is still running: the worker must keep waiting for clips (a bounded look
    # for a wrong exit, not a synchronisation).
    proc.join(1.0)
    assert proc.is_alive(), f"the worker exited ({proc.exitcode}) before upstream finished"
    rig.upstream.set("finished", 1)
    proc.join(JOIN_TIMEOUT_S)
    assert proc.exitcode == ExitCode.OK, f"worker exit code {proc.exitcode}"
    assert rig.stats.get("finished") == 1
    _check_results(rig, sent)


@pytest.mark.timeout(60)
def test_clip_of_a_camera_without_results_ring_is_dropped_not_fatal(rig_for) -> None:
    rig = rig_for("N")
    with attach_producer(rig.clips.path, 0) as producer:
        assert producer.put(_clip(9, 1, rig.config), 1, camera="ghost", timeout=5.0)
    sent = _feed(rig)
    rig.upstream.set("finished", 1)
    _run_in_process(rig)
    assert rig.stats.get("clips_total") == len(sent) + 1
    assert rig.stats.get(LOST_NO_RING.field) == 1  # counted (actiond_lost_total), not only logged
    _check_results(rig, sent)  # every real camera's clip still lands in its own ring


@pytest.mark.timeout(60)
def test_a_failed_publisher_thread_fails_the_model_thread(rig_for) -> None:
    # A helper thread that dies must stop the worker (and so get it restarted), not
    # leave the model thread running into a queue nobody empties.
    rig = rig_for("N")
    camera = CAMERAS[0]
    with attach_producer(rig.results[camera].path, 0) as out:
        publisher = ResultPublisher(
            {camera: out},
            rig.stats,
            Heartbeat(rig.stats),
            records.result_record(ResultSpec(CLIP_SCORES, LABELS)),
        )
        publisher.start()
        too_many = np.zeros((1, 4096), np.float32)  # more scores than a result slot holds
        assert publisher.submit(
            Scored((FrameMeta(1, 0, camera),), too_many, 0.0, 0.0), threading.Event()
        )
        wait_for(lambda: not publisher.is_alive(), STEP_DEADLINE_S, "the publisher to fail")
        with pytest.raises(RuntimeError, match="infer-publisher thread failed"):
            publisher.idle()
        with pytest.raises(RuntimeError, match="infer-publisher thread failed"):
            publisher.submit(
                Scored((FrameMeta(2, 0, camera),), too_many[:, :3], 0.0, 0.0), threading.Event()
            )
        assert publisher.stop()
