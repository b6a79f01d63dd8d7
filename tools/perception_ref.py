"""Reference pre/post-processing for the shipped perception models (numpy + cv2 + onnxruntime).

This is the executable form of eval/perception.md: every model's input size, colour order,
normalisation, output decoding and the crop geometry between the person detector and the
per-person pose model. It is written to be moved into daemon/ as it is; the evaluation
(tools/eval_perception.py) and the runtime reference check (tests/data/perception_ref.npz)
both use it.

Conventions: frames are BGR uint8 (what cv2 and the daemon's rings carry); boxes are
(x1, y1, x2, y2) in frame pixels; keypoints are (x, y, score) in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

MODELS_DIR = Path(__file__).resolve().parent.parent / "daemon" / "assets" / "models"

NANODET_INPUT_PX = 416
NANODET_STRIDES_PX = (8, 16, 32)
NANODET_REG_BINS = 11  # GFL distribution: reg_max 10 -> 11 bins per box side
# NanoDet was trained on BGR images normalised with these (its config's img_norm_cfg).
NANODET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
COCO_PERSON_CLASS = 0
MOVENET_SINGLE_INPUT_PX = 192
MOVENET_MULTI_INPUT_PX = 256
BLAZEPOSE_DET_INPUT_PX = 224
# The MoveNet crop around a detector box: a square this many times the box's longer side,
# so that arms raised above the head and the feet stay inside it.
POSE_CROP_SCALE = 1.25
NMS_IOU = 0.45


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a square model input: input = frame * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Maps (..., 2) input-pixel (x, y) back to frame pixels."""
        out = np.asarray(xy, np.float32).copy()
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale
        return out


def session(path: Path | str, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def letterbox(frame: np.ndarray, size_px: int) -> tuple[np.ndarray, Letterbox]:
    """Resizes keeping the aspect ratio, centred on a black square of size_px."""
    h, w = frame.shape[:2]
    scale = size_px / max(h, w)
    nw, nh = round(w * scale), round(h * scale)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size_px - nw) // 2, (size_px - nh) // 2
    out = np.zeros((size_px, size_px, 3), np.uint8)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
    return out, Letterbox(scale, float(pad_x), float(pad_y))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_max: float = NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        area_r = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
        iou = inter / np.maximum(area_i + area_r - inter, 1e-9)
        order = [int(j) for j, v in zip(rest, iou) if v <= iou_max]
    return keep


# --- NanoDet-g (COCO detector; the person class is used) -------------------------------


def nanodet_input(frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    """BGR frame -> (1, 3, 416, 416) float32, BGR, (x - mean) / std, NCHW."""
    img, lb = letterbox(frame, NANODET_INPUT_PX)
    return nanodet_normalise(img), lb


def nanodet_normalise(img: np.ndarray) -> np.ndarray:
    """416x416 BGR uint8 -> (1, 3, 416, 416) float32."""
    x = (img.astype(np.float32) - NANODET_MEAN_BGR) / NANODET_STD_BGR
    return x.transpose(2, 0, 1)[None]


def nanodet_outputs_by_stride(
    sess: ort.InferenceSession, outs: list[np.ndarray]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Pairs the six outputs as {stride: (scores (N, 80), box distributions (N, 44))}."""
    by_cells: dict[int, dict[str, np.ndarray]] = {}
    for out in outs:
        kind = "scores" if out.shape[-1] == 80 else "reg"
        by_cells.setdefault(out.shape[1], {})[kind] = out[0]
    result = {}
    for stride in NANODET_STRIDES_PX:
        cells = (NANODET_INPUT_PX // stride) ** 2
        result[stride] = (by_cells[cells]["scores"], by_cells[cells]["reg"])
    return result


def nanodet_decode(
    outs: dict[int, tuple[np.ndarray, np.ndarray]],
    lb: Letterbox,
    min_score: float,
    cls: int = COCO_PERSON_CLASS,
) -> tuple[np.ndarray, np.ndarray]:
    """GFL decoding: each side's distance is the expectation of a softmax over 11 bins times
    the stride, from the cell centre ((col + 0.5) * stride, (row + 0.5) * stride)."""
    boxes, scores = [], []
    bins = np.arange(NANODET_REG_BINS, dtype=np.float32)
    for stride, (cls_scores, reg) in outs.items():
        side = NANODET_INPUT_PX // stride
        s = cls_scores[:, cls]
        idx = np.nonzero(s >= min_score)[0]
        if idx.size == 0:
            continue
        logits = reg[idx].reshape(-1, 4, NANODET_REG_BINS)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        dist = (e / e.sum(axis=2, keepdims=True) * bins).sum(axis=2) * stride
        cx = (idx % side + 0.5) * stride
        cy = (idx // side + 0.5) * stride
        b = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
        boxes.append(b)
        scores.append(s[idx])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(b, s)
    b = lb.to_frame(b[keep].reshape(-1, 2, 2)).reshape(-1, 4)
    return b, s[keep]


def nanodet_people(
    sess: ort.InferenceSession, frame: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    x, lb = nanodet_input(frame)
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    return nanodet_decode(nanodet_outputs_by_stride(sess, outs), lb, min_score)


# --- MoveNet SinglePose Lightning on a person crop --------------------------------------


def pose_crop(box: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) centred on the box, POSE_CROP_SCALE x its longer side.
    The crop may leave the frame: the outside is filled with black."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * POSE_CROP_SCALE
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - side / 2, cy - side / 2, side


def movenet_crop_input(frame: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """BGR frame + crop -> (1, 192, 192, 3) int32 RGB 0..255 (MoveNet normalises inside)."""
    x0, y0, side = crop
    k = MOVENET_SINGLE_INPUT_PX / side
    m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float32)
    img = cv2.warpAffine(
        frame,
        m,
        (MOVENET_SINGLE_INPUT_PX, MOVENET_SINGLE_INPUT_PX),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.int32)[None]


def movenet_crop_decode(out: np.ndarray, crop: tuple[float, float, float]) -> np.ndarray:
    """(1, 1, 17, 3) [y, x, score] normalised to the crop -> (17, 3) [x, y, score] frame px."""
    x0, y0, side = crop
    kp = out.reshape(17, 3)
    return np.stack([x0 + kp[:, 1] * side, y0 + kp[:, 0] * side, kp[:, 2]], 1)


def movenet_pose(sess: ort.InferenceSession, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    crop = pose_crop(box, frame.shape)
    out = sess.run(None, {sess.get_inputs()[0].name: movenet_crop_input(frame, crop)})[0]
    return movenet_crop_decode(out, crop)


# --- Candidates measured but not the chosen pipeline (kept for the evaluation) ----------


def movenet_multipose(
    sess: ort.InferenceSession, frame: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MoveNet MultiPose Lightning: letterboxed 256x256 int32 RGB in; (1, 6, 56) out:
    17 x [y, x, score] then [ymin, xmin, ymax, xmax, score], all normalised to the input."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    img, lb = letterbox(rgb, MOVENET_MULTI_INPUT_PX)
    out = sess.run(None, {sess.get_inputs()[0].name: img.astype(np.int32)[None]})[0][0]
    out = out[out[:, 55] >= min_score]
    n = MOVENET_MULTI_INPUT_PX
    boxes = lb.to_frame(out[:, [52, 51, 54, 53]].reshape(-1, 2, 2) * n).reshape(-1, 4)
    kps = out[:, :51].reshape(-1, 17, 3)
    xy = lb.to_frame(kps[:, :, [1, 0]] * n)
    return boxes, out[:, 55], np.concatenate([xy, kps[:, :, 2:]], 2)


def centernet_people(
    sess: ort.InferenceSession, frame: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """MB3-CenterNet (not shipped: no licence): 512x512 stretched RGB 0..255 float in;
    'tower_0/detections' (1, 100, 6): x1, y1, x2, y2 (input px), score, class (0 = person)."""
    h, w = frame.shape[:2]
    img = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (512, 512)).astype(np.float32)
    det = sess.run(["tower_0/detections"], {sess.get_inputs()[0].name: img[None]})[0][0]
    det = det[(det[:, 5] == COCO_PERSON_CLASS) & (det[:, 4] >= min_score)]
    boxes = det[:, :4] * np.array([w / 512, h / 512, w / 512, h / 512], np.float32)
    return boxes, det[:, 4]


def blazepose_anchors() -> np.ndarray:
    """SSD anchors of MediaPipe's pose_detection: strides 8, 16, 32, 32, 32 on 224 px,
    fixed size 1, offset 0.5; 2 anchors per cell on the 28 and 14 grids, 6 on the 7 grid
    (the three stride-32 layers share it): 2254 (cx, cy) in 0..1."""
    anchors = []
    for side, per_cell in ((28, 2), (14, 2), (7, 6)):
        ys, xs = np.mgrid[0:side, 0:side]
        c = np.stack([(xs + 0.5) / side, (ys + 0.5) / side], -1).reshape(-1, 1, 2)
        anchors.append(np.repeat(c, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(anchors).astype(np.float32)


def blazepose_detect(
    sess: ort.InferenceSession, frame: np.ndarray, min_score: float, anchors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose detector: letterboxed 224x224 RGB float in [-1, 1]; outputs (1, 2254, 12)
    [dx, dy, w, h, 4 x (kx, ky)] in input px relative to the anchor centre, and (1, 2254, 1)
    score logits (sigmoid). The box is the face; keypoint 0/1 are the hip centre and a
    point giving the full body's size (used by BlazePose landmark's ROI)."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    img, lb = letterbox(rgb, BLAZEPOSE_DET_INPUT_PX)
    x = img.astype(np.float32)[None] / 127.5 - 1.0
    reg, logit = sess.run(None, {sess.get_inputs()[0].name: x})
    score = 1 / (1 + np.exp(-np.clip(logit[0, :, 0], -100, 100)))
    idx = np.nonzero(score >= min_score)[0]
    n = BLAZEPOSE_DET_INPUT_PX
    r = reg[0, idx]
    centre = anchors[idx] * n
    hip = centre + r[:, 4:6]
    size_pt = centre + r[:, 6:8]
    # A body box from the hip centre and the size point (as the landmark ROI does).
    half = np.linalg.norm(size_pt - hip, axis=1)
    b = np.stack([hip[:, 0] - half, hip[:, 1] - half, hip[:, 0] + half, hip[:, 1] + half], 1)
    keep = nms(b, score[idx], 0.3)
    b = lb.to_frame(b[keep].reshape(-1, 2, 2)).reshape(-1, 4)
    return b, score[idx][keep]
