"""The shipped person models at run time: NanoDet-g finds people, MoveNet Lightning gives
17 COCO keypoints per person crop (onnxruntime only).

The pre- and post-processing are exactly those of eval/perception.md (tools/
perception_ref.py is the reference they were measured with; tests/test_perception.py
checks this module against the outputs recorded from the original models). Frames are BGR
uint8; boxes are (x1, y1, x2, y2) and keypoints (x, y, score), in frame pixels.

The detector's batch dimension is fixed at 1 (the TFJS conversion): one call per frame
(five when tiled). The shipped detector takes any input height and width that are
multiples of 32 (tools/free_size_detector.py): a frame goes in fitted in
NANODET_INPUT_PX on its long side, its short side padded only up to the next multiple of
32 (640 x 360 -> 416 x 234 -> 416 x 256: 38 % fewer pixels than the 416 x 416 square). A
detector file whose input height and width are fixed numbers (the original conversion,
or a compatible file of one's own) gets the frame letterboxed into that size.

The shipped pose model is MoveNet with a free batch dimension
(movenet-lightning-batch.onnx, tools/batch_pose_model.py; its decoding in
daemon.stages.pose_decode): every person crop of the frames a detect replica holds goes
into one call (at most perception.pose_batch). A pose model with one output (the
original movenet-lightning.onnx, or a compatible file) runs once per person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from daemon.stages import pose_decode
from daemon.stages.contract import ModelError

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
DEFAULT_DETECTOR = MODELS_DIR / "nanodet-g.onnx"
DEFAULT_POSE = MODELS_DIR / "movenet-lightning-batch.onnx"

KEYPOINTS = 17  # COCO order: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles
NANODET_INPUT_PX = 416  # the long side of the detector's input (a free-size detector)
NANODET_GRID_PX = 32  # a free-size detector's input sides: multiples of its coarsest stride
NANODET_STRIDES_PX = (8, 16, 32)
NANODET_CLASSES = 80
NANODET_REG_BINS = 11  # GFL distribution: reg_max 10 -> 11 bins per box side
# NanoDet was trained on BGR images normalised with these (its config's img_norm_cfg).
NANODET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
COCO_PERSON_CLASS = 0
MOVENET_INPUT_PX = 192
# The MoveNet crop around a detector box: a square this many times the box's longer side,
# so that arms raised above the head and the feet stay inside it.
POSE_CROP_SCALE = 1.25
NMS_IOU = 0.45
TILE_GRID = 2  # tiled detection: the full frame plus 2 x 2 tiles
TILE_OVERLAP_SHARE = 0.25  # tiles overlap by a quarter of a tile


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a model input of size_hw (height, width) pixels:
    input = frame * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float
    size_hw: tuple[int, int] = (NANODET_INPUT_PX, NANODET_INPUT_PX)

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Maps (..., 2) input-pixel (x, y) back to frame pixels."""
        out: np.ndarray = np.array(xy, np.float32)
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale
        return out


@dataclass(frozen=True)
class People:
    """The people found in one frame, best first."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    keypoints: np.ndarray  # (N, 17, 3) float32 x, y, score

    def __len__(self) -> int:
        return len(self.scores)


def letterbox(frame: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resizes keeping the aspect ratio to fit size_hw (height, width), centred on black."""
    h, w = frame.shape[:2]
    out_h, out_w = size_hw
    scale = min(out_h / h, out_w / w)
    nw, nh = min(round(w * scale), out_w), min(round(h * scale), out_h)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (out_w - nw) // 2, (out_h - nh) // 2
    out = np.zeros((out_h, out_w, 3), np.uint8)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
    return out, Letterbox(scale, float(pad_x), float(pad_y), (out_h, out_w))


def detector_size(frame_hw: tuple[int, int], fixed_hw: tuple[int, int] | None) -> tuple[int, int]:
    """The detector's input (height, width) for a frame of frame_hw: a fixed-size
    detector's own; for a free-size one, the frame fitted in NANODET_INPUT_PX on its long
    side, each side rounded up to a multiple of NANODET_GRID_PX."""
    if fixed_hw is not None:
        return fixed_hw
    scale = NANODET_INPUT_PX / max(frame_hw)
    grid = NANODET_GRID_PX
    h, w = (max(grid, -(-round(side * scale) // grid) * grid) for side in frame_hw)
    return h, w


def nms(boxes: np.ndarray, scores: np.ndarray, iou_max: float = NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_max]
    return keep


def nanodet_input(
    frame: np.ndarray, fixed_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """BGR frame -> (1, 3, H, W) float32, BGR, (x - mean) / std, NCHW; H, W by
    detector_size (fixed_hw: a fixed-size detector's input height and width)."""
    img, lb = letterbox(frame, detector_size(frame.shape[:2], fixed_hw))
    # Straight into a contiguous NCHW array: a tenth of the time of normalising in HWC
    # and transposing (which also left onnxruntime a copy to make); the same values.
    x = np.empty((1, 3, *img.shape[:2]), np.float32)
    np.subtract(img.transpose(2, 0, 1), NANODET_MEAN_BGR[:, None, None], out=x[0])
    np.divide(x[0], NANODET_STD_BGR[:, None, None], out=x[0])
    return x, lb


def nanodet_by_stride(
    outs: list[np.ndarray], size_hw: tuple[int, int] = (NANODET_INPUT_PX, NANODET_INPUT_PX)
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Pairs the six outputs of an input of size_hw as {stride: (scores (N, 80), box
    distributions (N, 44))}, by their shapes (the output names carry no meaning): a
    stride's N is (H / stride) x (W / stride) cells, row by row."""
    by_cells: dict[int, dict[str, np.ndarray]] = {}
    for out in outs:
        kind = "scores" if out.shape[-1] == NANODET_CLASSES else "reg"
        by_cells.setdefault(out.shape[1], {})[kind] = out[0]
    result = {}
    for stride in NANODET_STRIDES_PX:
        cells = by_cells[(size_hw[0] // stride) * (size_hw[1] // stride)]
        result[stride] = (cells["scores"], cells["reg"])
    return result


def nanodet_decode(
    outs: dict[int, tuple[np.ndarray, np.ndarray]], lb: Letterbox, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """GFL decoding of the person class: each side's distance is the expectation of a
    softmax over 11 bins times the stride, from the cell centre (a level's grid has
    lb.size_hw's width / stride columns); NMS; frame pixels."""
    boxes, scores = [], []
    bins = np.arange(NANODET_REG_BINS, dtype=np.float32)
    for stride, (cls_scores, reg) in outs.items():
        cols = lb.size_hw[1] // stride
        s = cls_scores[:, COCO_PERSON_CLASS]
        idx = np.nonzero(s >= min_score)[0]
        if idx.size == 0:
            continue
        logits = reg[idx].reshape(-1, 4, NANODET_REG_BINS)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        dist = (e / e.sum(axis=2, keepdims=True) * bins).sum(axis=2) * stride
        cx = (idx % cols + 0.5) * stride
        cy = (idx // cols + 0.5) * stride
        boxes.append(
            np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
        )
        scores.append(s[idx])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(b, s)
    return lb.to_frame(b[keep].reshape(-1, 2, 2)).reshape(-1, 4), s[keep].astype(np.float32)


def tiles(h: int, w: int) -> list[tuple[int, int, int, int]]:
    """2 x 2 tiles overlapping by a quarter tile, as (x0, y0, width, height)."""
    n = TILE_GRID
    step = 1 - TILE_OVERLAP_SHARE
    tw, th = (
        int(w / (n - (n - 1) * TILE_OVERLAP_SHARE)),
        int(h / (n - (n - 1) * TILE_OVERLAP_SHARE)),
    )
    # The last row and column end at the frame's edge (rounding leaves no strip uncovered).
    xs = [w - tw if c == n - 1 else int(c * tw * step) for c in range(n)]
    ys = [h - th if r == n - 1 else int(r * th * step) for r in range(n)]
    return [(x0, y0, tw, th) for y0 in ys for x0 in xs]


def pose_crop(box: np.ndarray) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) centred on the box, POSE_CROP_SCALE x its longer side.
    The crop may leave the frame: the outside is filled with black."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * POSE_CROP_SCALE
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - side / 2, cy - side / 2, side


def movenet_input(frame: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """BGR frame + crop -> (1, 192, 192, 3) int32 RGB 0..255 (MoveNet normalises inside)."""
    x0, y0, side = crop
    k = MOVENET_INPUT_PX / side
    m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float32)
    img = cv2.warpAffine(
        frame,
        m,
        (MOVENET_INPUT_PX, MOVENET_INPUT_PX),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.int32)[None]


def movenet_decode(out: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """(1, 1, 17, 3) [y, x, score] normalised to the crop -> (17, 3) [x, y, score] frame px."""
    x0, y0, side = crop
    kp = out.reshape(KEYPOINTS, 3)
    return np.stack([x0 + kp[:, 1] * side, y0 + kp[:, 0] * side, kp[:, 2]], 1).astype(np.float32)


def open_session(
    path: Path | str, threads: int, providers: tuple[str, ...]
) -> ort.InferenceSession:
    """An onnxruntime session; ModelError (one line) for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"perception model not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    try:
        sess = ort.InferenceSession(str(path), options, providers=chosen)
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise ModelError(f"perception model {path}: cannot be loaded: {exc}") from exc
    log.info("model %s: providers in use %s", path.name, ", ".join(sess.get_providers()))
    return sess


def fixed_input_hw(sess: ort.InferenceSession, path: Path) -> tuple[int, int] | None:
    """A detector's input (height, width) when both are fixed numbers, None when both are
    free; ModelError (one line) for an input that is not (1, 3, H, W) or fixes one side."""
    shape = sess.get_inputs()[0].shape
    if len(shape) != 4:
        raise ModelError(f"person detector {path}: input shape {shape}, expected (1, 3, H, W)")
    h, w = shape[2:]
    if isinstance(h, int) and isinstance(w, int):
        return h, w
    if isinstance(h, int) or isinstance(w, int):
        raise ModelError(
            f"person detector {path}: input shape {shape} fixes one of height and width; "
            "fix both (the frame is letterboxed into them) or neither"
        )
    return None


class PersonModels:
    """The detector and the pose model, loaded once per detect worker."""

    def __init__(
        self,
        detector: Path | str,
        pose: Path | str,
        threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        self.detector = open_session(detector, threads, providers)
        self.pose = open_session(pose, threads, providers)
        self._det_input = self.detector.get_inputs()[0].name
        self.detector_fixed_hw = fixed_input_hw(self.detector, Path(detector))
        self._pose_input = self.pose.get_inputs()[0].name
        self.pose_batched = {o.name for o in self.pose.get_outputs()} == set(pose_decode.OUTPUTS)
        self.providers = tuple(self.detector.get_providers())

    def detect(self, frame: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes and scores of one frame (one detector call)."""
        x, lb = nanodet_input(frame, self.detector_fixed_hw)
        outs = self.detector.run(None, {self._det_input: x})
        return nanodet_decode(nanodet_by_stride(outs, lb.size_hw), lb, min_score)

    def detect_tiled(self, frame: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """The full frame plus 2 x 2 overlapping tiles (small people), one NMS over all."""
        found = [self.detect(frame, min_score)]
        h, w = frame.shape[:2]
        for x0, y0, tw, th in tiles(h, w):
            b, s = self.detect(frame[y0 : y0 + th, x0 : x0 + tw], min_score)
            found.append((b + np.array([x0, y0, x0, y0], np.float32), s))
        b = np.concatenate([f[0] for f in found])
        s = np.concatenate([f[1] for f in found])
        keep = nms(b, s) if len(s) else []
        return b[keep], s[keep]

    def keypoints(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(17, 3) keypoints of the person in `box` (one pose call)."""
        out: np.ndarray = self.keypoints_many([(frame, box)], 1)[0]
        return out

    def keypoints_many(
        self, people: list[tuple[np.ndarray, np.ndarray]], max_batch: int
    ) -> np.ndarray:
        """(N, 17, 3) keypoints of N people given as (frame, box): with a batched pose
        model, up to max_batch crops per call; else one call per person."""
        crops = [pose_crop(box) for _, box in people]
        inputs = [movenet_input(frame, crop) for (frame, _), crop in zip(people, crops)]
        out = np.zeros((len(people), KEYPOINTS, 3), np.float32)
        if inputs:
            raw = self.pose_raw(np.concatenate(inputs), max_batch)
            for i, row in enumerate(raw):
                out[i] = movenet_decode(row, crops[i])
        return out

    def pose_raw(self, x: np.ndarray, max_batch: int) -> np.ndarray:
        """The pose model's (N, 1, 17, 3) output for N prepared crops (movenet_input):
        calls of up to max_batch crops with a batched model, else one call per crop."""
        step = max(1, max_batch) if self.pose_batched else 1
        parts = []
        for i in range(0, len(x), step):
            feed = {self._pose_input: x[i : i + step]}
            if self.pose_batched:
                parts.append(pose_decode.decode(*self.pose.run(list(pose_decode.OUTPUTS), feed)))
            else:
                parts.append(self.pose.run(None, feed)[0])
        return np.concatenate(parts)

    def people(
        self, frame: np.ndarray, min_score: float, max_people: int, tiled: bool = False
    ) -> People:
        """Everyone in the frame (the best `max_people`), with their keypoints."""
        boxes, scores = (self.detect_tiled if tiled else self.detect)(frame, min_score)
        boxes, scores = boxes[:max_people], scores[:max_people]
        kps = self.keypoints_many([(frame, box) for box in boxes], len(boxes))
        return People(boxes.astype(np.float32), scores.astype(np.float32), kps)
