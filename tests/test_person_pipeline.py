"""Pipeline "person" in a real daemon: source -> gate -> detect (NanoDet + MoveNet) ->
overlay, on the bundled clip of real people walking into a room one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_proc import Daemon, wait_for

pytestmark = pytest.mark.timeout(180)

CLIP = "sample:one-by-one-person-detection.mp4"  # 10 fps; nobody until frame 61
PEOPLE_FRAMES = 8  # frames shown with a person and keypoints before we stop


def person_camera(**extra: object) -> dict[str, object]:
    return {
        "name": "room",
        "source": CLIP,
        "pipeline": "person",
        "width": 640,
        "height": 360,
        "analyse_fps": 5.0,
        **extra,
    }


def test_people_with_keypoints_reach_the_overlay(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, [person_camera()]).start()
    try:

        def with_people() -> list[dict[str, object]]:
            return [f for f in daemon.frames() if f.get("people_keypoints")]

        shown = wait_for(
            lambda: len(with_people()) >= PEOPLE_FRAMES and with_people(), 120, "people"
        )
        assert isinstance(shown, list)
        for frame in shown:
            assert frame["label"] == "person" and float(str(frame["score"])) >= 0.4
            keypoints = frame["people_keypoints"]
            assert isinstance(keypoints, list) and max(keypoints) >= 5, frame
        # The empty room before anyone enters: shown, analysed at the keep-alive rate
        # (nothing moves), and nobody found.
        first = [f for f in daemon.frames() if int(str(f["frame_id"])) < 50]
        assert first and all(f["label"] == "" for f in first)
        gate, detect = daemon.stats("room.gate"), daemon.stats("detect.0")
        assert gate["analysis_skipped_total"] > 0 and gate["clips_total"] > 0
        # Each analysed frame's result is shown until the next: several frames per result.
        results = {f["result_frame_id"] for f in shown}
        assert detect["people_total"] >= len(results) >= 2
        assert detect["frames_in_total"] <= gate["clips_total"]
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
    log = daemon.log()
    assert "nanodet-g.onnx: providers in use CPUExecutionProvider" in log
