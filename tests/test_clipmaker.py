"""Clips for inference: which frames make one, at what size, when one is due (ClipMaker),
and what a clip record carries (records.clip_record)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.config import Config, InferenceConfig, facts_without_model
from daemon.stages import records
from daemon.stages.clipmaker import ClipMaker

pytestmark = pytest.mark.timeout(30)
W, H = 8, 6


def frame(value: int, size: tuple[int, int] = (W, H)) -> tuple[np.ndarray, np.ndarray]:
    width, height = size
    return (
        np.full((height, width, 3), value, np.uint8),
        np.full((height, width, 2), value, np.float32),
    )


def test_a_clip_is_due_every_stride_frames_once_length_are_in() -> None:
    maker = ClipMaker(length=4, stride=2, width=W, height=H)
    due = [maker.push(*frame(i)) for i in range(10)]
    assert [i for i, d in enumerate(due) if d] == [3, 5, 7, 9]
    frames, flows = maker.clip()
    assert frames.shape == (4, H, W, 3) and flows.shape == (4, H, W, 2)
    assert list(frames[:, 0, 0, 0]) == [6, 7, 8, 9], "the newest frames, oldest first"


def test_frames_are_resized_to_the_clip_and_flow_vectors_rescaled() -> None:
    maker = ClipMaker(length=1, stride=1, width=W, height=H)
    assert maker.push(*frame(5, (2 * W, 2 * H)))
    frames, flows = maker.clip()
    assert frames.shape == (1, H, W, 3) and flows.dtype == np.float32
    np.testing.assert_allclose(flows, 2.5)  # half the size: half the pixels per frame


def test_kept_frames_do_not_alias_the_callers_arrays() -> None:
    # The motion stage passes a ring slot's view, reused once released: a frame already
    # at the clip size must be copied, not kept as that view.
    maker = ClipMaker(length=2, stride=1, width=W, height=H)
    slot, flow = frame(1)
    maker.push(slot, flow)
    slot[...], flow[...] = 200, 200.0  # the slot is reused for a newer frame
    maker.push(*frame(2))
    frames, flows = maker.clip()
    assert list(frames[:, 0, 0, 0]) == [1, 2]
    assert list(flows[:, 0, 0, 0]) == [1.0, 2.0]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("rgb", ["frames"]),
        ("flow", ["flow"]),
        ("rgb+flow", ["frames", "flow"]),
        ("", ["frames", "flow"]),
    ],
)
def test_clip_records_carry_only_what_the_model_takes(kind: str, fields: list[str]) -> None:
    # An RGB model at 224 x 224 would otherwise carry 6.4 MB of unused flow per clip.
    config = Config(inference=InferenceConfig(input=kind, clip_length=16, width=224, height=224))
    record = records.clip_record(facts_without_model(config))
    assert [name for name, _, _ in record.fields] == fields
    sizes = {"frames": 16 * 224 * 224 * 3, "flow": 16 * 224 * 224 * 2 * 4}
    assert record.nbytes >= sum(sizes[f] for f in fields)
    assert record.nbytes < sum(sizes[f] for f in fields) + 64 * len(fields)
