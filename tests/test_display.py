"""Display outputs: the window check, recording, and open_outputs (MJPEG server tests:
test_mjpeg.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
from display_helpers import HEIGHT, HTTP_TIMEOUT_S, WIDTH, count_frames, free_port, get, make_frame
from media import read_marker

from daemon.config import DisplayConfig
from daemon.display.outputs import (
    DisplayUnavailable,
    Recorder,
    WindowOutput,
    gui_backend,
    open_outputs,
)

# --- window ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_window_without_gui_points_to_mjpeg() -> None:
    if gui_backend(cv2.getBuildInformation()) is not None:
        pytest.skip("this OpenCV has a GUI backend; the headless error cannot happen")
    with pytest.raises(DisplayUnavailable) as caught:
        WindowOutput("actiond")
    message = str(caught.value)
    assert "mjpeg_listen" in message and "opencv-python-headless" in message


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ("  GUI:                           NONE\n    VTK support:  NO\n", None),
        ("  GUI:                           GTK3\n    GTK+:         YES (ver 3.24.5)\n", "GTK3"),
        (
            "  GUI:\n    QT:                          NO\n    GTK+ 2.x:                    YES\n"
            "  Media I/O:\n    PNG:   YES\n",
            "GTK+ 2.x",
        ),
        ("  GUI:\n    QT:                          NO\n  Media I/O:\n    JPEG:    YES\n", None),
    ],
)
def test_gui_backend_parses_build_information(info: str, expected: str | None) -> None:
    assert gui_backend(info) == expected


# --- recorder and open_outputs ---------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "out.mkv"])
def test_recorder_writes_every_frame(tmp_path: Path, name: str) -> None:
    frames_to_write = 12
    path = tmp_path / name
    recorder = Recorder(str(path), 10.0, (WIDTH, HEIGHT))
    for index in range(frames_to_write):
        # Every third frame arrives at another size and must be resized, not dropped.
        size = (WIDTH * 2, HEIGHT * 2) if index % 3 == 0 else (WIDTH, HEIGHT)
        recorder.write(make_frame(index, *size))
    recorder.close()
    count, markers, size = count_frames(path)
    assert count == frames_to_write == recorder.frames_written
    assert markers == list(range(frames_to_write))
    assert size == (WIDTH, HEIGHT)


@pytest.mark.timeout(60)
def test_a_second_recorder_on_the_same_path_keeps_the_first_file(tmp_path: Path) -> None:
    # A restarted overlay (or daemon) records again: the last run's video must survive.
    path = tmp_path / "out.mkv"
    for run, frames_to_write in enumerate((3, 5, 2)):
        recorder = Recorder(str(path), 10.0, (WIDTH, HEIGHT))
        assert recorder.path == str(path if run == 0 else tmp_path / f"out.{run}.mkv")
        for index in range(frames_to_write):
            recorder.write(make_frame(index, WIDTH, HEIGHT))
        recorder.close()
    counts = [count_frames(p)[0] for p in (path, tmp_path / "out.1.mkv", tmp_path / "out.2.mkv")]
    assert counts == [3, 5, 2]


@pytest.mark.timeout(30)
def test_recorder_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported file type '.gif'"):
        Recorder(str(tmp_path / "out.gif"), 10.0, (WIDTH, HEIGHT))
    with pytest.raises(DisplayUnavailable, match="does not exist"):
        Recorder(str(tmp_path / "missing" / "out.mp4"), 10.0, (WIDTH, HEIGHT))


@pytest.mark.timeout(30)
def test_open_outputs_feeds_mjpeg_and_recorder(tmp_path: Path) -> None:
    record = tmp_path / "overlay.avi"
    cfg = DisplayConfig(mjpeg_listen="127.0.0.1:0", record=str(record), jpeg_quality=70)
    with open_outputs(cfg, 15.0, (WIDTH, HEIGHT)) as outputs:
        assert outputs.enabled and outputs.mjpeg is not None and outputs.recorder is not None
        port = outputs.mjpeg.port
        for index in range(5):
            outputs.show(make_frame(index))
        status, _, body = get(port, "/snapshot.jpg")
        assert status == 200
        assert read_marker(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)) == 4
    assert outputs.mjpeg is None and outputs.recorder is None and not outputs.enabled
    assert count_frames(record)[0] == 5
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S).close()


@pytest.mark.timeout(30)
def test_open_outputs_closes_what_it_opened_on_failure(tmp_path: Path) -> None:
    if gui_backend(cv2.getBuildInformation()) is not None:
        pytest.skip("this OpenCV has a GUI backend; the window would open")
    port = free_port()
    cfg = DisplayConfig(mjpeg_listen=f"127.0.0.1:{port}", window=True)
    with pytest.raises(DisplayUnavailable, match="mjpeg_listen"):
        open_outputs(cfg, 15.0, (WIDTH, HEIGHT))
    with pytest.raises(ConnectionRefusedError):  # the MJPEG server opened first was stopped
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S).close()


@pytest.mark.timeout(30)
def test_no_outputs_configured() -> None:
    with open_outputs(DisplayConfig(), 15.0, (WIDTH, HEIGHT)) as outputs:
        assert not outputs.enabled
        outputs.show(make_frame(0))  # a no-op, and must not fail
