"""Overlay drawing: optical-flow arrows, the fps, and a model's result, drawn by its
result kind (RESULT_DRAWERS: the top label of clip scores; boxes, labels and keypoints of
detections)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import cv2
import numpy as np

from daemon.stages.records import (
    CLIP_SCORES,
    COCO_KEYPOINTS,
    DETECTIONS,
    Result,
    ResultSpec,
    detection_count,
    top_label,
)

FLOW_GRID_STEP_PX = 16  # arrow spacing, in output pixels
FLOW_ARROW_GAIN = 3.0  # arrows are this many times the per-frame motion
FLOW_MIN_ARROW_PX = 1.5  # shorter arrows (still areas, noise) are not drawn
ARROW_HEAD_SHARE = 0.3  # head length as a share of the arrow
ARROW_HEAD_ANGLE_RAD = np.pi / 6
FLOW_BGR = (0, 255, 0)
TEXT_BGR = (255, 255, 255)
TEXT_BACKGROUND_BGR = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE_PER_PX = 1 / 600  # text scales with frame height
MIN_FONT_SCALE = 0.4
TEXT_MARGIN_PX = 6
BOX_BGR = (0, 200, 255)
KEYPOINT_BGR = (255, 0, 255)
KEYPOINT_RADIUS_PX = 3
KEYPOINT_MIN_SCORE = 0.3  # keypoints the model is less sure of are not drawn
SKELETON_BGR = (255, 255, 0)
# Bones between the 17 COCO keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles), drawn when a detection has exactly those.
COCO_SKELETON = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4),
)  # fmt: skip
ZONE_BGR: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {"include": (0, 220, 0), "exclude": (0, 0, 230)}
)
TRACK_BGR = (255, 255, 255)


def flow_arrows(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Arrows for a (h, w, 2) flow drawn on a width x height image, as int32 polylines
    of shape (N, 5, 2): tail, tip, head side, tip, other head side."""
    flow_h, flow_w = flow.shape[:2]
    scale = np.array([width / flow_w, height / flow_h], np.float32)
    xs = np.arange(FLOW_GRID_STEP_PX // 2, width, FLOW_GRID_STEP_PX)
    ys = np.arange(FLOW_GRID_STEP_PX // 2, height, FLOW_GRID_STEP_PX)
    grid_x, grid_y = np.meshgrid(xs, ys)
    rows = np.minimum((grid_y * flow_h) // height, flow_h - 1)
    cols = np.minimum((grid_x * flow_w) // width, flow_w - 1)
    vectors = flow[rows, cols].reshape(-1, 2) * scale * FLOW_ARROW_GAIN
    tails = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)
    keep = np.hypot(vectors[:, 0], vectors[:, 1]) >= FLOW_MIN_ARROW_PX
    tails, vectors = tails[keep], vectors[keep]
    tips = tails + vectors
    heads = [
        tips - ARROW_HEAD_SHARE * rotate(vectors, sign * ARROW_HEAD_ANGLE_RAD) for sign in (1, -1)
    ]
    arrows = np.stack([tails, tips, heads[0], tips, heads[1]], axis=1)
    return np.asarray(np.rint(arrows), dtype=np.int32)


def rotate(vectors: np.ndarray, angle_rad: float) -> np.ndarray:
    """(N, 2) vectors rotated by `angle_rad`."""
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    return np.stack(
        [vectors[:, 0] * cos - vectors[:, 1] * sin, vectors[:, 0] * sin + vectors[:, 1] * cos],
        axis=1,
    )


def put_text_box(image: np.ndarray, text: str, origin_x: int, scale: float) -> None:
    """Draw `text` on a filled box at the top of `image` (in place); negative origin_x
    aligns the box's right edge that many pixels from the right border."""
    thickness = max(1, int(round(scale * 2)))
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x = origin_x if origin_x >= 0 else image.shape[1] + origin_x - text_w
    box_bottom = text_h + baseline + 2 * TEXT_MARGIN_PX
    cv2.rectangle(
        image,
        (x - TEXT_MARGIN_PX, 0),
        (x + text_w + TEXT_MARGIN_PX, box_bottom),
        TEXT_BACKGROUND_BGR,
        cv2.FILLED,
    )
    cv2.putText(
        image, text, (x, TEXT_MARGIN_PX + text_h), FONT, scale, TEXT_BGR, thickness, cv2.LINE_AA
    )


def draw_overlay(
    frame_bgr: np.ndarray, flow: np.ndarray | None, label: str, score: float, fps: float
) -> np.ndarray:
    """A new BGR image: `frame_bgr` with flow arrows (flow of any size is scaled to the
    frame), `label` and `score` at the top left and `fps` at the top right. An empty
    label or fps <= 0 is left out."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(
            f"draw_overlay needs a BGR uint8 (H, W, 3) frame, got "
            f"{frame_bgr.dtype} {frame_bgr.shape}"
        )
    if flow is not None and (flow.ndim != 3 or flow.shape[2] != 2):
        raise ValueError(f"draw_overlay needs flow of shape (h, w, 2), got {flow.shape}")
    image: np.ndarray = frame_bgr.copy()
    height, width = image.shape[:2]
    if flow is not None:
        arrows = flow_arrows(flow, width, height)
        if len(arrows):
            cv2.polylines(image, list(arrows), False, FLOW_BGR, 1, cv2.LINE_AA)
    scale = max(height * FONT_SCALE_PER_PX, MIN_FONT_SCALE)
    if label:
        put_text_box(image, f"{label} {score:.2f}", TEXT_MARGIN_PX, scale)
    if fps > 0:
        put_text_box(image, f"{fps:.1f} fps", -TEXT_MARGIN_PX, scale)
    return image


def _draw_clip_scores(image: np.ndarray, spec: ResultSpec, result: Result) -> None:
    label, score = top_label(spec, result)
    if label:
        put_text_box(image, f"{label} {score:.2f}", TEXT_MARGIN_PX, _font_scale(image))


def _draw_detections(image: np.ndarray, spec: ResultSpec, result: Result) -> None:
    height, width = image.shape[:2]
    size = np.array([width, height], np.float32)
    scale = _font_scale(image) * 0.8
    for i in range(detection_count(result)):
        x0, y0, x1, y1 = np.rint(result["boxes"][i].reshape(2, 2) * size).astype(int).ravel()
        cv2.rectangle(image, (x0, y0), (x1, y1), BOX_BGR, 2)
        cls = int(result["classes"][i])
        name = spec.labels[cls] if 0 <= cls < len(spec.labels) else str(cls)
        cv2.putText(
            image,
            f"{name} {float(result['scores'][i]):.2f}",
            (x0, max(y0 - 4, 12)),
            FONT,
            scale,
            BOX_BGR,
            1,
            cv2.LINE_AA,
        )
        if "keypoints" in result:
            _draw_skeleton(image, result["keypoints"][i], size)
            for x, y, score in result["keypoints"][i]:
                if score >= KEYPOINT_MIN_SCORE:
                    cv2.circle(
                        image,
                        (int(x * width), int(y * height)),
                        KEYPOINT_RADIUS_PX,
                        KEYPOINT_BGR,
                        cv2.FILLED,
                        cv2.LINE_AA,
                    )


def _draw_skeleton(image: np.ndarray, keypoints: np.ndarray, size: np.ndarray) -> None:
    """Bones between sure keypoints ((17, 3) in shares of the frame), COCO order only."""
    if len(keypoints) != COCO_KEYPOINTS:
        return
    xy = np.rint(keypoints[:, :2] * size).astype(int)
    sure = keypoints[:, 2] >= KEYPOINT_MIN_SCORE
    for a, b in COCO_SKELETON:
        if sure[a] and sure[b]:
            pa, pb = (int(xy[a, 0]), int(xy[a, 1])), (int(xy[b, 0]), int(xy[b, 1]))
            cv2.line(image, pa, pb, SKELETON_BGR, 2, cv2.LINE_AA)


def draw_people(
    image: np.ndarray,
    tracks: Sequence[tuple[int, tuple[float, float, float, float]]],
    zones: Sequence[tuple[str, str, np.ndarray]],
) -> None:
    """Zones (name, kind, (N, 1, 2) polygon in pixels) and track ids ("#3" above each
    (track id, box in pixels)), drawn in place."""
    scale = _font_scale(image) * 0.8
    for name, kind, polygon in zones:
        colour = ZONE_BGR.get(kind, TRACK_BGR)
        points = np.rint(polygon).astype(np.int32)
        cv2.polylines(image, [points], True, colour, 2, cv2.LINE_AA)
        x, y = (int(v) for v in points.reshape(-1, 2).min(axis=0))
        cv2.putText(image, name, (x + 4, y + 16), FONT, scale, colour, 1, cv2.LINE_AA)
    for track_id, (x1, _, _, y2) in tracks:
        origin = (int(x1) + 2, max(int(y2) - 6, 12))
        cv2.putText(image, f"#{track_id}", origin, FONT, scale * 1.2, TRACK_BGR, 2, cv2.LINE_AA)


def _font_scale(image: np.ndarray) -> float:
    return max(int(image.shape[0]) * FONT_SCALE_PER_PX, MIN_FONT_SCALE)


RESULT_DRAWERS: Mapping[str, Callable[[np.ndarray, ResultSpec, Result], None]] = MappingProxyType(
    {CLIP_SCORES: _draw_clip_scores, DETECTIONS: _draw_detections}
)


def draw_result(image: np.ndarray, spec: ResultSpec, result: Result | None) -> None:
    """Draw a model's result on `image` in place, as its result kind says."""
    if result is not None:
        RESULT_DRAWERS[spec.kind](image, spec, result)
