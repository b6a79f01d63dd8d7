"""Batched pose: MoveNet cut before its decoding with a free batch dimension
(movenet-lightning-batch.onnx, tools/batch_pose_model.py) plus the numpy decoding
(daemon.stages.pose_decode) give the original model's keypoints, one crop or many per
call; and the real detect worker, shared by two cameras, batches their frames and finds
the same people as with one frame and one person per call (the original model)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from daemon.bench import detect_bench
from daemon.bench.stage_harness import run_stage
from daemon.config import facts_without_model
from daemon.ipc import Lease
from daemon.stages import perception as P
from daemon.stages import pose_decode, records
from daemon.stages.detect_stage import DetectStage
from daemon.supervisor.topology import Topology

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import batch_pose_model

ORIGINAL = P.MODELS_DIR / "movenet-lightning.onnx"
AGREE = 1e-5  # shares of the crop: batched + numpy decoding vs the original graph
CROPS = 12
ROUNDS = 24  # frames per camera
Key = tuple[str, int]
Result = dict[str, np.ndarray]


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """MoveNet inputs of the people the detector finds in frames of the bundled clip."""
    models = P.PersonModels(P.DEFAULT_DETECTOR, P.DEFAULT_POSE)
    cap = cv2.VideoCapture(str(ROOT / "daemon" / "assets" / "one-by-one-person-detection.mp4"))
    found: list[np.ndarray] = []
    index = 0
    while len(found) < CROPS:
        ok, frame = cap.read()
        assert ok, "the clip ended before enough people were found"
        index += 1
        if index % 10 == 0:
            boxes, _ = models.detect(frame, 0.4)
            found += [P.movenet_input(frame, P.pose_crop(box)) for box in boxes]
    return np.concatenate(found[:CROPS])


def test_batched_pose_gives_the_original_keypoints(crops: np.ndarray) -> None:
    original, batched = _session(ORIGINAL), _session(P.DEFAULT_POSE)
    name = original.get_inputs()[0].name
    want = np.concatenate([original.run(None, {name: crop[None]})[0] for crop in crops])
    heads = batched.run(list(pose_decode.OUTPUTS), {name: crops})
    got = pose_decode.decode(*heads)
    assert got.shape == want.shape == (CROPS, 1, 17, 3)
    assert np.abs(got - want).max() < AGREE
    one = pose_decode.decode(*batched.run(list(pose_decode.OUTPUTS), {name: crops[:1]}))
    assert np.abs(one - want[:1]).max() < AGREE
    # A real comparison: the crops are different people and poses.
    assert np.abs(want[0] - want[-1]).max() > 0.01


def test_person_models_batched_and_per_person_agree() -> None:
    cap = cv2.VideoCapture(str(ROOT / "daemon" / "assets" / "one-by-one-person-detection.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 300)  # people in the room
    ok, frame = cap.read()
    assert ok
    batched = P.PersonModels(P.DEFAULT_DETECTOR, P.DEFAULT_POSE)
    single = P.PersonModels(P.DEFAULT_DETECTOR, ORIGINAL)
    assert batched.pose_batched and not single.pose_batched
    boxes, _ = batched.detect(frame, 0.4)
    assert len(boxes) >= 1
    people = [(frame, box) for box in boxes] * 3  # more crops than one call takes
    got = batched.keypoints_many(people, 2)
    want = single.keypoints_many(people, 2)
    np.testing.assert_allclose(got, want, atol=1e-3)  # frame pixels


def test_the_tool_writes_the_shipped_batched_model() -> None:
    model = batch_pose_model.batched(onnx.load(str(ORIGINAL)))
    shipped = onnx.load(str(P.DEFAULT_POSE))
    assert model.graph.SerializeToString() == shipped.graph.SerializeToString()
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:1]]
    assert dims == [batch_pose_model.BATCH_DIM]


def _detect_run(tmp: Path, **batching: object) -> tuple[dict[Key, Result], dict[str, float]]:
    """Two person cameras' frames through the shared analysis ring -> the real detect
    worker (spawned, rings from the real Topology) -> each camera's results ring: every
    result by (camera, frame id), and the worker's stats."""
    config = detect_bench.detect_config(2, 1, str(tmp))
    config = replace(config, perception=replace(config.perception, **batching))
    record = records.result_record(records.person_result(config))
    got: dict[Key, Result] = {}

    def keep(lease: Lease) -> None:
        result = records.read_result(record, lease.array)
        got[(lease.meta.camera, lease.meta.frame_id)] = result

    topo = Topology(config, f"posebatch{os.getpid()}", "", facts_without_model(config))
    topo.build()
    try:
        cams = tuple(c.name for c in config.cameras)
        gates = tuple(str(topo.stats[f"{c}.gate"].path) for c in cams)
        job = detect_bench.DetectFeed(cams, str(topo.rings["analysis"].path), gates, ROUNDS)
        worker = detect_bench.DETECT_WORKER
        run_stage(topo, worker, DetectStage, detect_bench.feed, job, ROUNDS * len(cams), keep)
        stats = topo.stats[worker].snapshot()
    finally:
        topo.close()
    return got, stats


def test_two_cameras_share_batches_and_find_the_same_people(tmp_path: Path) -> None:
    batched, stats = _detect_run(tmp_path, batch_frames=8, batch_wait_ms=5.0, pose_batch=32)
    single, single_stats = _detect_run(
        tmp_path, batch_frames=1, batch_wait_ms=0.0, pose_batch=1, pose=str(ORIGINAL)
    )
    # Both cameras' frames went through shared batches, their crops through shared calls;
    # the unbatched run had one frame per batch and one person per call.
    assert stats["frames_in_total"] / stats["batches_total"] > 1.2, stats
    assert stats["people_total"] / stats["pose_calls_total"] > 1.2, stats
    assert single_stats["frames_in_total"] == single_stats["batches_total"]
    assert single_stats["people_total"] == single_stats["pose_calls_total"]
    assert set(batched) == set(single) and len(single) == 2 * ROUNDS
    assert sum(int(r["count"][0]) for r in single.values()) >= ROUNDS  # people were found
    for key, want in single.items():
        got = batched[key]
        assert int(got["count"][0]) == int(want["count"][0]), key
        np.testing.assert_array_equal(got["boxes"], want["boxes"], err_msg=str(key))
        # Keypoints are shares of the frame: 1e-5 of 640 px is well under a pixel.
        np.testing.assert_allclose(got["keypoints"], want["keypoints"], atol=AGREE)
