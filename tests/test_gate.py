"""The gate's decision (daemon.stages.gate) on constructed frames and capture times."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.stages.gate import Gate, GateSettings

pytestmark = pytest.mark.timeout(30)

MS = 1_000_000  # ns
FRAME_MS = 40  # a 25 fps stream


def scene(box_x: int | None) -> np.ndarray:
    """A textured still background, with a bright 40 x 80 'person' at box_x."""
    rng = np.random.default_rng(7)
    frame = np.repeat(rng.integers(60, 120, (360, 640, 1), dtype=np.uint8), 3, axis=2)
    if box_x is not None:
        frame[140:300, box_x : box_x + 60] = 230
    return frame


def admitted(gate: Gate, frames: list[np.ndarray]) -> list[int]:
    return [i for i, f in enumerate(frames) if gate.admit(f, i * FRAME_MS * MS)]


def test_still_scene_is_analysed_at_the_keepalive_rate() -> None:
    gate = Gate(GateSettings(analyse_fps=5.0, keepalive_fps=1.0, motion_min_share=0.002))
    still = scene(None)
    noisy = [
        np.clip(
            still.astype(int) + np.random.default_rng(i).integers(-4, 5, still.shape), 0, 255
        ).astype(np.uint8)
        for i in range(100)
    ]  # 4 s of a still scene with sensor noise
    assert admitted(gate, noisy) == [0, 25, 50, 75]  # one per second of capture time


def test_motion_is_analysed_at_analyse_fps() -> None:
    gate = Gate(GateSettings(analyse_fps=5.0, keepalive_fps=1.0, motion_min_share=0.002))
    walking = [scene(10 + 4 * i) for i in range(50)]  # 2 s, 100 px/s across the frame
    got = admitted(gate, walking)
    assert got == list(range(0, 50, 5))  # every 200 ms of capture time
    assert gate.moving


def test_slow_motion_adds_up_against_the_last_analysed_frame() -> None:
    # 1 px per frame: too little between neighbours, enough since the last analysis.
    gate = Gate(GateSettings(analyse_fps=5.0, keepalive_fps=0.1, motion_min_share=0.002))
    got = admitted(gate, [scene(100 + i) for i in range(50)])
    assert len(got) > 2 and got[0] == 0


def test_a_person_who_stops_is_kept_at_the_keepalive_rate() -> None:
    # 1.2 s walking, then 1.2 s standing still: analysis drops to the keep-alive rate.
    frames = [scene(10 + 4 * i) if i < 30 else scene(130) for i in range(60)]
    got = admitted(Gate(GateSettings(5.0, 1.0, 0.002)), frames)
    assert got == [0, 5, 10, 15, 20, 25, 30, 55]
