"""An ONNX action model behind onnxruntime: loading, providers, input preparation, runs.

The model's contract (what it takes and answers) is read by daemon.stages.contract.
Clips arrive as T frames (uint8 BGR) and T flows at motion size; `make_input` turns one
clip into a (1, ...) tensor, or writes it into one row of a batch buffer; `run` takes N
of them stacked on axis 0.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np
import onnxruntime as ort

from daemon.config import Config, InferenceConfig, ModelFacts, MotionConfig, model_facts
from daemon.stages.contract import InputShape, ModelContract, ModelError, fixed_dim, read_contract
from daemon.stages.flow import resize_flow
from daemon.stages.records import CLIP_SCORES

log = logging.getLogger(__name__)

DYNAMIC_MAX_BATCH = 8  # clips per run when the model's batch dimension is free
DRY_RUN_SIZE_PX = 64  # input size of the load-time check where the model leaves it free
_INPUT_TYPES = MappingProxyType({"tensor(float)": np.float32, "tensor(float16)": np.float16})


class ActionModel:
    """An onnxruntime session plus its contract, checked by one dry run at load."""

    def __init__(self, cfg: InferenceConfig, model_path: str) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(
                f"model file not found: {self.path} (set inference.model to "
                'an .onnx file, or "" for the bundled demo model)'
            )
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = cfg.threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(self.path), options, providers=_providers(cfg.providers)
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise ModelError(
                f"model {self.path}: cannot be loaded (not a valid ONNX model?): {exc}"
            ) from exc
        self.providers = tuple(self.session.get_providers())
        log.info("model %s: providers in use %s", self.path.name, ", ".join(self.providers))
        spec = self._input_spec()
        self.input_name, shape = spec.name, list(spec.shape)
        self._dtype = _INPUT_TYPES[spec.type]
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.contract = read_contract(shape, meta, cfg, self.path.name)
        if self.contract.result_kind != CLIP_SCORES:
            # The record, drawing and events of other kinds exist; their decoders come
            # with the first model that answers them.
            raise ModelError(
                f"model {self.path.name}: result_kind "
                f"{self.contract.result_kind!r}: this runner decodes "
                f"{CLIP_SCORES} models only"
            )
        limit, self._fixed_batch = _batch_limits(shape, self.contract)
        self.max_batch = _chosen_batch(cfg.max_batch, limit, self._fixed_batch, self.path.name)
        self.contract = self._check_output(self.contract)

    def make_input(
        self, frames: np.ndarray | None, flow: np.ndarray | None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """(1, ...) model input from T frames (T,h,w,3 uint8 BGR) and flows (T,h,w,2), or
        that input without its batch axis written into `out` (see prepare_input); the
        kind the model does not take may be None."""
        return prepare_input(self.contract, frames, flow, out)

    def facts(self, config: Config) -> ModelFacts:
        """What this model dictates to a pipeline run with `config` (daemon.config.rules:
        clips at its input size, or the motion size where it leaves its size free)."""
        c = self.contract
        return model_facts(
            config, self.path.name, c.labels, c.clip_length, c.inputs, c.width, c.height
        )

    def clip_size(self, motion: MotionConfig) -> tuple[int, int]:
        """(width, height) of the clips made for this model (see `facts`)."""
        return self.facts(Config(motion=motion)).clip_size

    def input_shape(self, height: int, width: int) -> tuple[int, ...]:
        """One clip's input shape (no batch axis) for clips of height x width pixels."""
        return sample_shape(self.contract, height, width)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores (N, labels) float32 for N inputs from make_input stacked on axis 0."""
        expected = sample_shape(self.contract)
        if batch.ndim != len(expected) + 1 or any(
            e and e != d for e, d in zip(expected, batch.shape[1:], strict=True)
        ):
            raise ModelError(
                f"model {self.path.name}: batch of shape {list(batch.shape)} "
                f"does not fit (N, {', '.join(map(str, expected))})"
            )
        parts = [
            self._run_chunk(batch[i : i + self.max_batch])
            for i in range(0, batch.shape[0], self.max_batch)
        ]
        return _activate(np.concatenate(parts), self.contract.activation)

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if self._fixed_batch and n < self._fixed_batch:  # pad up to the fixed batch size
            x = np.concatenate([x, np.zeros((self._fixed_batch - n, *x.shape[1:]), x.dtype)])
        rows = x.shape[0]
        if self.contract.layout == "NT_CHW":
            x = x.reshape(rows * x.shape[1], *x.shape[2:])
        (raw,) = self.session.run(None, {self.input_name: x.astype(self._dtype, copy=False)})[:1]
        out = np.asarray(raw, dtype=np.float32)
        t = self.contract.clip_length
        if self.contract.layout == "NT_CHW" and t > 1 and out.shape[0] == rows * t:
            out = out.reshape(rows, t, -1).mean(axis=1)  # per-frame scores: average (TSM)
        if out.size % rows:
            raise ModelError(
                f"model {self.path.name}: output shape {list(out.shape)} does "
                f"not split into {rows} rows of scores"
            )
        return out.reshape(rows, -1)[:n]

    def _input_spec(self) -> ort.NodeArg:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"model {self.path.name} has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}): actiond feeds one "
                "tensor (put rgb and flow on the channel axis: input rgb+flow)"
            )
        if inputs[0].type not in _INPUT_TYPES:
            raise ModelError(
                f"model {self.path.name}: input {inputs[0].name!r} is "
                f"{inputs[0].type}: expected tensor(float) or tensor(float16)"
            )
        return inputs[0]

    def _check_output(self, c: ModelContract) -> ModelContract:
        try:
            scores = self.run(np.zeros(_feed_shape(c, batch=1), np.float32))
        except ModelError:
            raise
        except Exception as exc:  # onnxruntime's runtime errors have no common base class
            raise ModelError(
                f"model {self.path.name} fails on a zero clip of shape "
                f"{list(_feed_shape(c, 1))} ({c.layout}, T={c.clip_length}, "
                f"{c.inputs}): {exc}"
            ) from exc
        n = scores.shape[1]
        if not c.labels:
            return dataclasses.replace(c, labels=tuple(f"class_{i}" for i in range(n)))
        if len(c.labels) != n:
            raise ModelError(
                f"model {self.path.name} has {len(c.labels)} labels "
                f"({', '.join(c.labels)}) but its output has {n} scores "
                f"per clip: fix the `labels` metadata or inference.labels"
            )
        return c


def prepare_input(
    c: ModelContract,
    frames: np.ndarray | None,
    flow: np.ndarray | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """One clip as the model takes it: a new array with a leading batch axis of 1, or
    written into `out` (one row of a batch buffer, shaped `sample_shape`) and `out`.

    `frames` or `flow` may be None when the model does not take them (clips carry only
    what the model takes). Each input kind is converted to float32 straight into the
    output's (T, H, W, C) view and scaled in place: no intermediate clip is made, so a
    batch costs one pass over it. Public so that training and evaluation tools feed a
    model exactly as the daemon does.
    """
    rgb = flows = None
    if c.inputs != "flow":
        rgb = _newest(frames, "frames", c)
        rgb = rgb if c.colour_order == "bgr" else rgb[..., ::-1]
        rgb = _resize_stack(rgb, c.height, c.width)
    if c.inputs != "rgb":
        flows = _resize_flow(_newest(flow, "flows", c), c.height, c.width)
    stack = rgb if rgb is not None else flows
    assert stack is not None, f"a model's input is rgb, flow or both, not {c.inputs!r}"
    height, width = stack.shape[1:3]
    shape = sample_shape(c, height, width)
    if out is None:
        return _fill(c, np.empty(shape, np.float32), rgb, flows)[None]
    if out.shape != shape or out.dtype != np.float32:
        raise ModelError(
            f"clip input of shape {list(shape)} does not fit a batch row of "
            f"shape {list(out.shape)} ({out.dtype})"
        )
    return _fill(c, out, rgb, flows)


def _newest(stack: np.ndarray | None, what: str, c: ModelContract) -> np.ndarray:
    """The last T entries of a clip's frames or flows, checked."""
    t = c.clip_length
    if stack is None:
        raise ModelError(f"clip has no {what} but the model takes input {c.inputs}")
    if len(stack) < t:
        raise ModelError(
            f"clip has {len(stack)} frames but the model takes {t}: set "
            "inference.clip_length = 0 (the model's own)"
        )
    return stack[-t:]


def _fill(
    c: ModelContract, x: np.ndarray, rgb: np.ndarray | None, flows: np.ndarray | None
) -> np.ndarray:
    """Write colour then flow channels into `x` (one clip, C-contiguous); (x - mean) / std."""
    view = _thwc_view(c, x)
    channel = 0
    if rgb is not None:
        np.copyto(view[..., :3], rgb)
        channel = 3
    if flows is not None:
        np.copyto(view[..., channel:], flows)
    # One value for every channel: scale the contiguous array, which is faster.
    target = x if len(c.mean) == 1 and len(c.std) == 1 else view
    if any(m != 0 for m in c.mean):
        np.subtract(target, np.asarray(c.mean, np.float32), out=target)
    if any(s != 1 for s in c.std):
        np.divide(target, np.asarray(c.std, np.float32), out=target)
    return x


def _thwc_view(c: ModelContract, x: np.ndarray) -> np.ndarray:
    """One clip's input array seen as (T, H, W, C), whatever the layout."""
    if c.layout == "NCTHW":
        return np.transpose(x, (1, 2, 3, 0))
    if c.layout == "NCHW":  # time-major channels: (T*C, H, W) is (T, C, H, W)
        return np.transpose(x.reshape(c.clip_length, c.channels, *x.shape[1:]), (0, 2, 3, 1))
    return np.transpose(x, (0, 2, 3, 1))  # NTCHW, and NT_CHW (run() folds T into the batch)


def sample_shape(c: ModelContract, height: int = 0, width: int = 0) -> tuple[int, ...]:
    """The shape of one make_input clip without its batch axis; sizes the model leaves
    free take `height` and `width` (0: any size)."""
    t, ch, h, w = c.clip_length, c.channels, c.height or height, c.width or width
    return {
        "NCTHW": (ch, t, h, w),
        "NTCHW": (t, ch, h, w),
        "NT_CHW": (t, ch, h, w),
        "NCHW": (t * ch, h, w),
    }[c.layout]


def _batch_limits(shape: InputShape, c: ModelContract) -> tuple[int, int]:
    """(max_batch, fixed batch size or 0) from the input's leading axis."""
    lead = fixed_dim(shape[0])
    if not lead:
        return DYNAMIC_MAX_BATCH, 0
    if c.layout == "NT_CHW":
        if lead % c.clip_length:
            raise ModelError(
                f"model input {shape} (NT_CHW): leading axis {lead} is not a "
                f"multiple of the clip length {c.clip_length}"
            )
        lead //= c.clip_length
    return lead, lead


def _chosen_batch(wanted: int, limit: int, fixed: int, name: str) -> int:
    """Clips per run: inference.max_batch, or the model's limit when it is 0."""
    if not wanted:
        return limit
    if fixed and wanted > fixed:
        raise ModelError(
            f"inference.max_batch = {wanted}, but model {name} takes batches "
            f"of exactly {fixed}: set max_batch = 0 or at most {fixed}"
        )
    return wanted


def _feed_shape(c: ModelContract, batch: int) -> tuple[int, ...]:
    """A batch of `batch` clips; free spatial sizes take DRY_RUN_SIZE_PX."""
    return (batch, *(d or DRY_RUN_SIZE_PX for d in sample_shape(c)))


def _activate(scores: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)
    if activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-scores)), dtype=np.float32)
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
        out[i] = cv2.resize(clip[i], (width, height), interpolation=interpolation).reshape(
            height, width, ch
        )
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
        log.warning(
            "onnxruntime providers %s are not available here (have %s); falling back",
            ", ".join(missing),
            ", ".join(available),
        )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen
