"""An ONNX action model behind onnxruntime: loading, providers, and its input contract.

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

Clips arrive as T frames (uint8 BGR) and T flows at motion size; `make_input` turns one
clip into a (1, ...) tensor; `run` takes N of them stacked on axis 0.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from daemon.config import (
    COLOUR_ORDERS,
    MODEL_ACTIVATIONS,
    MODEL_INPUTS,
    MODEL_LAYOUTS,
    InferenceConfig,
)
from daemon.stages.flow import resize_flow

log = logging.getLogger(__name__)

CHANNELS = {"rgb": 3, "flow": 2, "rgb+flow": 5}
RANKS = {"NCTHW": 5, "NTCHW": 5, "NT_CHW": 4, "NCHW": 4}
DYNAMIC_MAX_BATCH = 8     # clips per run when the model's batch dimension is free
DRY_RUN_SIZE_PX = 64      # input size of the load-time check where the model leaves it free
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class ModelError(Exception):
    """A model that cannot be loaded or does not fit the contract."""


@dataclass(frozen=True)
class ModelContract:
    """What the model takes and what it answers (see the module docstring)."""

    labels: tuple[str, ...]
    layout: str
    inputs: str                     # rgb | flow | rgb+flow
    clip_length: int
    height: int                     # 0: whatever size the clip has
    width: int
    colour_order: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    activation: str = "none"

    @property
    def channels(self) -> int:
        """Channels per frame."""
        return CHANNELS[self.inputs]


class ActionModel:
    """An onnxruntime session plus its contract, checked by one dry run at load."""

    def __init__(self, cfg: InferenceConfig, model_path: str) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path} (set inference.model to "
                             "an .onnx file, or \"\" for the bundled demo model)")
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = cfg.threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=_providers(cfg.providers))
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise ModelError(f"model {self.path}: cannot be loaded (not a valid ONNX "
                             f"model?): {exc}") from exc
        self.providers = tuple(self.session.get_providers())
        log.info("model %s: providers in use %s", self.path.name, ", ".join(self.providers))
        spec = self._input_spec()
        self.input_name, shape = spec.name, list(spec.shape)
        self._dtype = _INPUT_TYPES[spec.type]
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.contract = read_contract(shape, meta, cfg, self.path.name)
        self.max_batch, self._fixed_batch = _batch_limits(shape, self.contract)
        self.contract = self._check_output(self.contract)

    def make_input(self, frames: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """(1, ...) model input from T frames (T,h,w,3 uint8 BGR) and flows (T,h,w,2)."""
        return prepare_input(self.contract, frames, flow)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores (N, labels) float32 for N inputs from make_input stacked on axis 0."""
        expected = sample_shape(self.contract)
        if batch.ndim != len(expected) + 1 or any(
                e and e != d for e, d in zip(expected, batch.shape[1:], strict=True)):
            raise ModelError(f"model {self.path.name}: batch of shape {list(batch.shape)} "
                             f"does not fit (N, {', '.join(map(str, expected))})")
        parts = [self._run_chunk(batch[i:i + self.max_batch])
                 for i in range(0, batch.shape[0], self.max_batch)]
        return _activate(np.concatenate(parts), self.contract.activation)

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if self._fixed_batch and n < self._fixed_batch:   # pad up to the fixed batch size
            x = np.concatenate([x, np.zeros((self._fixed_batch - n, *x.shape[1:]), x.dtype)])
        rows = x.shape[0]
        if self.contract.layout == "NT_CHW":
            x = x.reshape(rows * x.shape[1], *x.shape[2:])
        (out,) = self.session.run(None, {self.input_name: x.astype(self._dtype, copy=False)})[:1]
        out = np.asarray(out, dtype=np.float32)
        t = self.contract.clip_length
        if self.contract.layout == "NT_CHW" and t > 1 and out.shape[0] == rows * t:
            out = out.reshape(rows, t, -1).mean(axis=1)   # per-frame scores: average (TSM)
        if out.size % rows:
            raise ModelError(f"model {self.path.name}: output shape {list(out.shape)} does "
                             f"not split into {rows} rows of scores")
        return out.reshape(rows, -1)[:n]

    def _input_spec(self) -> ort.NodeArg:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"model {self.path.name} has {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}): actiond feeds one "
                             "tensor (put rgb and flow on the channel axis: input rgb+flow)")
        if inputs[0].type not in _INPUT_TYPES:
            raise ModelError(f"model {self.path.name}: input {inputs[0].name!r} is "
                             f"{inputs[0].type}: expected tensor(float) or tensor(float16)")
        return inputs[0]

    def _check_output(self, c: ModelContract) -> ModelContract:
        try:
            scores = self.run(np.zeros(_feed_shape(c, batch=1), np.float32))
        except ModelError:
            raise
        except Exception as exc:  # onnxruntime's runtime errors have no common base class
            raise ModelError(f"model {self.path.name} fails on a zero clip of shape "
                             f"{list(_feed_shape(c, 1))} ({c.layout}, T={c.clip_length}, "
                             f"{c.inputs}): {exc}") from exc
        n = scores.shape[1]
        if not c.labels:
            return _replace_labels(c, tuple(f"class_{i}" for i in range(n)))
        if len(c.labels) != n:
            raise ModelError(f"model {self.path.name} has {len(c.labels)} labels "
                             f"({', '.join(c.labels)}) but its output has {n} scores "
                             f"per clip: fix the `labels` metadata or inference.labels")
        return c


def prepare_input(c: ModelContract, frames: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """One clip as the model takes it, with a leading batch axis of 1.

    Public so that training and evaluation tools feed a model exactly as the daemon does.
    """
    t = c.clip_length
    if len(frames) < t or len(flow) < t:
        raise ModelError(f"clip has {min(len(frames), len(flow))} frames but the model "
                         f"takes {t}: set inference.clip_length = 0 (the model's own)")
    parts = []
    if c.inputs != "flow":
        rgb = frames[-t:] if c.colour_order == "bgr" else frames[-t:, ..., ::-1]
        parts.append(_resize_stack(rgb, c.height, c.width).astype(np.float32))
    if c.inputs != "rgb":
        parts.append(_resize_flow(flow[-t:].astype(np.float32), c.height, c.width))
    clip = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]   # T, H, W, C
    scaled = np.subtract(clip, np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)
    if c.layout == "NCTHW":
        x = scaled.transpose(3, 0, 1, 2)
    elif c.layout == "NCHW":
        x = scaled.transpose(0, 3, 1, 2).reshape(-1, *scaled.shape[1:3])
    else:                          # NTCHW, and NT_CHW (run() folds T into the batch)
        x = scaled.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def sample_shape(c: ModelContract) -> tuple[int, ...]:
    """The shape of one make_input clip without its batch axis (0: any size)."""
    t, ch, h, w = c.clip_length, c.channels, c.height, c.width
    return {"NCTHW": (ch, t, h, w), "NTCHW": (t, ch, h, w), "NT_CHW": (t, ch, h, w),
            "NCHW": (t * ch, h, w)}[c.layout]


def read_contract(shape: list, meta: dict[str, str], cfg: InferenceConfig,
                  name: str) -> ModelContract:
    """The contract of a model with input `shape` and metadata `meta`, overridden by cfg."""
    if len(shape) not in (4, 5):
        raise ModelError(f"model {name}: input has rank {len(shape)} {shape}: expected 5 "
                         "(NCTHW, NTCHW clips) or 4 (NT_CHW, NCHW)")
    kind = cfg.input or meta.get("input", "")
    layout = cfg.layout or meta.get("layout", "") or _guess_layout(shape, kind, name)
    _check_choice(layout, MODEL_LAYOUTS, "layout", name)
    if RANKS[layout] != len(shape):
        raise ModelError(f"model {name}: layout {layout} needs a rank-{RANKS[layout]} "
                         f"input, but the input shape is {shape} (rank {len(shape)})")
    kind, t = _input_and_length(shape, layout, meta, cfg, name)
    height = _spatial(shape[-2], meta, "height", name, cfg.height)
    width = _spatial(shape[-1], meta, "width", name, cfg.width)
    colour = cfg.colour_order or meta.get("colour_order", "rgb")
    _check_choice(colour, COLOUR_ORDERS, "colour_order", name)
    activation = cfg.activation or meta.get("activation", "none")
    _check_choice(activation, MODEL_ACTIVATIONS, "activation", name)
    mean = cfg.mean or _floats(meta.get("mean", "0"), "mean", name)
    std = cfg.std or _floats(meta.get("std", "1"), "std", name)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, CHANNELS[kind]):
            raise ModelError(f"model {name}: {key} has {len(values)} values: expected 1 or "
                             f"{CHANNELS[kind]} (one per channel of input {kind})")
    if any(v == 0 for v in std):
        raise ModelError(f"model {name}: std must not be 0 (got {list(std)})")
    labels = cfg.labels or _labels(meta.get("labels", ""), name)
    return ModelContract(tuple(labels), layout, kind, t, height, width, colour,
                         tuple(mean), tuple(std), activation)


def _input_and_length(shape: list, layout: str, meta: dict[str, str], cfg: InferenceConfig,
                      name: str) -> tuple[str, int]:
    """The per-frame input kind and the clip length T, checked against the shape."""
    c_dim = _fixed(shape[{"NCTHW": 1, "NTCHW": 2, "NT_CHW": 1, "NCHW": 1}[layout]])
    kind = cfg.input or meta.get("input", "")
    if not kind and c_dim:
        guess = [k for k, n in CHANNELS.items() if n == c_dim]
        kind = guess[0] if guess else ""
    if not kind:
        raise ModelError(f"model {name}: cannot tell whether input {shape} ({layout}) takes "
                         "rgb, flow or rgb+flow: set metadata `input` or inference.input")
    _check_choice(kind, MODEL_INPUTS, "input", name)
    per_frame = CHANNELS[kind]
    t_shape = {"NCTHW": _fixed(shape[2]), "NTCHW": _fixed(shape[1])}.get(layout, 0)
    if layout == "NCHW" and c_dim:
        if c_dim % per_frame:
            raise ModelError(f"model {name}: input {shape} has {c_dim} channels, not a "
                             f"multiple of {per_frame} ({kind} per frame, layout NCHW)")
        t_shape = c_dim // per_frame
    elif c_dim and c_dim != per_frame:
        raise ModelError(f"model {name}: input {shape} ({layout}) has {c_dim} channels per "
                         f"frame: expected {per_frame} for input {kind}")
    t_meta = _int(meta.get("clip_length", "0"), "clip_length", name)
    if t_shape and t_meta and t_shape != t_meta:
        raise ModelError(f"model {name}: metadata clip_length {t_meta} conflicts with its "
                         f"input shape {shape} ({layout}: T = {t_shape})")
    if t_shape and cfg.clip_length and cfg.clip_length != t_shape:
        raise ModelError(f"clip length conflict: inference.clip_length = {cfg.clip_length}"
                         f" but model {name} takes T = {t_shape} (input {shape}, {layout}); "
                         f"set clip_length = 0 or {t_shape}")
    t = cfg.clip_length or t_shape or t_meta or (1 if layout == "NCHW" else 0)
    if layout == "NT_CHW" and not t and _fixed(shape[0]):
        t = _fixed(shape[0])               # a fixed N*T axis with nothing else said: N = 1
    if not t:
        raise ModelError(f"model {name}: the clip length is not fixed by input {shape} "
                         f"({layout}): set metadata `clip_length` or inference.clip_length")
    return kind, t


def _batch_limits(shape: list, c: ModelContract) -> tuple[int, int]:
    """(max_batch, fixed batch size or 0) from the input's leading axis."""
    lead = _fixed(shape[0])
    if not lead:
        return DYNAMIC_MAX_BATCH, 0
    if c.layout == "NT_CHW":
        if lead % c.clip_length:
            raise ModelError(f"model input {shape} (NT_CHW): leading axis {lead} is not a "
                             f"multiple of the clip length {c.clip_length}")
        lead //= c.clip_length
    return lead, lead


def _guess_layout(shape: list, kind: str, name: str) -> str:
    """NCHW for rank 4; for rank 5 the axis holding the channels (NCTHW when neither
    does, so that the channel check names the mismatch)."""
    if len(shape) == 4:
        return "NCHW"
    wanted = {CHANNELS[kind]} if kind in CHANNELS else set(CHANNELS.values())
    fits = [lay for lay, axis in (("NCTHW", 1), ("NTCHW", 2)) if _fixed(shape[axis]) in wanted]
    if len(fits) > 1:
        raise ModelError(f"model {name}: cannot tell the layout of input {shape}: set "
                         "metadata `layout` or inference.layout (NCTHW or NTCHW)")
    return fits[0] if fits else "NCTHW"


def _check_choice(value: str, choices: tuple[str, ...], key: str, name: str) -> None:
    if value not in choices:
        raise ModelError(f"model {name}: {key} {value!r} is not one of "
                         f"{', '.join(choices)} (metadata `{key}` or inference.{key})")


def _spatial(dim: object, meta: dict[str, str], key: str, name: str, override: int) -> int:
    given = _int(meta.get(key, "0"), key, name)
    if _fixed(dim) and given and given != dim:
        raise ModelError(f"model {name}: metadata {key} {given} conflicts with its input "
                         f"{key} {dim}")
    if _fixed(dim) and override and override != dim:
        raise ModelError(f"model {name}: inference.{key} = {override} conflicts with its "
                         f"input {key} {dim}: set {key} = 0 or {dim}")
    return override or _fixed(dim) or given


def _fixed(dim: object) -> int:
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
        raise ModelError(f"model {name}: metadata {key} must be a number or a list of "
                         f"numbers (got {raw!r})") from exc
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


def _replace_labels(c: ModelContract, labels: tuple[str, ...]) -> ModelContract:
    return ModelContract(labels, c.layout, c.inputs, c.clip_length, c.height, c.width,
                         c.colour_order, c.mean, c.std, c.activation)


def _feed_shape(c: ModelContract, batch: int) -> tuple[int, ...]:
    """A batch of `batch` clips; free spatial sizes take DRY_RUN_SIZE_PX."""
    return (batch, *(d or DRY_RUN_SIZE_PX for d in sample_shape(c)))


def _activate(scores: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    return scores


def _resize_stack(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """T frames (T, h, w, C) resized one by one (cv2 resizes at most 4 channels at once
    with INTER_AREA at non-integer ratios)."""
    t, h, w, ch = clip.shape
    if not height or (h, w) == (height, width):
        return clip
    interpolation = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    out = np.empty((t, height, width, ch), clip.dtype)
    for i in range(t):
        out[i] = cv2.resize(clip[i], (width, height),
                            interpolation=interpolation).reshape(height, width, ch)
    return out


def _resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flows resized, and their vectors rescaled to pixels at the new size."""
    if not height or flow.shape[1:3] == (height, width):
        return flow
    return np.stack([resize_flow(f, width, height) for f in flow])


def _providers(wanted: tuple[str, ...]) -> list[str]:
    available = ort.get_available_providers()
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning("onnxruntime providers %s are not available here (have %s); "
                    "falling back", ", ".join(missing), ", ".join(available))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen
