"""The action-model contract: what an ONNX action model must declare, read from its
input shape and metadata with config overrides, and checked for consistency.

What a model must declare (ONNX metadata_props; every key may be overridden by the same
key in [inference]; the input shape wins over metadata where it is fixed):

- `labels`: JSON list or comma-separated, one per output score (default class_0...).
- `layout`: NCTHW | NTCHW | NT_CHW (TSM-style: the clip's T frames on the batch axis,
  input (N*T, C, H, W), scores averaged over T if the model answers per frame) | NCHW
  (the T frames' channels stacked time-major: a single frame when T = 1, or a two-stream
  flow stack). Guessed from the input shape when unambiguous.
- `input`: rgb | flow | rgb+flow: per frame 3 colour channels, 2 flow channels (x, y), or
  both (colour first). Guessed from the channel count when unambiguous.
- `clip_length` (T), `height`, `width`: needed only where the input shape leaves them free.
- `colour_order`: rgb (default) | bgr.
- `mean`, `std`: 1 value or one per channel of `input`; the model sees (x - mean) / std
  with colour in 0-255 and flow in pixels per frame at the model's input size.
- `activation`: none (default) | softmax | sigmoid, applied to the raw output.
- `result_kind`: what one result holds (daemon.stages.records.RESULT_RECORDS):
  clip_scores (default: one score per label for a clip) | detections (per frame: up to
  `max_detections` boxes with a score and a label each, and `keypoints` points per box
  when that is above 0). The results ring, the overlay's drawing and the events follow it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from daemon.config import (
    COLOUR_ORDERS,
    MODEL_ACTIVATIONS,
    MODEL_INPUTS,
    MODEL_LAYOUTS,
    InferenceConfig,
)
from daemon.stages.records import CLIP_SCORES, MAX_DETECTIONS, RESULT_KINDS, ResultSpec

CHANNELS = MappingProxyType({"rgb": 3, "flow": 2, "rgb+flow": 5})
RANKS = MappingProxyType({"NCTHW": 5, "NTCHW": 5, "NT_CHW": 4, "NCHW": 4})
# An ONNX input shape as onnxruntime gives it: fixed sizes, symbolic names or None.
InputShape = Sequence[int | str | None]


class ModelError(Exception):
    """A model that cannot be loaded or does not fit the contract."""


@dataclass(frozen=True)
class ModelContract:
    """What the model takes and what it answers (see the module docstring)."""

    labels: tuple[str, ...]
    layout: str
    inputs: str  # rgb | flow | rgb+flow
    clip_length: int
    height: int  # 0: whatever size the clip has
    width: int
    colour_order: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    activation: str = "none"
    result_kind: str = CLIP_SCORES
    max_detections: int = MAX_DETECTIONS
    keypoints: int = 0

    @property
    def result(self) -> ResultSpec:
        """What one result of the model holds (sizes the results ring)."""
        return ResultSpec(self.result_kind, self.labels, self.max_detections, self.keypoints)

    @property
    def channels(self) -> int:
        """Channels per frame."""
        return CHANNELS[self.inputs]


def read_contract(
    shape: InputShape, meta: dict[str, str], cfg: InferenceConfig, name: str
) -> ModelContract:
    """The contract of a model with input `shape` and metadata `meta`, overridden by cfg."""
    if len(shape) not in (4, 5):
        raise ModelError(
            f"model {name}: input has rank {len(shape)} {shape}: expected 5 "
            "(NCTHW, NTCHW clips) or 4 (NT_CHW, NCHW)"
        )
    kind = cfg.input or meta.get("input", "")
    layout = cfg.layout or meta.get("layout", "") or _guess_layout(shape, kind, name)
    _check_choice(layout, MODEL_LAYOUTS, "layout", name)
    if RANKS[layout] != len(shape):
        raise ModelError(
            f"model {name}: layout {layout} needs a rank-{RANKS[layout]} "
            f"input, but the input shape is {shape} (rank {len(shape)})"
        )
    kind, t = _input_and_length(shape, layout, meta, cfg, name)
    height = _spatial(shape[-2], meta, "height", name, cfg.height)
    width = _spatial(shape[-1], meta, "width", name, cfg.width)
    colour = cfg.colour_order or meta.get("colour_order", "rgb")
    _check_choice(colour, COLOUR_ORDERS, "colour_order", name)
    activation = cfg.activation or meta.get("activation", "none")
    _check_choice(activation, MODEL_ACTIVATIONS, "activation", name)
    mean, std = _normalisation(kind, meta, cfg, name)
    labels = cfg.labels or _labels(meta.get("labels", ""), name)
    result_kind, max_detections, keypoints = _result(meta, name)
    return ModelContract(
        tuple(labels),
        layout,
        kind,
        t,
        height,
        width,
        colour,
        tuple(mean),
        tuple(std),
        activation,
        result_kind,
        max_detections,
        keypoints,
    )


def _normalisation(
    kind: str, meta: dict[str, str], cfg: InferenceConfig, name: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std): 1 value or one per channel of input `kind`, std never 0."""
    mean = cfg.mean or _floats(meta.get("mean", "0"), "mean", name)
    std = cfg.std or _floats(meta.get("std", "1"), "std", name)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, CHANNELS[kind]):
            raise ModelError(
                f"model {name}: {key} has {len(values)} values: expected 1 or "
                f"{CHANNELS[kind]} (one per channel of input {kind})"
            )
    if any(v == 0 for v in std):
        raise ModelError(f"model {name}: std must not be 0 (got {list(std)})")
    return tuple(mean), tuple(std)


def _result(meta: dict[str, str], name: str) -> tuple[str, int, int]:
    """What one result holds, from the metadata: (result_kind, max_detections, keypoints)."""
    result_kind = meta.get("result_kind", CLIP_SCORES)
    if result_kind not in RESULT_KINDS:
        raise ModelError(
            f"model {name}: metadata result_kind {result_kind!r} is not one of "
            f"{', '.join(RESULT_KINDS)}"
        )
    max_detections = (
        _int(meta.get("max_detections", str(MAX_DETECTIONS)), "max_detections", name)
        or MAX_DETECTIONS
    )
    keypoints = _int(meta.get("keypoints", "0"), "keypoints", name)
    return result_kind, max_detections, keypoints


def _input_and_length(
    shape: InputShape, layout: str, meta: dict[str, str], cfg: InferenceConfig, name: str
) -> tuple[str, int]:
    """The per-frame input kind and the clip length T, checked against the shape."""
    c_dim = fixed_dim(shape[{"NCTHW": 1, "NTCHW": 2, "NT_CHW": 1, "NCHW": 1}[layout]])
    kind = cfg.input or meta.get("input", "")
    if not kind and c_dim:
        guess = [k for k, n in CHANNELS.items() if n == c_dim]
        kind = guess[0] if guess else ""
    if not kind:
        raise ModelError(
            f"model {name}: cannot tell whether input {shape} ({layout}) takes "
            "rgb, flow or rgb+flow: set metadata `input` or inference.input"
        )
    _check_choice(kind, MODEL_INPUTS, "input", name)
    per_frame = CHANNELS[kind]
    t_shape = {"NCTHW": fixed_dim(shape[2]), "NTCHW": fixed_dim(shape[1])}.get(layout, 0)
    if layout == "NCHW" and c_dim:
        if c_dim % per_frame:
            raise ModelError(
                f"model {name}: input {shape} has {c_dim} channels, not a "
                f"multiple of {per_frame} ({kind} per frame, layout NCHW)"
            )
        t_shape = c_dim // per_frame
    elif c_dim and c_dim != per_frame:
        raise ModelError(
            f"model {name}: input {shape} ({layout}) has {c_dim} channels per "
            f"frame: expected {per_frame} for input {kind}"
        )
    t_meta = _int(meta.get("clip_length", "0"), "clip_length", name)
    if t_shape and t_meta and t_shape != t_meta:
        raise ModelError(
            f"model {name}: metadata clip_length {t_meta} conflicts with its "
            f"input shape {shape} ({layout}: T = {t_shape})"
        )
    if t_shape and cfg.clip_length and cfg.clip_length != t_shape:
        raise ModelError(
            f"clip length conflict: inference.clip_length = {cfg.clip_length}"
            f" but model {name} takes T = {t_shape} (input {shape}, {layout}); "
            f"set clip_length = 0 or {t_shape}"
        )
    t = cfg.clip_length or t_shape or t_meta or (1 if layout == "NCHW" else 0)
    if layout == "NT_CHW" and not t and fixed_dim(shape[0]):
        t = fixed_dim(shape[0])  # a fixed N*T axis with nothing else said: N = 1
    if not t:
        raise ModelError(
            f"model {name}: the clip length is not fixed by input {shape} "
            f"({layout}): set metadata `clip_length` or inference.clip_length"
        )
    return kind, t


def _guess_layout(shape: InputShape, kind: str, name: str) -> str:
    """NCHW for rank 4; for rank 5 the axis holding the channels (NCTHW when neither
    does, so that the channel check names the mismatch)."""
    if len(shape) == 4:
        return "NCHW"
    wanted = {CHANNELS[kind]} if kind in CHANNELS else set(CHANNELS.values())
    fits = [lay for lay, axis in (("NCTHW", 1), ("NTCHW", 2)) if fixed_dim(shape[axis]) in wanted]
    if len(fits) > 1:
        raise ModelError(
            f"model {name}: cannot tell the layout of input {shape}: set "
            "metadata `layout` or inference.layout (NCTHW or NTCHW)"
        )
    return fits[0] if fits else "NCTHW"


def _check_choice(value: str, choices: tuple[str, ...], key: str, name: str) -> None:
    if value not in choices:
        raise ModelError(
            f"model {name}: {key} {value!r} is not one of "
            f"{', '.join(choices)} (metadata `{key}` or inference.{key})"
        )


def _spatial(dim: object, meta: dict[str, str], key: str, name: str, override: int) -> int:
    given = _int(meta.get(key, "0"), key, name)
    if fixed_dim(dim) and given and given != dim:
        raise ModelError(
            f"model {name}: metadata {key} {given} conflicts with its input {key} {dim}"
        )
    if fixed_dim(dim) and override and override != dim:
        raise ModelError(
            f"model {name}: inference.{key} = {override} conflicts with its "
            f"input {key} {dim}: set {key} = 0 or {dim}"
        )
    return override or fixed_dim(dim) or given


def fixed_dim(dim: object) -> int:
    """A fixed positive dimension, or 0 for a free (symbolic or unknown) one."""
    return dim if isinstance(dim, int) and dim > 0 else 0


def _int(raw: str, key: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ModelError(f"model {name}: metadata {key} must be a whole number (got {raw!r})")
    return value


def _floats(raw: str, key: str, name: str) -> tuple[float, ...]:
    try:
        value = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        floats = tuple(float(v) for v in (value if isinstance(value, list) else [value]))
    except (ValueError, TypeError) as exc:
        raise ModelError(
            f"model {name}: metadata {key} must be a number or a list of numbers (got {raw!r})"
        ) from exc
    return floats


def _labels(raw: str, name: str) -> tuple[str, ...]:
    if not raw.strip():
        return ()
    try:
        labels = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
    except ValueError as exc:
        raise ModelError(f"model {name}: metadata labels is not a JSON list: {exc}") from exc
    labels = tuple(str(label).strip() for label in labels)
    if any(not label for label in labels) or len(set(labels)) != len(labels):
        raise ModelError(f"model {name}: labels must be distinct and non-empty: {labels}")
    return labels
