"""The packed record layouts that travel between stages (one place, so the supervisor
sizes each ring from the same definition the stages read it with)."""

from __future__ import annotations

from daemon.config import CameraConfig, Config
from daemon.ipc.packed import PackedSpec

DEFAULT_CLIP_LENGTH = 8


def clip_length(config: Config) -> int:
    return config.inference.clip_length or DEFAULT_CLIP_LENGTH


def view_record(cam: CameraConfig, config: Config) -> PackedSpec:
    """motion -> overlay: the camera frame and its flow."""
    m = config.motion
    return PackedSpec((("frame", (cam.height, cam.width, 3), "uint8"),
                       ("flow", (m.height, m.width, 2), "float32")))


def clip_size(config: Config) -> tuple[int, int]:
    """(width, height) of clips: the model's input size (boot fills it in), else motion's."""
    i, m = config.inference, config.motion
    return i.width or m.width, i.height or m.height


def clip_record(config: Config) -> PackedSpec:
    """motion -> infer: the last T frames and/or flows, already at the model's input size
    (resizing once per frame in motion costs far less than per clip in infer).

    Only what the model takes (inference.input, which boot sets to the model's): an RGB
    model at 224 x 224 would otherwise carry 6.4 MB of unused flow in every 8.8 MB clip.
    """
    (w, h), t = clip_size(config), clip_length(config)
    kind = config.inference.input     # "" (not set by boot, e.g. in tools): both
    fields = []
    if kind != "flow":
        fields.append(("frames", (t, h, w, 3), "uint8"))
    if kind != "rgb":
        fields.append(("flow", (t, h, w, 2), "float32"))
    return PackedSpec(tuple(fields))


def result_record(num_labels: int) -> PackedSpec:
    """infer -> overlay: one score per label for the clip ending at the frame id."""
    return PackedSpec((("scores", (num_labels,), "float32"),))
