"""cameras[].decode: the "reference" preset makes FFmpeg skip the frames nothing refers
to (B-frames) before decoding them; the frames it does give are the same frames, whole.
Real FFmpeg (PyAV) on a real H.264 file with B-frames made by GStreamer's x264enc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from daemon_proc import Daemon

from daemon.capture.file import FileCapture
from daemon.capture.protocol import OpenOptions
from daemon.capture.table import DECODE_PRESETS

pytestmark = pytest.mark.timeout(120)

FRAMES = 60  # 4 s at 15 fps; x264 with 2 B-frames between references, none referenced


@pytest.fixture(scope="module")
def b_frames_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("gst-launch-1.0 (gstreamer1.0-tools, .ci/apt-packages.txt) is missing")
    path = tmp_path_factory.mktemp("decode") / "b-frames.mp4"
    pipeline = (
        f"videotestsrc num-buffers={FRAMES} pattern=ball ! "
        "video/x-raw,width=320,height=240,framerate=15/1 ! "
        "x264enc bframes=2 b-adapt=false b-pyramid=false key-int-max=30 "
        "speed-preset=ultrafast ! h264parse ! mp4mux ! "
        f"filesink location={path}"
    )
    subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], check=True, timeout=60)
    return path


def _frames(path: Path, preset: str) -> dict[float, np.ndarray]:
    """Every frame FFmpeg gives with `preset`, by presentation time."""
    cap = FileCapture(str(path), OpenOptions(skip_frame=DECODE_PRESETS[preset].skip_frame))
    assert cap.open()
    out: dict[float, np.ndarray] = {}
    while (frame := cap.read()) is not None:
        at = cap.position_s()
        assert at is not None
        out[round(at, 3)] = frame
    cap.release()
    return out


def test_reference_preset_skips_b_frames_and_keeps_the_others_whole(b_frames_clip: Path) -> None:
    every = _frames(b_frames_clip, "all")
    fewer = _frames(b_frames_clip, "reference")
    assert len(every) == FRAMES
    # I P B B P B B ...: one frame in three is a reference.
    assert FRAMES // 3 <= len(fewer) <= FRAMES // 3 + 2, sorted(fewer)
    assert set(fewer) < set(every)
    for at, frame in fewer.items():
        np.testing.assert_array_equal(frame, every[at], err_msg=f"frame at {at} s")


def test_a_daemon_camera_with_the_reference_preset_shows_only_reference_frames(
    b_frames_clip: Path, tmp_path: Path
) -> None:
    # A lossless, unpaced file: the overlay shows every frame the source decodes.
    cam = {
        "name": "yard",
        "source": str(b_frames_clip),
        "realtime": False,
        "ring_policy": "block",
        "width": 320,
        "height": 240,
        "decode": "reference",
    }
    daemon = Daemon(tmp_path, [cam]).start()
    try:
        assert daemon.wait(90) == 0, daemon.log()
    finally:
        daemon.cleanup()
    shown = [f for f in daemon.frames() if f["camera"] == "yard"]
    assert FRAMES // 3 <= len(shown) <= FRAMES // 3 + 2, len(shown)
