"""The event clips' encoder thread (daemon/display/clipwriter.py) when writing goes wrong:
one clip's error fails that clip alone, even on a frame it shares with others; a frame
that cannot be converted fails its clip and the thread goes on; and a thread that died
of anything else makes close() say so and fails every clip it had, each with an outcome
(what the overlay counts as lost)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from webm_clip import clip_slots

from daemon.display.clipwriter import DONE, WRITE_FAILED, ClipEncoder
from daemon.display.webm_writer import WebmWriter

pytestmark = pytest.mark.timeout(60)

FPS = 10.0
DEATH_WAIT_S = 10.0
POLL_S = 0.01
SHARED_FRAMES = 60  # past the second keyframe (at 5 s), where the muxer writes its first cluster


def _noise(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (240, 320, 3), np.uint8)


def test_a_full_disk_fails_only_the_clip_on_it(tmp_path: Path) -> None:
    # Clip "full" is written to /dev/full (every write: ENOSPC); clip "ok" shares its frames.
    (tmp_path / "cam" / ".part").mkdir(parents=True)
    (tmp_path / "cam" / ".part" / "full.webm").symlink_to("/dev/full")
    rng = np.random.default_rng(1)
    encoder = ClipEncoder(FPS, SHARED_FRAMES + 1)
    first = np.full((240, 320, 3), 90, np.uint8)  # a small packet: the open succeeds
    encoder.open("full", tmp_path / "cam" / "full.webm", [first])
    encoder.open("ok", tmp_path / "cam" / "ok.webm", [first])
    for _ in range(SHARED_FRAMES):
        assert encoder.frame(("full", "ok"), _noise(rng))
    encoder.close_clip("full", keep=True)
    encoder.close_clip("ok", keep=True)
    assert encoder.close()
    results = {o.clip_id: (o.result, o.frames) for o in encoder.take_outcomes()}
    assert results["full"][0] == WRITE_FAILED
    assert results["ok"] == (DONE, 1 + SHARED_FRAMES)
    assert clip_slots(tmp_path / "cam" / "ok.webm", FPS) == 1 + SHARED_FRAMES
    assert not (tmp_path / "cam" / "full.webm").exists()


@pytest.mark.parametrize("size", [(160, 120), (161, 121)], ids=["even", "odd"])
def test_a_frame_that_cannot_be_converted_fails_its_clip_alone(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    # A grey frame (no colour channels): OpenCV's conversion raises cv2.error for an
    # even-sided clip, PyAV's ValueError for an odd one. Neither may end the thread.
    width, height = size
    colour = np.full((height, width, 3), 60, np.uint8)
    encoder = ClipEncoder(FPS, 20)
    encoder.open("grey", tmp_path / "grey.webm", [colour])
    assert encoder.frame(("grey",), np.full((height, width), 60, np.uint8))
    encoder.close_clip("grey", keep=True)
    encoder.open("after", tmp_path / "after.webm", [colour])
    assert encoder.frame(("after",), colour, copies=2)
    encoder.close_clip("after", keep=True)
    assert encoder.close()
    results = {o.clip_id: o.result for o in encoder.take_outcomes()}
    assert results == {"grey": WRITE_FAILED, "after": DONE}
    assert clip_slots(tmp_path / "after.webm", FPS) == 3


def test_after_the_thread_died_every_clip_fails_at_its_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An error no writer raises (a bug): the thread ends on it. Every clip, open when it
    # died, queued, or opened later, still gets its outcome when it is closed.
    def broken(self: WebmWriter, image: np.ndarray, slots: int = 1) -> None:
        raise RuntimeError("a bug in the writer")

    died: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    monkeypatch.setattr(WebmWriter, "write", broken)
    frame = np.full((120, 160, 3), 40, np.uint8)
    encoder = ClipEncoder(FPS, 20)
    with caplog.at_level(logging.ERROR, logger="daemon.display.clipwriter"):
        encoder.open("open", tmp_path / "open.webm", [frame])  # the thread dies here
        encoder.open("queued", tmp_path / "queued.webm", [frame])
        deadline = time.monotonic() + DEATH_WAIT_S
        while not (died and died[0].thread is not None and not died[0].thread.is_alive()):
            assert time.monotonic() < deadline, "the encoder thread did not end"
            time.sleep(POLL_S)
        assert type(died[0].exc_value) is RuntimeError
        assert not encoder.frame(("open", "queued"), frame)  # refused: the caller counts it
        encoder.open("later", tmp_path / "later.webm", [frame])
        for clip_id in ("open", "queued", "later"):
            encoder.close_clip(clip_id, keep=True)
        results = {o.clip_id: o.result for o in encoder.take_outcomes()}
        assert results == dict.fromkeys(("open", "queued", "later"), WRITE_FAILED)
        encoder.open("at_stop", tmp_path / "at_stop.webm", [frame])
        assert not encoder.close() and encoder.died  # died: event_clips adds no "in time" line
    assert [(o.clip_id, o.result) for o in encoder.take_outcomes()] == [("at_stop", WRITE_FAILED)]
    assert caplog.text.count("clip encoder: its thread ended on an error") == 1
    assert list(tmp_path.rglob("*.webm")) == []  # no .part file is left
