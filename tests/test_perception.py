"""daemon.stages.perception, the runtime form of tools/perception_ref.py, against the
outputs recorded from the original models (tests/data/perception_ref.npz: a real frame
of a man facing the camera, head clip frame 30)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.stages import perception as P
from daemon.stages.contract import ModelError

pytestmark = pytest.mark.timeout(120)

REF = np.load(Path(__file__).resolve().parent / "data" / "perception_ref.npz")
BOX_TOLERANCE_PX = 1e-2  # same input, same decoding: only float rounding differs
RESIZED_BOX_TOLERANCE_PX = 12.0  # the frame rebuilt from the 416 px letterbox is softer


@pytest.fixture(scope="module")
def models() -> P.PersonModels:
    return P.PersonModels(P.DEFAULT_DETECTOR, P.DEFAULT_POSE)


def _ref_frame() -> tuple[np.ndarray, P.Letterbox]:
    """The recorded frame, rebuilt from its letterboxed detector image."""
    h, w = (int(v) for v in REF["nanodet-g/frame_shape"][:2])
    image = REF["nanodet-g/image"]
    scale = P.NANODET_INPUT_PX / max(h, w)
    nw, nh = round(w * scale), round(h * scale)
    pad_x, pad_y = (P.NANODET_INPUT_PX - nw) // 2, (P.NANODET_INPUT_PX - nh) // 2
    inner = image[pad_y : pad_y + nh, pad_x : pad_x + nw]
    return cv2.resize(inner, (w, h)), P.Letterbox(scale, float(pad_x), float(pad_y))


def test_decoding_matches_the_reference_boxes(models: P.PersonModels) -> None:
    # The recorded letterboxed image through our normalisation, the model and our GFL
    # decoding gives the boxes the reference code recorded (threshold 0.3 there).
    _, lb = _ref_frame()
    img = REF["nanodet-g/image"]
    x = ((img.astype(np.float32) - P.NANODET_MEAN_BGR) / P.NANODET_STD_BGR).transpose(2, 0, 1)
    outs = models.detector.run(None, {models.detector.get_inputs()[0].name: x[None]})
    boxes, scores = P.nanodet_decode(P.nanodet_by_stride(outs), lb, 0.3)
    np.testing.assert_allclose(boxes, REF["nanodet-g/person_boxes"], atol=BOX_TOLERANCE_PX)
    np.testing.assert_allclose(scores, REF["nanodet-g/person_scores"], atol=1e-5)


def test_people_on_a_real_frame(models: P.PersonModels) -> None:
    frame, _ = _ref_frame()
    people = models.people(frame, min_score=0.4, max_people=16)
    assert len(people) == 1
    np.testing.assert_allclose(
        people.boxes[0], REF["nanodet-g/person_boxes"][0], atol=RESIZED_BOX_TOLERANCE_PX
    )
    kp = people.keypoints[0]
    assert kp.shape == (P.KEYPOINTS, 3)
    x1, y1, x2, y2 = people.boxes[0]
    sure = kp[kp[:, 2] >= 0.3]
    assert len(sure) >= 5  # a man facing the camera: at least face and shoulders
    assert np.all((sure[:, 0] >= x1 - 10) & (sure[:, 0] <= x2 + 10))
    assert np.all((sure[:, 1] >= y1 - 10) & (sure[:, 1] <= y2 + 10))
    nose, left_shoulder = kp[0], kp[5]
    assert nose[1] < left_shoulder[1]  # the head is above the shoulders


def test_tiled_detection_finds_the_same_person(models: P.PersonModels) -> None:
    frame, _ = _ref_frame()
    boxes, scores = models.detect_tiled(frame, 0.4)
    assert len(scores) >= 1
    best = boxes[int(np.argmax(scores))]
    np.testing.assert_allclose(best, REF["nanodet-g/person_boxes"][0], atol=30.0)


def test_tiles_cover_the_frame() -> None:
    tiles = P.tiles(270, 480)
    assert len(tiles) == 4
    covered = np.zeros((270, 480), bool)
    for x0, y0, w, h in tiles:
        assert x0 >= 0 and y0 >= 0 and x0 + w <= 480 and y0 + h <= 270
        covered[y0 : y0 + h, x0 : x0 + w] = True
    assert covered.all()


def test_empty_frame_has_nobody(models: P.PersonModels) -> None:
    people = models.people(np.zeros((360, 640, 3), np.uint8), 0.4, 16)
    assert len(people) == 0 and people.keypoints.shape == (0, P.KEYPOINTS, 3)


def test_pose_decoding_maps_crop_to_frame() -> None:
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = 0.5  # y
    out[0, 0, :, 1] = 0.25  # x
    out[0, 0, :, 2] = 0.9
    kp = P.movenet_decode(out, (100.0, 50.0, 200.0))
    np.testing.assert_allclose(kp[0], [150.0, 150.0, 0.9])


def test_max_people_and_missing_model(models: P.PersonModels, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        P.PersonModels(tmp_path / "nope.onnx", P.DEFAULT_POSE)
    frame, _ = _ref_frame()
    assert len(models.people(frame, 0.4, max_people=0)) == 0
