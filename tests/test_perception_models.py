"""The shipped perception models run in onnxruntime alone and give the outputs recorded
against the original models (tools/verify_models.py wrote tests/data/perception_ref.npz
from a real frame; converted vs original agreed to < 1e-5 there). The shipped detector's
input size is free (tools/free_size_detector.py): at the recorded 416 x 416 it gives the
recorded outputs, and ATTRIBUTION.md names every shipped file by its sha256."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "daemon" / "assets" / "models"
sys.path.insert(0, str(ROOT / "tools"))
import free_size_detector

REF = np.load(ROOT / "tests" / "data" / "perception_ref.npz")
NANODET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
TOLERANCE = 1e-3  # the models vs their recorded outputs, across onnxruntime builds


pytestmark = pytest.mark.timeout(120)

FREE_DIMS_EXACT = 1e-5  # free vs fixed input size: the same graph and weights
# The shipped detector's input and output shapes (free height, width and cells).
DETECTOR_INPUT = ["1", "3", "height", "width"]


def _session(model: str | bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    source = str(MODELS / model) if isinstance(model, str) else model
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def _input(stem: str) -> np.ndarray:
    image = REF[f"{stem}/image"]
    if stem == "nanodet-g":  # BGR, (x - mean) / std, NCHW
        return ((image.astype(np.float32) - NANODET_MEAN_BGR) / NANODET_STD_BGR).transpose(2, 0, 1)[
            None
        ]
    return image.astype(np.int32)[None]  # MoveNet: RGB 0..255 as int32, NHWC


@pytest.mark.parametrize("stem", ["nanodet-g", "movenet-lightning"])
def test_shipped_model_matches_reference(stem: str) -> None:
    sess = _session(stem + ".onnx")
    assert sess.get_inputs()[0].name == str(REF[f"{stem}/input_name"])
    shape = [str(d) for d in sess.get_inputs()[0].shape]
    recorded = [str(v) for v in REF[f"{stem}/input_shape"]]
    assert shape == (DETECTOR_INPUT if stem == "nanodet-g" else recorded)
    outs = sess.run(None, {sess.get_inputs()[0].name: _input(stem)})
    for meta, value in zip(sess.get_outputs(), outs):
        key = f"{stem}/output/{meta.name}"
        assert list(value.shape) == [int(v) for v in REF[key + "/shape"]], meta.name
        got = value.reshape(-1)[REF[key + "/index"]]
        np.testing.assert_allclose(got, REF[key + "/value"], atol=TOLERANCE, err_msg=meta.name)


def test_reference_frame_has_a_person() -> None:
    # The recorded frame is a man facing the camera: the detector must find him.
    assert REF["nanodet-g/person_scores"].max() > 0.5


def test_free_size_detector_equals_the_fixed_file() -> None:
    # The shipped file with its input fixed at 416 x 416 again (what the conversion wrote):
    # the same nodes and weights, and the same outputs at that size.
    shipped = onnx.load(str(MODELS / "nanodet-g.onnx"))
    fixed = free_size_detector.fixed_size(shipped, (416, 416))
    assert [str(d) for d in _session(fixed.SerializeToString()).get_inputs()[0].shape] == [
        "1",
        "3",
        "416",
        "416",
    ]
    x = _input("nanodet-g")
    want = _session(fixed.SerializeToString()).run(None, {"input_1:0": x})
    got = _session("nanodet-g.onnx").run(None, {"input_1:0": x})
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, atol=FREE_DIMS_EXACT)
    # The tool on that fixed file gives a file that runs as the shipped one does.
    again = free_size_detector.free_size(fixed)
    assert list(again.graph.node) == list(fixed.graph.node)
    assert list(again.graph.initializer) == list(fixed.graph.initializer)
    assert free_size_detector.check(fixed, again) <= FREE_DIMS_EXACT
    assert again.SerializeToString() == shipped.SerializeToString()


@pytest.mark.parametrize(("h", "w"), [(256, 416), (416, 256), (320, 416), (64, 96)])
def test_free_size_detector_runs_at_multiples_of_32(h: int, w: int) -> None:
    sess = _session("nanodet-g.onnx")
    outs = sess.run(None, {"input_1:0": np.zeros((1, 3, h, w), np.float32)})
    cells = sorted({o.shape[1] for o in outs})
    assert cells == sorted((h // s) * (w // s) for s in (8, 16, 32))  # 256x416: 104/416/1664
    for meta, out in zip(sess.get_outputs(), outs):
        stride = int(str(meta.shape[1]).removeprefix("cells_stride"))
        assert out.shape[1] == (h // stride) * (w // stride), meta.name


def test_free_size_tool_refuses_a_free_input() -> None:
    with pytest.raises(ValueError, match="expected \\(1, 3, H, W\\) with H and W fixed"):
        free_size_detector.free_size(onnx.load(str(MODELS / "nanodet-g.onnx")))


def test_attribution_names_each_shipped_file_by_its_sha256() -> None:
    text = (MODELS / "ATTRIBUTION.md").read_text()
    listed = dict(re.findall(r"- ONNX: `([^`]+)` \(\d+ bytes\) sha256 `([0-9a-f]{64})`", text))
    shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in MODELS.glob("*.onnx")}
    assert listed == shipped
    assert "free input size:" in text.split("### nanodet-g.onnx")[1].split("###")[0]
