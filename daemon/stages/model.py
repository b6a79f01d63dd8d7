"""An ONNX action model behind onnxruntime: loading, providers, and its input contract.

The contract is read from the model file (input shape, metadata_props `labels`, `layout`,
`input`, `mean`, `std`) with config overrides. Clips arrive as T frames (uint8 BGR) and T
flows at motion size; `make_input` turns them into the tensor the model takes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from daemon.config import InferenceConfig

log = logging.getLogger(__name__)

LAYOUTS = ("NCTHW", "NTCHW", "NCHW")
INPUT_KINDS = {"rgb": 3, "flow": 2, "rgb+flow": 5}


class ModelError(Exception):
    """A model that cannot be loaded or does not fit the contract."""


@dataclass(frozen=True)
class ModelContract:
    """What the model takes and what it answers."""

    labels: tuple[str, ...]
    layout: str
    inputs: str            # rgb | flow | rgb+flow
    clip_length: int
    height: int
    width: int
    mean: float = 0.0
    std: float = 1.0


class ActionModel:
    """An onnxruntime session plus its contract."""

    def __init__(self, cfg: InferenceConfig, model_path: str) -> None:
        self.path = Path(model_path)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = cfg.threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=_providers(cfg.providers))
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise ModelError(f"model {self.path}: cannot be loaded: {exc}") from exc
        self.providers = tuple(self.session.get_providers())
        log.info("model %s: providers in use %s", self.path.name, ", ".join(self.providers))
        self.input_name = self.session.get_inputs()[0].name
        self.contract = _read_contract(self.session, cfg)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores (N, labels) for an input batch made by make_input."""
        (out,) = self.session.run(None, {self.input_name: batch})[:1]
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[0], -1)

    def make_input(self, frames: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """(1, ...) model input from T frames (T,h,w,3 uint8 BGR) and flows (T,h,w,2)."""
        c = self.contract
        frames, flow = frames[-c.clip_length:], flow[-c.clip_length:]
        parts = []
        if "rgb" in c.inputs:
            rgb = frames[..., ::-1].astype(np.float32)
            parts.append((_resize(rgb, c) - c.mean) / c.std)
        if "flow" in c.inputs:
            parts.append(_resize(flow.astype(np.float32), c))
        clip = np.concatenate(parts, axis=-1)          # T, H, W, C
        if c.layout == "NCTHW":
            x = clip.transpose(3, 0, 1, 2)[None]
        elif c.layout == "NTCHW":
            x = clip.transpose(0, 3, 1, 2)[None]
        else:                                          # NCHW: the newest frame only
            x = clip[-1].transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, dtype=np.float32)


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


def _read_contract(session: ort.InferenceSession, cfg: InferenceConfig) -> ModelContract:
    meta = session.get_modelmeta().custom_metadata_map
    shape = session.get_inputs()[0].shape
    if len(shape) not in (4, 5):
        raise ModelError(f"model input has rank {len(shape)} {shape}: expected 5 "
                         "(NCTHW or NTCHW clips) or 4 (NCHW frames)")
    layout = meta.get("layout") or ("NCHW" if len(shape) == 4 else _guess_layout(shape))
    if layout not in LAYOUTS or (layout == "NCHW") != (len(shape) == 4):
        raise ModelError(f"model layout {layout!r} does not fit its input shape {shape}")
    c_axis = {"NCTHW": 1, "NTCHW": 2, "NCHW": 1}[layout]
    channels = shape[c_axis]
    kind = meta.get("input") or next((k for k, n in INPUT_KINDS.items() if n == channels), "")
    if kind not in INPUT_KINDS or (isinstance(channels, int) and INPUT_KINDS[kind] != channels):
        raise ModelError(f"model input has {channels} channels: expected 3 (rgb), 2 (flow) "
                         "or 5 (rgb+flow), or set metadata `input`")
    t_axis = {"NCTHW": 2, "NTCHW": 1}.get(layout)
    t = _dim(shape[t_axis], cfg.clip_length or 8) if t_axis else 1
    h, w = _dim(shape[-2], 0), _dim(shape[-1], 0)
    labels = _labels(meta.get("labels", ""), session)
    return ModelContract(labels, layout, kind, t, h, w,
                         float(meta.get("mean", 0.0)), float(meta.get("std", 1.0)))


def _guess_layout(shape: list) -> str:
    return "NCTHW" if shape[1] in (2, 3, 5) else "NTCHW"


def _dim(value: object, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


def _labels(raw: str, session: ort.InferenceSession) -> tuple[str, ...]:
    if raw.strip().startswith("["):
        return tuple(json.loads(raw))
    if raw:
        return tuple(s.strip() for s in raw.split(","))
    n = session.get_outputs()[0].shape[-1]
    return tuple(f"class_{i}" for i in range(n if isinstance(n, int) else 0))


def _resize(clip: np.ndarray, c: ModelContract) -> np.ndarray:
    if not c.height or clip.shape[1:3] == (c.height, c.width):
        return clip
    return np.stack([cv2.resize(f, (c.width, c.height)) for f in clip])
