"""Optical flow (DIS and Farneback) on a moving box, and the overlay drawing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media import BOX_STEP_PX, box_rect, pattern_frame

from daemon.stages.draw import draw_overlay
from daemon.stages.flow import METHODS, FlowEstimator, preprocess

CLIP_SIZE = (320, 240)  # width, height of the generated frames
FLOW_W, FLOW_H = 224, 224


def box_region(index: int) -> tuple[slice, slice]:
    """Rows and columns of flow-size pixels well inside the box of frame `index`."""
    x, y, w, h = box_rect(index, CLIP_SIZE)
    sx, sy = FLOW_W / CLIP_SIZE[0], FLOW_H / CLIP_SIZE[1]
    margin_x, margin_y = w // 4, h // 4
    return (
        slice(int((y + margin_y) * sy), int((y + h - margin_y) * sy)),
        slice(int((x + margin_x) * sx), int((x + w - margin_x) * sx)),
    )


def flow_between(method: str, first: int, second: int) -> np.ndarray:
    """Flow from moving-box frame `first` to frame `second`."""
    estimator = FlowEstimator(method, FLOW_W, FLOW_H)
    estimator(pattern_frame("moving-box", first, CLIP_SIZE))
    return estimator(pattern_frame("moving-box", second, CLIP_SIZE))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", METHODS)
def test_first_frame_gives_zero_flow(method: str) -> None:
    estimator = FlowEstimator(method, FLOW_W, FLOW_H)
    flow = estimator(pattern_frame("moving-box", 0, CLIP_SIZE))
    assert flow.shape == (FLOW_H, FLOW_W, 2) and flow.dtype == np.float32
    assert not flow.any()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", METHODS)
def test_box_moving_right_gives_rightward_flow(method: str) -> None:
    flow = flow_between(method, 10, 11)
    assert flow.shape == (FLOW_H, FLOW_W, 2) and flow.dtype == np.float32
    rows, cols = box_region(11)
    expected_dx = BOX_STEP_PX * FLOW_W / CLIP_SIZE[0]
    assert float(np.median(flow[rows, cols, 0])) == pytest.approx(expected_dx, rel=0.35)
    assert abs(float(np.median(flow[rows, cols, 1]))) < 0.3
    # The static background far from the box does not move.
    assert float(np.median(np.abs(flow[-20:, :, :]))) < 0.2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", METHODS)
def test_box_moving_left_gives_leftward_flow(method: str) -> None:
    flow = flow_between(method, 11, 10)
    rows, cols = box_region(10)
    assert float(np.median(flow[rows, cols, 0])) < -1.0


@pytest.mark.timeout(30)
def test_reset_forgets_the_previous_frame() -> None:
    estimator = FlowEstimator("dis", FLOW_W, FLOW_H)
    estimator(pattern_frame("moving-box", 0, CLIP_SIZE))
    assert estimator(pattern_frame("moving-box", 1, CLIP_SIZE)).any()
    estimator.reset()
    assert not estimator(pattern_frame("moving-box", 2, CLIP_SIZE)).any()


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown optical flow method 'lucas'"):
        FlowEstimator("lucas", FLOW_W, FLOW_H)


def test_preprocess_resizes_to_grey() -> None:
    gray = preprocess(pattern_frame("still", 0, CLIP_SIZE), 112, 96)
    assert gray.shape == (96, 112) and gray.dtype == np.uint8


OVERLAY_SCALE = 2  # the overlay frame is the clip frame at twice the size


def overlay_inputs() -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 frame and the (smaller, 224x224) flow of the moving box within it."""
    frame = pattern_frame("moving-box", 11, CLIP_SIZE)
    size = (CLIP_SIZE[0] * OVERLAY_SCALE, CLIP_SIZE[1] * OVERLAY_SCALE)
    return cv2.resize(frame, size), flow_between("dis", 10, 11)


def overlay_box(index: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the box of frame `index` in the overlay frame."""
    x, y, w, h = box_rect(index, CLIP_SIZE)
    return x * OVERLAY_SCALE, y * OVERLAY_SCALE, w * OVERLAY_SCALE, h * OVERLAY_SCALE


def test_overlay_draws_flow_label_and_fps_on_a_copy() -> None:
    frame, flow = overlay_inputs()
    original = frame.copy()
    out = draw_overlay(frame, flow, "walking", 0.87, 24.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, original)  # the input is not touched
    changed = (out != frame).any(axis=2)
    assert changed[:40, :200].any()  # label box, top left
    assert changed[:40, -200:].any()  # fps box, top right
    x, y, w, h = overlay_box(11)
    assert changed[y : y + h, x : x + w].sum() > 100  # arrows over the moving box


def test_overlay_without_motion_or_text_leaves_the_frame_unchanged() -> None:
    frame, flow = overlay_inputs()
    out = draw_overlay(frame, np.zeros_like(flow), "", 0.0, 0.0)
    assert out is not frame and np.array_equal(out, frame)
    assert np.array_equal(draw_overlay(frame, None, "", 0.0, 0.0), frame)


def test_overlay_arrows_follow_the_motion() -> None:
    frame, flow = overlay_inputs()
    changed = (draw_overlay(frame, flow, "", 0.0, 0.0) != frame).any(axis=2)
    x, y, w, h = overlay_box(11)
    inside = changed[y : y + h, x : x + w].mean()
    outside = changed[y : y + h, x + w + 60 :].mean()
    assert inside > 5 * max(outside, 1e-3)


def test_overlay_rejects_bad_shapes() -> None:
    frame, flow = overlay_inputs()
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_overlay(frame[..., 0], flow, "x", 0.5, 1.0)
    with pytest.raises(ValueError, match="flow of shape"):
        draw_overlay(frame, flow[..., :1], "x", 0.5, 1.0)
