"""The skeleton-classifier contract: a user's ONNX model (ST-GCN style) that takes a
person's keypoint sequence and gives one score per label, run beside the rules.

What the model must declare (ONNX metadata_props, like the clip model's contract in
daemon/stages/contract.py):
- `result_kind` = "skeleton_scores" (required: it says the model is one of these);
- `labels`: JSON list or comma-separated, one per output score; each becomes an action
  (it must not be a rule's name: [people] actions);
- `sequence_length` T: samples per sequence (needed where the input shape leaves T free);
- `fps`: samples per second the model was trained on; the track's history is resampled
  to it on media time (nearest sample), so the analysis rate does not change its input;
- `activation`: none (default) | softmax | sigmoid, applied to the raw output.
Input: float32 (N, T, 17, 3): T samples, oldest first, of the 17 COCO keypoints (x, y,
score), x and y normalised to that sample's person box (0..1 from its left/top edge to
its right/bottom edge), score as the pose model gave it. Output: (N, labels).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from daemon.config import SkeletonModelConfig
from daemon.people.person import KEYPOINT_COUNT, Sample

RESULT_KIND = "skeleton_scores"
ACTIVATIONS = ("none", "softmax", "sigmoid")
Runner = Callable[[np.ndarray], np.ndarray]  # (N, T, 17, 3) float32 -> (N, labels)


class SkeletonModelError(Exception):
    """A skeleton model that cannot be loaded or does not fit the contract."""


@dataclass(frozen=True)
class SkeletonContract:
    labels: tuple[str, ...]
    sequence_length: int
    fps: float
    activation: str = "none"

    @property
    def span_s(self) -> float:
        """How much track history one sequence covers."""
        return (self.sequence_length - 1) / self.fps


def read_skeleton_contract(
    shape: Sequence[object], meta: Mapping[str, str], name: str
) -> SkeletonContract:
    """The contract of a model with input `shape` and metadata `meta`."""
    if meta.get("result_kind") != RESULT_KIND:
        raise SkeletonModelError(
            f"model {name}: metadata result_kind must be {RESULT_KIND!r} for a skeleton "
            f"classifier (got {meta.get('result_kind')!r})"
        )
    if len(shape) != 4 or shape[2] != KEYPOINT_COUNT or shape[3] != 3:
        raise SkeletonModelError(
            f"model {name}: input shape {list(shape)} is not (N, T, 17, 3) keypoint sequences"
        )
    labels = _labels(meta.get("labels", ""), name)
    length = shape[1] if isinstance(shape[1], int) else _number(meta, "sequence_length", name)
    fps = _number(meta, "fps", name)
    activation = meta.get("activation", "none")
    if activation not in ACTIVATIONS:
        raise SkeletonModelError(
            f"model {name}: activation must be one of {', '.join(ACTIVATIONS)} (got {activation!r})"
        )
    if int(length) < 1 or fps <= 0:
        raise SkeletonModelError(f"model {name}: sequence_length and fps must be > 0")
    return SkeletonContract(labels, int(length), float(fps), activation)


def _labels(raw: str, name: str) -> tuple[str, ...]:
    try:
        values = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
    except ValueError as exc:
        raise SkeletonModelError(
            f"model {name}: metadata labels is not a JSON list: {exc}"
        ) from exc
    labels = tuple(str(v).strip() for v in values if str(v).strip())
    if not labels or len(set(labels)) != len(labels):
        raise SkeletonModelError(f"model {name}: metadata labels must be distinct and non-empty")
    return labels


def _number(meta: Mapping[str, str], key: str, name: str) -> float:
    try:
        return float(meta[key])
    except (KeyError, ValueError) as exc:
        raise SkeletonModelError(
            f"model {name}: metadata {key} must be a number (got {meta.get(key)!r})"
        ) from exc


def sequence(history: Sequence[Sample], contract: SkeletonContract) -> np.ndarray | None:
    """(T, 17, 3) for the model, resampled at its fps back from the newest sample, or
    None when the history is shorter than the sequence."""
    if not history or history[-1].t_s - history[0].t_s < contract.span_s - 0.5 / contract.fps:
        return None
    times = np.array([s.t_s for s in history])
    wanted = history[-1].t_s - np.arange(contract.sequence_length)[::-1] / contract.fps
    picks = [int(np.argmin(np.abs(times - t))) for t in wanted]
    out = np.empty((contract.sequence_length, KEYPOINT_COUNT, 3), dtype=np.float32)
    for i, index in enumerate(picks):
        s = history[index]
        x1, y1, x2, y2 = s.box
        out[i, :, 0] = (s.keypoints[:, 0] - x1) / max(x2 - x1, 1.0)
        out[i, :, 1] = (s.keypoints[:, 1] - y1) / max(y2 - y1, 1.0)
        out[i, :, 2] = s.keypoints[:, 2]
    return out


class SkeletonClassifier:
    """One skeleton model with its threshold: history -> {label: score} of the labels on."""

    def __init__(self, contract: SkeletonContract, run: Runner, cfg: SkeletonModelConfig) -> None:
        self.contract = contract
        self._run = run
        self._threshold = cfg.threshold
        self.actions = tuple(label for label in contract.labels if label not in cfg.ignore)

    def scores(self, history: Sequence[Sample]) -> dict[str, float]:
        """The labels scoring at least the threshold for this history ({} if too short)."""
        x = sequence(history, self.contract)
        if x is None:
            return {}
        raw = np.asarray(self._run(x[None]), dtype=np.float64).reshape(-1)
        if raw.shape[0] != len(self.contract.labels):
            raise SkeletonModelError(
                f"skeleton model gave {raw.shape[0]} scores for {len(self.contract.labels)} labels"
            )
        scores = _activate(raw, self.contract.activation)
        return {
            label: float(score)
            for label, score in zip(self.contract.labels, scores, strict=True)
            if label in self.actions and score >= self._threshold
        }


def _activate(raw: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        e = np.exp(raw - raw.max())
        return np.asarray(e / e.sum())
    if activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-raw)))
    return raw


def load_classifier(cfg: SkeletonModelConfig, threads: int = 1) -> SkeletonClassifier:
    """Opens the model (CPU) and reads its contract; SkeletonModelError if it is unfit.
    onnxruntime (about 20 MiB per process) is imported here, so an overlay worker with no
    classifier configured never loads it (tests/test_worker_imports.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(cfg.model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise SkeletonModelError(f"model {cfg.model}: cannot be loaded: {exc}") from exc
    meta = dict(session.get_modelmeta().custom_metadata_map)
    model_input = session.get_inputs()[0]
    contract = read_skeleton_contract(model_input.shape, meta, cfg.model)
    name = model_input.name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])

    return SkeletonClassifier(contract, run, cfg)
