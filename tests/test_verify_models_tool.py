"""tools/verify_models.py's half that needs no TensorFlow (its comparison with the
original models needs the `convert` extra): the pipeline's input for each shipped model,
as tools/perception_ref.py makes it, runs in the shipped ONNX file, and the reference it
records for tests/data/perception_ref.npz has the entries the tests read, on a frame of
the bundled clip (the recorded one comes from ../shared/media)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import convert_models
import perception_ref
import verify_models

pytestmark = pytest.mark.timeout(120)

CLIP = ROOT / "daemon" / "assets" / "one-by-one-person-detection.mp4"
FRAME_INDEX = 300  # verify_models.FRAMES' first: a person in the room
MIN_PERSON_SCORE = 0.5


def _frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(CLIP))
    capture.set(cv2.CAP_PROP_POS_FRAMES, FRAME_INDEX)
    ok, frame = capture.read()
    capture.release()
    assert ok
    return np.asarray(frame)


def test_the_reference_of_each_shipped_model_is_recorded() -> None:
    frame = _frame()
    reference: dict[str, np.ndarray] = {}
    shipped = [spec.out for spec in convert_models.SPECS if spec.ship]
    assert shipped == ["nanodet-g.onnx", "movenet-lightning.onnx"]
    for name in shipped:
        sess = perception_ref.session(verify_models.C.REPO / "daemon" / "assets" / "models" / name)
        x = verify_models.model_input(name, frame)
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        verify_models.add_reference(reference, name, sess, frame, outs)
        stem = name.removesuffix(".onnx")
        assert str(reference[f"{stem}/input_name"]) == sess.get_inputs()[0].name
        for meta, value in zip(sess.get_outputs(), outs, strict=True):
            key = f"{stem}/output/{meta.name}"
            assert list(reference[key + "/shape"]) == list(value.shape)
            flat = value.reshape(-1)
            assert np.array_equal(reference[key + "/value"], flat[reference[key + "/index"]])
    recorded = np.load(verify_models.REFERENCE_NPZ)
    assert set(reference) == set(recorded.files)  # the same shipped files, the same keys
    assert reference["nanodet-g/image"].shape == recorded["nanodet-g/image"].shape
    assert reference["movenet-lightning/image"].shape == recorded["movenet-lightning/image"].shape
    assert reference["nanodet-g/person_scores"].max() > MIN_PERSON_SCORE
