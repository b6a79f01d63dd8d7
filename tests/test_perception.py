"""daemon.stages.perception, the runtime form of tools/perception_ref.py, against the
outputs recorded from the original models (tests/data/perception_ref.npz: a real frame
of a man facing the camera, head clip frame 30); the detector's input size (free: the
frame's aspect kept, or a file's fixed size) and its decoding on a rectangular grid."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from daemon.stages import perception as P
from daemon.stages.contract import ModelError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import free_size_detector

pytestmark = pytest.mark.timeout(120)

REF = np.load(Path(__file__).resolve().parent / "data" / "perception_ref.npz")
BOX_TOLERANCE_PX = 1e-2  # same input, same decoding: only float rounding differs
RESIZED_BOX_TOLERANCE_PX = 12.0  # the frame rebuilt from the 416 px letterbox is softer
# The same frame through a 416 x 256 input and the 416 x 416 letterbox: the same scale,
# the image shifted by 80 px, so the grid cells fall elsewhere on the person.
FREE_VS_SQUARE_BOX_PX = 4.0
FREE_VS_SQUARE_SCORE = 0.05


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


@pytest.mark.parametrize(
    ("frame_hw", "fixed_hw", "want_hw"),
    [
        ((360, 640), None, (256, 416)),  # 416 x 234, padded to a multiple of 32
        ((1080, 1920), None, (256, 416)),
        ((480, 640), None, (320, 416)),  # 416 x 312
        ((640, 360), None, (416, 256)),  # portrait
        ((270, 480), None, (256, 416)),
        ((100, 100), None, (416, 416)),  # upscaled, as the square letterbox did
        ((8000, 10), None, (416, 32)),  # never below one cell of the coarsest stride
        ((360, 640), (416, 416), (416, 416)),  # a fixed-size detector: its own size
    ],
)
def test_detector_size(
    frame_hw: tuple[int, int], fixed_hw: tuple[int, int] | None, want_hw: tuple[int, int]
) -> None:
    assert P.detector_size(frame_hw, fixed_hw) == want_hw


def test_letterbox_keeps_the_aspect_and_maps_back() -> None:
    frame = np.full((360, 640, 3), 200, np.uint8)
    img, lb = P.letterbox(frame, (256, 416))
    assert img.shape == (256, 416, 3) and lb.size_hw == (256, 416)
    assert lb.scale == pytest.approx(0.65) and (lb.pad_x, lb.pad_y) == (0.0, 11.0)
    assert img[:11].max() == 0 and img[11 + 234 :].max() == 0  # the padding only
    assert img[11 : 11 + 234].min() == 200
    corners = np.array([[0.0, 11.0], [416.0, 245.0]], np.float32)
    np.testing.assert_allclose(lb.to_frame(corners), [[0, 0], [640, 360]], atol=1e-3)


def test_decoding_uses_each_levels_own_grid() -> None:
    # A person in one cell of a portrait input's stride-8 grid (416 x 256: 32 columns,
    # 52 rows): the box centres on that cell's centre, in frame pixels.
    h, w = 416, 256
    outs = []
    for stride in P.NANODET_STRIDES_PX:
        cells = (h // stride) * (w // stride)
        outs += [np.zeros((1, cells, P.NANODET_CLASSES), np.float32)]
        outs += [np.zeros((1, cells, 4 * P.NANODET_REG_BINS), np.float32)]
    col, row = 30, 20
    outs[0][0, row * (w // 8) + col, P.COCO_PERSON_CLASS] = 0.9
    lb = P.Letterbox(0.65, 11.0, 0.0, (h, w))
    boxes, scores = P.nanodet_decode(P.nanodet_by_stride(outs, (h, w)), lb, 0.4)
    assert scores.tolist() == pytest.approx([0.9])
    # Uniform bins: each side 5 bins x 8 px from the cell centre (244, 164) in input px.
    cx, cy = (col + 0.5) * 8, (row + 0.5) * 8
    want = [(cx - 40 - 11) / 0.65, (cy - 40) / 0.65, (cx + 40 - 11) / 0.65, (cy + 40) / 0.65]
    np.testing.assert_allclose(boxes[0], want, atol=1e-3)


def test_free_and_fixed_size_detectors_find_the_same_person(
    models: P.PersonModels, tmp_path: Path
) -> None:
    # The shipped detector takes the recorded 480 x 270 frame as 416 x 256; the same file
    # fixed at 416 x 416 (a user's fixed-size file, or the original conversion) gets the
    # square letterbox, and finds the same man.
    fixed_path = tmp_path / "nanodet-416.onnx"
    shipped = onnx.load(str(P.DEFAULT_DETECTOR))
    onnx.save(free_size_detector.fixed_size(shipped, (416, 416)), str(fixed_path))
    fixed = P.PersonModels(fixed_path, P.DEFAULT_POSE)
    assert models.detector_fixed_hw is None and fixed.detector_fixed_hw == (416, 416)
    frame, _ = _ref_frame()
    free_boxes, free_scores = models.detect(frame, 0.4)
    fixed_boxes, fixed_scores = fixed.detect(frame, 0.4)
    assert len(free_scores) == len(fixed_scores) == 1
    np.testing.assert_allclose(free_boxes, fixed_boxes, atol=FREE_VS_SQUARE_BOX_PX)
    np.testing.assert_allclose(free_scores, fixed_scores, atol=FREE_VS_SQUARE_SCORE)
    np.testing.assert_allclose(fixed_boxes[0], REF["nanodet-g/person_boxes"][0], atol=1.0)


def test_a_detector_fixing_one_side_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one-side.onnx"
    model = onnx.load(str(P.DEFAULT_DETECTOR))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 416
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="fixes one of height and width"):
        P.PersonModels(path, P.DEFAULT_POSE)
