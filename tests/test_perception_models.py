"""The shipped perception models run in onnxruntime alone and give the outputs recorded
against the original models (tools/verify_models.py wrote tests/data/perception_ref.npz
from a real frame; converted vs original agreed to < 1e-5 there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "daemon" / "assets" / "models"
REF = np.load(ROOT / "tests" / "data" / "perception_ref.npz")
NANODET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
TOLERANCE = 1e-3  # the models vs their recorded outputs, across onnxruntime builds


def _session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODELS / name), opts, providers=["CPUExecutionProvider"])


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
    assert list(sess.get_inputs()[0].shape) == [int(v) for v in REF[f"{stem}/input_shape"]]
    outs = sess.run(None, {sess.get_inputs()[0].name: _input(stem)})
    for meta, value in zip(sess.get_outputs(), outs):
        key = f"{stem}/output/{meta.name}"
        assert list(value.shape) == [int(v) for v in REF[key + "/shape"]], meta.name
        got = value.reshape(-1)[REF[key + "/index"]]
        np.testing.assert_allclose(got, REF[key + "/value"], atol=TOLERANCE, err_msg=meta.name)


def test_reference_frame_has_a_person() -> None:
    # The recorded frame is a man facing the camera: the detector must find him.
    assert REF["nanodet-g/person_scores"].max() > 0.5
