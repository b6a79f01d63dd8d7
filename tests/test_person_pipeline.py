"""Pipeline "person" in a real daemon: source -> gate -> detect (NanoDet + MoveNet) ->
overlay, on the bundled clip of real people walking into a room one by one."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from daemon_proc import Daemon, wait_for

pytestmark = pytest.mark.timeout(180)

BUNDLED = "daemon/assets/one-by-one-person-detection.mp4"
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


def _events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def test_people_events_carry_track_box_and_zone(tmp_path: Path) -> None:
    # One include zone over the whole room: a confirmed person is in it (in_zone), and
    # the start and end records of that occurrence share one id.
    room = {"name": "room", "kind": "include", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    events_file = tmp_path / "state" / "events.jsonl"
    daemon = Daemon(
        tmp_path,
        [person_camera(zones=[room])],
        {"jsonl": {"enabled": True, "path": str(events_file)}},
    ).start()
    try:
        start = wait_for(
            lambda: [e for e in _events(events_file) if e["action"] == "in_zone"], 120, "in_zone"
        )
        assert isinstance(start, list)
        first = start[0]
        assert first["phase"] == "start" and first["zone"] == "room"
        assert isinstance(first["track_id"], int) and first["track_id"] >= 1
        box = first["box"]
        assert isinstance(box, list) and len(box) == 4 and box[0] < box[2] and box[1] < box[3]
        assert first["media_start_s"] is not None and first["has_snapshot"] is True
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
    records = _events(events_file)
    ends = [e for e in records if e["id"] == first["id"] and e["phase"] == "end"]
    assert len(ends) == 1, records
    assert ends[0]["track_id"] == first["track_id"] and ends[0]["zone"] == "room"


def test_a_person_camera_beside_a_clip_camera(tmp_path: Path) -> None:
    # Each camera's results ring and overlay take its own graph's result kind: people
    # (with keypoints) on one, the clip model's scores on the other, in one daemon. The
    # person camera is tiled and smaller than the clip one (the shared analysis ring is
    # sized for the largest person camera; the tiled flag travels with each frame).
    clip_cam = {"name": "hall", "source": "test:moving-box", "fps": 10.0}
    person = person_camera(width=480, height=270, tiled_detection=True)
    daemon = Daemon(tmp_path, [clip_cam, person]).start()
    try:

        def shown() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
            frames = daemon.frames()
            people = [f for f in frames if f["camera"] == "room" and f.get("people_keypoints")]
            hall = [
                f for f in frames if f["camera"] == "hall" and int(str(f["result_frame_id"])) >= 0
            ]
            return people, hall

        wait_for(lambda: all(shown()), 120, "people on room and clip results on hall")
        people, hall = shown()
        assert all("people_keypoints" not in f for f in hall)
        assert all(f["label"] == "person" for f in people)
        assert daemon.stats("detect.0")["people_total"] >= 1
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()


def _clip_of_people(path: Path, first: int, count: int) -> Path:
    """`count` frames of the bundled clip from `first` (a person in view), as an mp4."""
    cap = cv2.VideoCapture(str(Path(__file__).resolve().parent.parent / BUNDLED))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (768, 432))
    for _ in range(count):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    return path


def test_a_file_ends_after_its_last_analysed_frame(tmp_path: Path) -> None:
    # Lossless and unpaced: every frame the gate sends gets its result before the daemon
    # ends, and the last frames are drawn with the people found in them.
    clip = _clip_of_people(tmp_path / "people.mp4", 300, 30)
    cam = person_camera(source=str(clip), realtime=False, ring_policy="block")
    daemon = Daemon(tmp_path, [cam]).start()
    try:
        assert daemon.wait(120) == 0, daemon.log()
    finally:
        daemon.cleanup()
    frames = daemon.frames()
    assert [f["frame_id"] for f in frames] == list(range(30))
    assert frames[-1].get("people_keypoints") and frames[-1]["label"] == "person"
    assert "did not arrive" not in daemon.log()
