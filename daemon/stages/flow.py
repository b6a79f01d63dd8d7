"""Optical flow between consecutive frames, at a fixed working size.

DIS (cv2.DISOpticalFlow) is about 20x faster than Farneback at the same size on small
CPUs, so it is the default; Farneback stays available for comparison.
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("dis", "farneback")
# Farneback parameters: pyramid scale, levels, window (px), iterations, poly_n, poly_sigma.
FARNEBACK_PYR_SCALE = 0.5
FARNEBACK_LEVELS = 3
FARNEBACK_WINDOW_PX = 15
FARNEBACK_ITERATIONS = 3
FARNEBACK_POLY_N = 5
FARNEBACK_POLY_SIGMA = 1.2


def preprocess(frame_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame_bgr` (or an already grey frame) resized to (height, width) grey uint8."""
    gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
    if gray.shape != (height, width):
        shrinking = gray.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (width, height), interpolation=interpolation)
    return gray


class FlowEstimator:
    """Dense optical flow from the previous frame to the current one.

    Each call returns float32 (height, width, 2) flow in working-size pixels per frame:
    [..., 0] is x (positive = rightward), [..., 1] is y (positive = downward). The first
    call (and the first after reset()) returns zeros.
    """

    def __init__(self, method: str, width: int, height: int) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown optical flow method {method!r}; use one of {METHODS}")
        if width < 8 or height < 8:
            raise ValueError(f"optical flow size {width}x{height} is too small (min 8x8)")
        self.method = method
        self.width = width
        self.height = height
        self._previous: np.ndarray | None = None
        self._dis = (
            cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST) if method == "dis" else None
        )

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Flow from the previous frame to `frame_bgr` (any size; resized internally)."""
        current = preprocess(frame_bgr, self.width, self.height)
        previous, self._previous = self._previous, current
        if previous is None:
            return np.zeros((self.height, self.width, 2), np.float32)
        # flow=None: OpenCV allocates the output; the stubs type `flow` as a required array.
        if self._dis is not None:
            flow = self._dis.calc(previous, current, None)  # type: ignore[call-overload]
            return np.asarray(flow, dtype=np.float32)
        flow = cv2.calcOpticalFlowFarneback(
            previous,
            current,
            None,  # type: ignore[call-overload]
            FARNEBACK_PYR_SCALE,
            FARNEBACK_LEVELS,
            FARNEBACK_WINDOW_PX,
            FARNEBACK_ITERATIONS,
            FARNEBACK_POLY_N,
            FARNEBACK_POLY_SIGMA,
            0,
        )
        return np.asarray(flow, dtype=np.float32)

    def reset(self) -> None:
        """Forget the previous frame (after a gap or a source reconnect)."""
        self._previous = None


def clip_entry(
    frame_bgr: np.ndarray, flow: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """One frame of an inference clip at (height, width): the colour frame (uint8) and its
    flow (float32), resized with the vectors rescaled to pixels at that size. float32
    because converting float16 back costs inference more than the ring bytes it saves."""
    return _resize(frame_bgr, width, height), resize_flow(flow, width, height)


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """One flow field (h, w, 2) at (height, width), its vectors rescaled to pixels at the
    new size, as float32."""
    fh, fw = flow.shape[:2]
    if (fh, fw) != (height, width):
        flow = _resize(flow.astype(np.float32, copy=False), width, height) * np.array(
            [width / fw, height / fh], np.float32
        )
    return flow.astype(np.float32, copy=False)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    interpolation = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
