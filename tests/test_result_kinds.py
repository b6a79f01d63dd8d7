"""Result kinds: what a model's result holds (clip scores; per-frame detections with boxes
and keypoints) is declared by its contract, and records, drawing and eventing dispatch
on it through one table each."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.config import InferenceConfig
from daemon.stages import records
from daemon.stages.contract import ModelError, read_contract
from daemon.stages.draw import RESULT_DRAWERS, draw_overlay, draw_result
from daemon.stages.eventing import EVENT_SCORES, event_scores
from daemon.stages.records import (
    CLIP_SCORES,
    DETECTIONS,
    MAX_DETECTIONS,
    RESULT_RECORDS,
    ResultSpec,
)

LABELS = ("person", "dog", "cat")
KEYPOINTS = 17
CLIP_SHAPE = [1, 3, 8, 64, 64]  # NCTHW


def detections(spec: ResultSpec) -> records.Result:
    """Two detections, read back from a result slot: a person at the left with its
    keypoints, a cat at the right."""
    record = records.result_record(spec)
    slot = np.zeros(record.nbytes, np.uint8)
    views = record.views(slot)
    views["count"][0] = 2
    views["boxes"][:2] = [[0.1, 0.1, 0.4, 0.9], [0.6, 0.5, 0.9, 0.9]]
    views["scores"][:2] = [0.8, 0.6]
    views["classes"][:2] = [0, 2]
    views["keypoints"][0, :, :2] = 0.2
    views["keypoints"][0, :, 2] = 0.9
    return records.read_result(record, slot)


def test_every_result_kind_has_a_record_a_drawer_and_event_scores() -> None:
    assert (
        set(RESULT_RECORDS) == set(RESULT_DRAWERS) == set(EVENT_SCORES) == {CLIP_SCORES, DETECTIONS}
    )


def test_the_results_record_is_sized_by_the_kind_not_the_label_count() -> None:
    scores = records.result_record(ResultSpec(CLIP_SCORES, LABELS))
    assert scores.fields == (("scores", (3,), "float32"),)
    boxes = records.result_record(ResultSpec(DETECTIONS, LABELS, keypoints=KEYPOINTS))
    assert {n: s for n, s, _ in boxes.fields} == {
        "count": (1,),
        "boxes": (MAX_DETECTIONS, 4),
        "scores": (MAX_DETECTIONS,),
        "classes": (MAX_DETECTIONS,),
        "keypoints": (MAX_DETECTIONS, KEYPOINTS, 3),
    }
    without = records.result_record(ResultSpec(DETECTIONS, LABELS, max_detections=4))
    assert "keypoints" not in {n: s for n, s, _ in without.fields}
    assert boxes.nbytes > without.nbytes > scores.nbytes


def test_detections_give_a_label_events_and_a_drawing() -> None:
    spec = ResultSpec(DETECTIONS, LABELS, keypoints=KEYPOINTS)
    result = detections(spec)
    assert records.top_label(spec, result) == ("person", pytest.approx(0.8))
    assert event_scores(spec, result).tolist() == pytest.approx([0.8, 0.0, 0.6])
    frame = np.zeros((100, 200, 3), np.uint8)
    image = draw_overlay(frame, None, "", 0.0, 0.0)
    draw_result(image, spec, result)
    assert image[10:90, 20].any() and image[50:90, 120].any(), "box edges not drawn"
    assert image[20, 40].any(), "keypoint not drawn"
    assert not image[5, 190].any(), "drew outside the boxes"


def test_clip_scores_draw_as_the_labelled_overlay_did() -> None:
    spec = ResultSpec(CLIP_SCORES, LABELS)
    result = {"scores": np.array([0.1, 0.7, 0.2], np.float32)}
    frame = np.full((120, 160, 3), 40, np.uint8)
    image = draw_overlay(frame, None, "", 0.0, 0.0)
    draw_result(image, spec, result)
    assert np.array_equal(image, draw_overlay(frame, None, "dog", 0.7, 0.0))
    assert event_scores(spec, result) is result["scores"]


def test_the_contract_declares_the_result_kind() -> None:
    cfg = InferenceConfig()
    plain = read_contract(CLIP_SHAPE, {"input": "rgb"}, cfg, "m.onnx")
    assert plain.result == ResultSpec(CLIP_SCORES, ())
    meta = {
        "input": "rgb",
        "labels": "person",
        "result_kind": "detections",
        "max_detections": "10",
        "keypoints": "17",
    }
    poses = read_contract(CLIP_SHAPE, meta, cfg, "pose.onnx")
    assert poses.result == ResultSpec(DETECTIONS, ("person",), 10, 17)
    with pytest.raises(ModelError, match="result_kind 'masks' is not one of clip_scores"):
        read_contract(CLIP_SHAPE, {"input": "rgb", "result_kind": "masks"}, cfg, "m.onnx")
