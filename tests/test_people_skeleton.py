"""The skeleton-classifier contract with a tiny ONNX model made here: it reads the left
wrist's height in the person box over the sequence, so raised hands score 'hands_up'."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from people_tracks import FRAME_SIZE, L_WRIST, Pose, frames

from daemon.config import CameraConfig, PeopleConfig, SkeletonModelConfig
from daemon.people import (
    PHASE_START,
    PeopleEngine,
    PersonEvent,
    SkeletonModelError,
    load_classifier,
    read_skeleton_contract,
)

pytestmark = pytest.mark.timeout(60)

CAMERA = CameraConfig(name="cam", source="test:bars")
SEQUENCE = 5


def tiny_model(path: Path, meta: dict[str, str], length: int | str = SEQUENCE) -> Path:
    """(N, T, 17, 3) -> (N, 2): [mean left-wrist y in the box, 1 - that]: a wrist at the
    hips sits at ~0.5 of the box, one raised above the head near 0."""
    x = helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["N", length, 17, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])
    consts = [
        helper.make_tensor("wrist", TensorProto.INT64, [], [L_WRIST]),
        helper.make_tensor("coord_y", TensorProto.INT64, [], [1]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    nodes = [
        helper.make_node("Gather", ["keypoints", "wrist"], ["w"], axis=2),  # (N, T, 3)
        helper.make_node("Gather", ["w", "coord_y"], ["wy"], axis=2),  # (N, T)
        helper.make_node("ReduceMean", ["wy"], ["low"], axes=[1], keepdims=1),  # (N, 1)
        helper.make_node("Sub", ["one", "low"], ["high"]),
        helper.make_node("Concat", ["low", "high"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


META = {
    "result_kind": "skeleton_scores",
    "labels": json.dumps(["hands_low", "hands_up"]),
    "fps": "5",
}


def run(engine: PeopleEngine, fps: float) -> list[PersonEvent]:
    def poses(t: float) -> list[Pose]:
        return [Pose(wrists={L_WRIST: (0.0, -0.6)} if t >= 3.0 else {})]

    events: list[PersonEvent] = []
    t = 0.0
    for t, persons in frames(poses, 6.0, fps):
        events += engine.update(persons, t).events
    return events + engine.close(t)


@pytest.mark.parametrize("fps", [5.0, 12.5])
def test_a_skeleton_model_makes_events_beside_the_rules(tmp_path: Path, fps: float) -> None:
    model = tiny_model(tmp_path / "tiny.onnx", META)
    cfg = SkeletonModelConfig(model=str(model), threshold=0.7)
    people = dataclasses.replace(PeopleConfig(), classifiers=(cfg,))
    engine = PeopleEngine(CAMERA, people, FRAME_SIZE)  # opens the model from the config
    assert engine.actions[-2:] == ("hands_low", "hands_up")
    starts = [(e.action, e.t_s) for e in run(engine, fps) if e.phase == PHASE_START]
    # The rule and the model both see the raised hand; only 'hands_up' passes 0.7.
    assert [a for a, _ in starts] == ["hand_raised", "hands_up"]
    # The model's 5 samples at 5 fps span 0.8 s: most of them are raised by ~3.4 s.
    assert 3.0 <= starts[1][1] <= 3.8


def test_ignored_labels_make_no_events(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny.onnx", META)
    classifier = load_classifier(
        SkeletonModelConfig(model=str(model), threshold=0.0, ignore=("hands_low",))
    )
    assert classifier.actions == ("hands_up",)
    people = dataclasses.replace(PeopleConfig(), actions=())
    events = run(PeopleEngine(CAMERA, people, FRAME_SIZE, classifiers=[classifier]), 5.0)
    assert {e.action for e in events} == {"hands_up"}


@pytest.mark.parametrize(
    ("meta", "shape", "message"),
    [
        ({**META, "result_kind": "clip_scores"}, ["N", 5, 17, 3], "result_kind"),
        (META, ["N", 5, 33, 3], r"\(N, T, 17, 3\)"),
        ({**META, "labels": ""}, ["N", 5, 17, 3], "labels"),
        ({k: v for k, v in META.items() if k != "fps"}, ["N", 5, 17, 3], "fps"),
        (META, ["N", "T", 17, 3], "sequence_length"),
        ({**META, "activation": "relu"}, ["N", 5, 17, 3], "activation"),
    ],
)
def test_contract_errors_name_the_problem(
    meta: dict[str, str], shape: list[object], message: str
) -> None:
    with pytest.raises(SkeletonModelError, match=message):
        read_skeleton_contract(shape, meta, "m.onnx")


def test_free_sequence_length_comes_from_metadata(tmp_path: Path) -> None:
    contract = read_skeleton_contract(["N", "T", 17, 3], {**META, "sequence_length": "8"}, "m")
    assert (contract.sequence_length, contract.fps, contract.span_s) == (8, 5.0, 1.4)


def test_labels_clashing_with_rules_and_bad_files_are_refused(tmp_path: Path) -> None:
    clash = tiny_model(tmp_path / "c.onnx", {**META, "labels": "fall,hands_up"})
    classifier = load_classifier(SkeletonModelConfig(model=str(clash)))
    with pytest.raises(ValueError, match="fall"):
        PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[classifier])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(SkeletonModelError, match="cannot be loaded"):
        load_classifier(SkeletonModelConfig(model=str(junk)))


def test_sequence_is_normalised_to_the_box(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny.onnx", META)
    classifier = load_classifier(SkeletonModelConfig(model=str(model), threshold=0.0))
    engine = PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[classifier])
    for t, persons in frames(lambda t: [Pose(x=200, height=150)], 2.0, 5.0):
        update = engine.update(persons, t)
    (track,) = (tr for tr in update.tracks if tr.confirmed)
    scores = classifier.scores(list(track.history))
    # The box runs from 0.05 above the head (at -0.95) to 0.05 below the feet; the
    # hanging wrist is at -0.5: (1.0 - 0.5) / 1.05 of the box, whatever its size.
    assert scores["hands_low"] == pytest.approx(0.5 / 1.05, abs=1e-3)
    assert np.isclose(scores["hands_low"] + scores["hands_up"], 1.0)
