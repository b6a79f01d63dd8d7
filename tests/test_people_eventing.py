"""The overlay's people events (daemon.stages.people_eventing) on constructed detections:
records carry track, box and zone; start and end share an id; a lost stream ends them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.config import CameraConfig, PeopleConfig, ZoneConfig
from daemon.ipc.events_channel import EventReceiver
from daemon.stages.people_eventing import PeopleEmitter, persons_of
from daemon.stages.records import COCO_KEYPOINTS, ResultSpec, person_result, result_record

pytestmark = pytest.mark.timeout(60)

W, H = 640, 360
NS = 1_000_000_000
FRAME_NS = NS // 5  # analysed at 5 fps


@pytest.fixture
def sock_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        yield Path(tmp) / "events.sock"


def detections(boxes: list[tuple[float, float, float, float]]) -> dict[str, np.ndarray]:
    """A detections record (shares of the frame) of standing people in these pixel boxes."""
    spec = ResultSpec("detections", ("person",), 16, COCO_KEYPOINTS)
    fields = {name: np.zeros(shape, dtype) for name, shape, dtype in result_record(spec).fields}
    fields["count"][0] = len(boxes)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        fields["boxes"][i] = (x1 / W, y1 / H, x2 / W, y2 / H)
        fields["scores"][i] = 0.9
        ys = np.linspace(y1 + 5, y2 - 5, COCO_KEYPOINTS)
        fields["keypoints"][i, :, 0] = (x1 + x2) / 2 / W
        fields["keypoints"][i, :, 1] = ys / H
        fields["keypoints"][i, :, 2] = 0.9
    return fields


def test_persons_are_in_frame_pixels() -> None:
    (person,) = persons_of(detections([(100, 50, 200, 300)]), (W, H))
    np.testing.assert_allclose(person.box, (100, 50, 200, 300), atol=1e-3)
    assert person.keypoints.shape == (17, 3) and person.keypoints[0, 1] == pytest.approx(55)


def test_zone_events_carry_track_box_and_zone(sock_path: Path) -> None:
    receiver = EventReceiver(sock_path)
    zone = ZoneConfig("room", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    cam = CameraConfig("cam", "test:still", zones=(zone,))
    people = PeopleConfig(actions=("in_zone",))
    emitter = PeopleEmitter(cam, people, str(sock_path), 80, live=False)
    image = np.zeros((H, W, 3), np.uint8)
    for i in range(15):  # 3 s of one person standing in the room
        emitter.update(detections([(100, 50, 200, 300)]), i * 2, i * FRAME_NS)
        emitter.send_pending(image)
    assert [t.track_id for t in emitter.tracks] == [1] and emitter.active
    assert emitter.end_all("stream_lost") == 1
    records = [r for r, _ in receiver.receive()]
    start, end = records
    assert (start["phase"], end["phase"]) == ("start", "end")
    assert start["id"] == end["id"] and start["track_id"] == end["track_id"] == 1
    assert start["zone"] == end["zone"] == "room" and start["action"] == "in_zone"
    assert start["box"] == [100.0, 50.0, 200.0, 300.0] and start["has_snapshot"]
    assert end["end_reason"] == "stream_lost" and not end["has_snapshot"]
    # The track counts from its confirm_hits-th sighting: the occurrence starts there.
    confirmed_s = (people.confirm_hits - 1) * FRAME_NS / NS
    assert start["media_start_s"] == pytest.approx(confirmed_s)
    assert end["media_end_s"] == pytest.approx(14 * FRAME_NS / NS)
    assert start["capture_ts_ns"] == 0  # a replay: no latency stamp
    emitter.close()
    receiver.close()


def test_record_times_are_whole_milliseconds(sock_path: Path) -> None:
    """Media times and durations come to the millisecond (1.714), not with float noise
    (1.7142857...)."""
    receiver = EventReceiver(sock_path)
    zone = ZoneConfig("room", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    cam = CameraConfig("cam", "test:still", zones=(zone,))
    emitter = PeopleEmitter(cam, PeopleConfig(actions=("in_zone",)), str(sock_path), 80, live=False)
    image = np.zeros((H, W, 3), np.uint8)
    for i in range(15):  # 7 frames a second, from 1.000000007 s of media time
        emitter.update(detections([(100, 50, 200, 300)]), i, 1_000_000_007 + i * (NS // 7))
        emitter.send_pending(image)
    assert emitter.end_all("stream_lost") == 1
    start, end = [r for r, _ in receiver.receive()]
    assert (start["media_start_s"], end["media_end_s"], end["duration_s"]) == (1.286, 3.0, 1.714)
    assert start["duration_s"] is None
    emitter.close()
    receiver.close()


def test_the_person_result_spec_fits_the_config() -> None:
    from daemon.config import Config, PerceptionConfig

    spec = person_result(Config(perception=PerceptionConfig(max_people=5)))
    assert (spec.max_detections, spec.keypoints, spec.labels) == (5, 17, ("person",))
