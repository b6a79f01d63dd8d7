"""Clip making: which frames go into an inference clip, at what size, and when one is due.

ClipMaker is the motion stage's; FrameClips runs the same steps on raw decoded frames
without rings or processes (the source stage's crop and resize, then the motion stage's
flow and ClipMaker), so that training, evaluation and tests feed a model exactly the
clips the daemon would.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from daemon.config import CameraConfig, MotionConfig
from daemon.stages.capture import crop_and_resize
from daemon.stages.flow import FlowEstimator, clip_entry

Entry = tuple[np.ndarray, np.ndarray]  # one frame of a clip: colour (h, w, 3), flow (h, w, 2)


class ClipMaker:
    """The last `length` frames with their flows at the clip size (width x height); a clip
    is due every `stride` frames once `length` frames are in."""

    def __init__(self, length: int, stride: int, width: int, height: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=length)
        self._stride, self._size = stride, (width, height)
        self._since_clip = 0

    def push(self, frame_bgr: np.ndarray, flow: np.ndarray) -> bool:
        """Keep this frame and its flow; True when a clip ends with it.

        What is kept never aliases the arguments: a frame already at the clip size would
        otherwise stay a view of a ring slot that is reused once released.
        """
        small, small_flow = clip_entry(frame_bgr, flow, *self._size)
        if np.shares_memory(small, frame_bgr):
            small = small.copy()
        if np.shares_memory(small_flow, flow):
            small_flow = small_flow.copy()
        self._entries.append((small, small_flow))
        self._since_clip += 1
        if len(self._entries) < (self._entries.maxlen or 0) or self._since_clip < self._stride:
            return False
        self._since_clip = 0
        return True

    def entries(self) -> list[Entry]:
        """The frames of the current clip, oldest first."""
        return list(self._entries)

    def clip(self) -> tuple[np.ndarray, np.ndarray]:
        """The current clip: frames (T, h, w, 3) uint8 and flows (T, h, w, 2) float32."""
        frames, flows = zip(*self._entries)
        return np.stack(frames), np.stack(flows)


class FrameClips:
    """Raw decoded frames in, the daemon's clips out (see the module docstring)."""

    def __init__(
        self,
        camera: CameraConfig,
        motion: MotionConfig,
        length: int,
        stride: int,
        clip_size: tuple[int, int],
    ) -> None:
        self._camera = camera
        self._flow = FlowEstimator(motion.method, motion.width, motion.height)
        self._maker = ClipMaker(length, stride, *clip_size)

    def push(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Feed one decoded frame; the clip ending with it when one is due."""
        frame = crop_and_resize(raw, self._camera.crop, self._camera.width, self._camera.height)
        return self._maker.clip() if self._maker.push(frame, self._flow(frame)) else None
