"""Test media: small generated clips whose frames carry their index, and broken files.

Each frame has a strip of MARKER_BITS black/white cells across its top that encodes the
frame index in binary; `read_marker` decodes it from any resized copy of the frame, so
tests can check frame order without trusting timestamps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MARKER_BITS = 10             # frame indices up to 1023
MARKER_STRIP_FRACTION = 8    # the strip is 1/8 of the frame height
BOX_STEP_PX = 4              # moving-box: horizontal motion per frame, in clip pixels
PATTERNS = ("moving-box", "still", "noise")
TEXTURE_SEED = 1234


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random grey texture (uint8): optical flow needs texture to lock onto."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2)), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def draw_marker(frame: np.ndarray, index: int) -> None:
    """Paint `index` in binary (MSB first) across the top strip of `frame`, in place."""
    height, width = frame.shape[:2]
    strip_h = max(height // MARKER_STRIP_FRACTION, 4)
    for bit in range(MARKER_BITS):
        x0, x1 = bit * width // MARKER_BITS, (bit + 1) * width // MARKER_BITS
        on = (index >> (MARKER_BITS - 1 - bit)) & 1
        frame[:strip_h, x0:x1] = 255 if on else 0


def read_marker(frame: np.ndarray) -> int:
    """Decode the frame index painted by draw_marker (works on resized frames)."""
    height, width = frame.shape[:2]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    y = max(height // MARKER_STRIP_FRACTION, 4) // 2
    value = 0
    for bit in range(MARKER_BITS):
        x = (2 * bit + 1) * width // (2 * MARKER_BITS)
        value = (value << 1) | int(gray[y, x] >= 128)
    return value


def box_rect(index: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """moving-box: (x, y, w, h) of the box in frame `index`; it moves left to right."""
    width, height = size
    box_w, box_h = width // 4, height // 3
    x = (index * BOX_STEP_PX) % max(width - box_w, 1)
    return x, height // 2 - box_h // 2, box_w, box_h


def pattern_frame(pattern: str, index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame `index` (BGR uint8, size = (width, height)) of `pattern`, without a marker."""
    width, height = size
    if pattern == "noise":
        gray = np.random.default_rng(index).integers(0, 256, (height, width), dtype=np.uint8)
    elif pattern == "still":
        gray = texture(height, width, TEXTURE_SEED)
    elif pattern == "moving-box":
        gray = texture(height, width, TEXTURE_SEED) // 2   # dim background, bright box
        x, y, box_w, box_h = box_rect(index, size)
        box = texture(box_h, box_w, TEXTURE_SEED + 1) // 2 + 128
        gray[y:y + box_h, x:x + box_w] = box
    else:
        raise ValueError(f"unknown pattern {pattern!r}; use one of {PATTERNS}")
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def make_clip(path: Path | str, frames: int = 30, size: tuple[int, int] = (160, 120),
              fps: float = 10.0, pattern: str = "moving-box", codec: str = "mp4v",
              marker: bool = True) -> Path:
    """Write a clip of `frames` frames with cv2.VideoWriter; frame i carries marker i."""
    path = Path(path)
    if frames > 2 ** MARKER_BITS:
        raise ValueError(f"at most {2 ** MARKER_BITS} frames fit the marker")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with codec {codec!r}")
    try:
        for index in range(frames):
            frame = pattern_frame(pattern, index, size)
            if marker:
                draw_marker(frame, index)
            writer.write(frame)
    finally:
        writer.release()
    return path


def make_corrupt_file(path: Path | str) -> Path:
    """Write a file that looks like an MP4 (ftyp box) but holds no decodable video."""
    path = Path(path)
    rng = np.random.default_rng(7)
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    path.write_bytes(header + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path
