"""An event clip's file (daemon/display/webm_writer.py, PyAV and libvpx): a WebM that
decodes to the frames given, at their slots, for as long as they stand for; a frame
repeated for a gap is encoded once; a keyframe starts every KEYFRAME_EVERY_S of clip time
however slow the camera; nothing is printed; and a file that cannot be written fails that
clip alone (more in test_clip_encoder_errors.py). The encoder thread's writing runs in a
real subprocess, so the bytes on its descriptor 2 are what a journal would get."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from webm_clip import clip_slots, decoded_frames

from daemon.display import webm_writer
from daemon.display.clipwriter import DONE, WRITE_FAILED, ClipEncoder

pytestmark = pytest.mark.timeout(60)

FPS = 10.0
SIZE = (320, 180)  # (width, height)
CLIP = Path(__file__).resolve().parent.parent / "daemon" / "assets"
ROOM = CLIP / "one-by-one-person-detection.mp4"
MIN_PSNR_DB = 30.0  # the room clip comes back at about 39 dB; a broken colour path at < 20

WRITE_A_CLIP = """
import sys
from pathlib import Path
import numpy as np
from daemon.display.clipwriter import DONE, ClipEncoder

clip = Path(sys.argv[1])
encoder = ClipEncoder(10.0, 20)
frames = [np.full((120, 160, 3), v, np.uint8) for v in (10, 20)]
encoder.open("one", clip, frames)
assert encoder.frame(("one",), frames[0], copies=2)
encoder.close_clip("one", keep=True)
assert encoder.close()
(outcome,) = encoder.take_outcomes()
assert outcome.result == DONE and outcome.frames == 4, outcome
"""


def _room_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(ROOM))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


def test_writing_a_clip_prints_nothing(tmp_path: Path) -> None:
    clip = tmp_path / "cam" / "one.webm"
    done = subprocess.run(
        [sys.executable, "-c", WRITE_A_CLIP, str(clip)], capture_output=True, timeout=50
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"" and done.stdout == b""
    assert clip.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (WebM) file
    assert b"webm" in clip.read_bytes()[:64]  # its doctype: WebM, not Matroska
    assert clip_slots(clip, FPS) == 4


def test_a_clip_decodes_to_its_frames_at_their_slots(tmp_path: Path) -> None:
    frames = _room_frames(12)
    path = tmp_path / "room.webm"
    writer = webm_writer.WebmWriter(path, FPS, SIZE)
    for i, frame in enumerate(frames):
        writer.write(frame, slots=3 if i == 5 else 1)  # frame 5 held for a gap
    writer.close()
    assert writer.slots == 14
    decoded = decoded_frames(path)
    # Frame 5 is encoded once and stays on screen until frame 6, at slot 8.
    slots = [round(t * FPS) for t, _ in decoded]
    assert slots == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]
    assert clip_slots(path, FPS) == 14
    for (_, back), original in zip(decoded, frames, strict=True):
        assert back.shape == (SIZE[1], SIZE[0], 3)
        assert cv2.PSNR(original, back) > MIN_PSNR_DB


def test_a_frame_of_another_size_is_scaled_to_the_clips(tmp_path: Path) -> None:
    path = tmp_path / "sizes.webm"
    writer = webm_writer.WebmWriter(path, FPS, SIZE)
    writer.write(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8))
    writer.write(np.full((SIZE[1] * 2, SIZE[0] * 2, 3), 160, np.uint8))
    writer.close()
    sizes = {back.shape for _, back in decoded_frames(path)}
    assert sizes == {(SIZE[1], SIZE[0], 3)}


def test_an_odd_sized_clip_is_written_too(tmp_path: Path) -> None:
    path = tmp_path / "odd.webm"
    writer = webm_writer.WebmWriter(path, 7.5, (161, 121))
    writer.write(np.full((121, 161, 3), 50, np.uint8), slots=2)
    writer.close()
    # The last frame, standing for 2 slots, is written again at its last one.
    assert [back.shape for _, back in decoded_frames(path)] == [(121, 161, 3)] * 2
    assert clip_slots(path, 7.5) == 2


def test_a_clip_that_cannot_be_opened_fails_alone(tmp_path: Path) -> None:
    encoder = ClipEncoder(FPS, 20)
    (tmp_path / "cam" / ".part" / "bad.webm").mkdir(parents=True)  # a directory in the way
    frame = np.full((120, 160, 3), 40, np.uint8)
    encoder.open("bad", tmp_path / "cam" / "bad.webm", [frame])
    encoder.open("good", tmp_path / "cam" / "good.webm", [frame])
    assert encoder.frame(("bad", "good"), frame, copies=2)
    encoder.close_clip("bad", keep=True)
    encoder.close_clip("good", keep=True)
    assert encoder.close()
    results = {o.clip_id: (o.result, o.frames) for o in encoder.take_outcomes()}
    assert results == {"bad": (WRITE_FAILED, 0), "good": (DONE, 3)}
    assert clip_slots(tmp_path / "cam" / "good.webm", FPS) == 3


@pytest.mark.parametrize("slots_each", [1, 3, 5])
def test_a_keyframe_starts_every_few_seconds_of_clip_time(tmp_path: Path, slots_each: int) -> None:
    # A camera at 10, 3.3 and 2 fps in a 10 fps clip of 18 s: a keyframe (where a seek
    # starts decoding) on the first frame at or after each KEYFRAME_EVERY_S, however few
    # frames were encoded in between.
    path = tmp_path / "keys.webm"
    writer = webm_writer.WebmWriter(path, FPS, SIZE)
    ramp = np.linspace(0, 200, SIZE[0], dtype=np.float32)
    while writer.slots < 180:
        shift = writer.slots % SIZE[0]
        image = np.roll(ramp, shift)[None, :, None].repeat(SIZE[1], 0).repeat(3, 2)
        writer.write(image.astype(np.uint8), slots=slots_each)
    writer.close()
    every = round(webm_writer.KEYFRAME_EVERY_S * FPS)
    starts = range(0, writer.slots, slots_each)  # each frame's first slot
    expected = [min(s for s in starts if s >= mark) for mark in range(0, writer.slots, every)]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        keys = [
            round(float(packet.pts * stream.time_base) * FPS)
            for packet in container.demux(stream)
            if packet.pts is not None and packet.is_keyframe
        ]
    assert keys == expected
