"""The packed record layouts that travel between stages (one place, so the supervisor
sizes each ring from the same definition the stages read it with).

Results have a *kind*, declared by the model contract (`result_kind`): what one result
record holds. RESULT_RECORDS maps each kind to its layout and to the top label a frame
shows for it; drawing (daemon.stages.draw) and eventing (daemon.stages.eventing) keep
their own tables keyed by the same names. A new kind is one entry in each table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from daemon.config import CameraConfig, Config, ModelFacts
from daemon.ipc.packed import PackedSpec


def view_record(cam: CameraConfig, config: Config) -> PackedSpec:
    """motion -> overlay: the camera frame and its flow."""
    m = config.motion
    return PackedSpec(
        (
            ("frame", (cam.height, cam.width, 3), "uint8"),
            ("flow", (m.height, m.width, 2), "float32"),
        )
    )


def analysis_record(frame_bytes: int) -> PackedSpec:
    """gate -> detect (one ring for every person camera): `info` = (width, height, tiled:
    the camera's tiled_detection, 0 or 1), then
    the frame's BGR bytes, in a slot as large as the largest camera's frame."""
    return PackedSpec((("info", (3,), "int32"), ("frame", (frame_bytes,), "uint8")))


def analysis_frame_bytes(cams: tuple[CameraConfig, ...]) -> int:
    """The largest BGR frame of these cameras, in bytes."""
    return max(c.width * c.height * 3 for c in cams)


def analysis_record_of(slot_bytes: int) -> PackedSpec:
    """The analysis record of a ring whose slots hold `slot_bytes` (what a consumer reads
    from the ring, without knowing which cameras feed it)."""
    offset = analysis_record(1).offsets["frame"]
    return analysis_record(slot_bytes - offset)


def clip_record(facts: ModelFacts) -> PackedSpec:
    """motion -> infer: the last T frames and/or flows, already at the model's input size
    (resizing once per frame in motion costs far less than per clip in infer).

    Only what the model takes (facts.inputs): an RGB model at 224 x 224 would otherwise
    carry 6.4 MB of unused flow in every 8.8 MB clip.
    """
    (w, h), t = facts.clip_size, facts.clip_length
    kind = facts.inputs  # "" (facts without a model, e.g. in tools): both
    fields = []
    if kind != "flow":
        fields.append(("frames", (t, h, w, 3), "uint8"))
    if kind != "rgb":
        fields.append(("flow", (t, h, w, 2), "float32"))
    return PackedSpec(tuple(fields))


CLIP_SCORES = "clip_scores"  # one score per label for the clip ending at the frame id
DETECTIONS = "detections"  # per frame: up to max_detections boxes, scores, classes,
# and optionally keypoints per box
MAX_DETECTIONS = 32  # detections per frame a record has room for
KEYPOINT_VALUES = 3  # x, y, score per keypoint
BOX_VALUES = 4  # x0, y0, x1, y1, as shares of the frame's width/height

Result = dict[str, np.ndarray]  # a result record's fields, copied out of its slot
PERSON_LABELS = ("person",)  # the person pipeline's one class
COCO_KEYPOINTS = 17  # the pose model's keypoints per person (COCO order)


@dataclass(frozen=True)
class ResultSpec:
    """What one result of a model holds: its kind and that kind's sizes."""

    kind: str = CLIP_SCORES
    labels: tuple[str, ...] = ()
    max_detections: int = MAX_DETECTIONS  # detections only
    keypoints: int = 0  # detections only: keypoints per box (0: none)


def person_result(config: Config) -> ResultSpec:
    """What the person pipeline's results hold: up to perception.max_people people, each
    a box, a score and 17 keypoints (shares of the frame's width/height)."""
    return ResultSpec(DETECTIONS, PERSON_LABELS, config.perception.max_people, COCO_KEYPOINTS)


def feeds_people(spec: ResultSpec) -> bool:
    """Whether results of this kind go to the people engine (tracks, person actions):
    detections with the 17 COCO keypoints per box, as the person pipeline makes."""
    return spec.kind == DETECTIONS and spec.keypoints == COCO_KEYPOINTS


def _clip_scores_record(spec: ResultSpec) -> PackedSpec:
    return PackedSpec((("scores", (len(spec.labels),), "float32"),))


def _detections_record(spec: ResultSpec) -> PackedSpec:
    n = spec.max_detections
    fields: list[tuple[str, tuple[int, ...], str]] = [
        ("count", (1,), "int32"),
        ("boxes", (n, BOX_VALUES), "float32"),
        ("scores", (n,), "float32"),
        ("classes", (n,), "int32"),
    ]
    if spec.keypoints:
        fields.append(("keypoints", (n, spec.keypoints, KEYPOINT_VALUES), "float32"))
    return PackedSpec(tuple(fields))


def _clip_scores_top(result: Result, labels: tuple[str, ...]) -> tuple[str, float]:
    scores = result["scores"]
    if not len(scores):
        return "", 0.0
    i = int(np.argmax(scores))
    return labels[i], float(scores[i])


def _detections_top(result: Result, labels: tuple[str, ...]) -> tuple[str, float]:
    n = detection_count(result)
    if not n:
        return "", 0.0
    i = int(np.argmax(result["scores"][:n]))
    cls = int(result["classes"][i])
    return (labels[cls] if 0 <= cls < len(labels) else "", float(result["scores"][i]))


def detection_count(result: Result) -> int:
    """How many of a detections record's rows hold a detection."""
    return int(np.clip(result["count"][0], 0, len(result["scores"])))


KEYPOINT_SURE = 0.3  # a keypoint scored at least this is counted in the frame log


def people_seen(result: Result | None) -> list[int]:
    """Per detection of a result with keypoints, its keypoints scored >= KEYPOINT_SURE
    (for the frame log); [] for other results."""
    if result is None or "keypoints" not in result:
        return []
    n = detection_count(result)
    return [int(v) for v in (result["keypoints"][:n, :, 2] >= KEYPOINT_SURE).sum(axis=1)]


@dataclass(frozen=True)
class ResultRecord:
    """One result kind's record: its layout and the label a frame shows for it."""

    layout: Callable[[ResultSpec], PackedSpec]
    top: Callable[[Result, tuple[str, ...]], tuple[str, float]]


RESULT_RECORDS: Mapping[str, ResultRecord] = MappingProxyType(
    {
        CLIP_SCORES: ResultRecord(_clip_scores_record, _clip_scores_top),
        DETECTIONS: ResultRecord(_detections_record, _detections_top),
    }
)
RESULT_KINDS = tuple(RESULT_RECORDS)


def result_record(spec: ResultSpec) -> PackedSpec:
    """infer -> overlay: one result of the model (see RESULT_RECORDS)."""
    return RESULT_RECORDS[spec.kind].layout(spec)


def top_label(spec: ResultSpec, result: Result | None) -> tuple[str, float]:
    """The label (and its score) a frame shows for `result`; ("", 0.0) for none."""
    if result is None:
        return "", 0.0
    return RESULT_RECORDS[spec.kind].top(result, spec.labels)


def write_result(record: PackedSpec, slot: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
    """Write a model's result fields (e.g. {"scores": row}) into a result slot."""
    views = record.views(slot)
    for name, value in fields.items():
        views[name][...] = value


def read_result(record: PackedSpec, slot: np.ndarray) -> Result:
    """A copy of a result slot's fields (the slot is reused once released)."""
    return {name: view.copy() for name, view in record.views(slot).items()}
