"""The overlay's live JPEG slot through the real daemon: nothing is encoded while nobody
asks; once a reader asks, the annotated frame arrives as a JPEG of the camera's size;
the slot file goes with the run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, wait_for
from media import make_clip

from daemon.exitcodes import ExitCode
from daemon.ipc.liveslot import LiveSlotReader

START_S = 90.0  # spawning the workers on 2 busy cores
SIZE = (160, 120)


@pytest.mark.timeout(240)
def test_live_slot_publishes_only_when_asked(tmp_path: Path, daemons: list[Daemon]) -> None:
    clip = make_clip(tmp_path / "box.mp4", frames=48, size=SIZE, pattern="moving-box", fps=10)
    cam = {"name": "cam1", "source": str(clip), "width": SIZE[0], "height": SIZE[1]}
    d = Daemon(tmp_path, [{**cam, "loop": True}], {"motion": {"width": 64, "height": 64}})
    daemons.append(d.start())
    slot = wait_for(
        lambda: next(iter(d.shm_dir.glob("actiond-*-cam1.live")), None), START_S, "the slot"
    )
    assert isinstance(slot, Path)
    wait_for(lambda: len(d.frames()) > 20, START_S, "20 frames shown")
    reader = LiveSlotReader(slot)
    assert reader.read() is None, "published while nobody asked"

    def asked_and_got() -> tuple[int, int, bytes] | None:
        reader.request()
        return reader.read()

    got = wait_for(asked_and_got, 30.0, "a live JPEG after request()")
    assert isinstance(got, tuple)
    seq, frame_id, jpeg = got
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (SIZE[1], SIZE[0])
    shown = {int(str(f["frame_id"])) for f in d.frames()}
    assert frame_id in shown
    later = wait_for(
        lambda: (r := asked_and_got()) is not None and r[0] > seq and r, 30.0, "a newer JPEG"
    )
    assert isinstance(later, tuple) and later[1] > frame_id
    reader.close()
    assert d.stop() == ExitCode.OK, d.log()
    assert d.leftovers() == [], "the slot file outlived the run"
