"""FrameSource over the shipped backends: files, test patterns and a real RTSP server
that is killed, paused and restarted underneath a reader (fake backends behind the
CaptureBackend protocol: test_capture_backends.py)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import make_clip, make_corrupt_file, read_marker
from rtsp_fixture import RtspServer, require_rtsp

from daemon.capture.rtsp import FFMPEG_OPTIONS_ENV, ffmpeg_capture_options, stream_options
from daemon.config import CameraConfig
from daemon.stages.capture import Backoff, FrameSource, SourceError, crop_and_resize

POLL_S = 0.02


def camera(source: str, **overrides: object) -> CameraConfig:
    """A CameraConfig with small frames and unpaced reads unless overridden."""
    settings: dict[str, object] = {
        "name": "cam",
        "source": source,
        "width": 128,
        "height": 96,
        "realtime": False,
    }
    settings.update(overrides)
    return CameraConfig(**settings)  # type: ignore[arg-type]


def opened(source: str, **overrides: object) -> FrameSource:
    """An opened FrameSource for `source`."""
    frames = FrameSource(camera(source, **overrides), source)
    frames.open()
    return frames


def read_all(frames: FrameSource, limit: int = 2000) -> list[tuple[np.ndarray, int]]:
    """Every (frame, timestamp) until read() returns None (at most `limit`)."""
    out = []
    while len(out) < limit and (got := frames.read()) is not None:
        out.append(got)
    return out


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)  # polling interval; the condition is what synchronises


def next_frame(frames: FrameSource) -> np.ndarray:
    """The next frame, which must exist."""
    got = frames.read()
    assert got is not None, "source ended unexpectedly"
    return got[0]


def span_s(reads: list[tuple[np.ndarray, int]]) -> float:
    """Seconds between the first and last capture timestamp."""
    return (reads[-1][1] - reads[0][1]) / 1e9


def read_timed(frames: FrameSource, limit: int = 2000) -> tuple[list[int], list[int]]:
    """(capture timestamps, wall-clock arrival times) of every frame until the end: a
    replay's capture times are its media time, so pacing shows only in the arrivals."""
    captured, arrived = [], []
    while len(captured) < limit and (got := frames.read()) is not None:
        arrived.append(time.monotonic_ns())
        captured.append(got[1])
    return captured, arrived


def wall_span_s(arrived_ns: list[int]) -> float:
    """Seconds between the first and last arrival."""
    return (arrived_ns[-1] - arrived_ns[0]) / 1e9


@pytest.fixture(autouse=True)
def ffmpeg_options_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test without the operator's OPENCV_FFMPEG_CAPTURE_OPTIONS."""
    monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An rtsp:// URL whose port is bound but not listening, so connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"rtsp://127.0.0.1:{sock.getsockname()[1]}/none"


class Reader:
    """Calls read() in a thread until stopped, like a source worker does."""

    def __init__(self, frames: FrameSource) -> None:
        self.frames = frames
        self.stop = threading.Event()
        self.shapes: set[tuple[int, ...]] = set()
        self.timestamps_ns: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (got := self.frames.read(self.stop)) is not None:
            self.shapes.add(got[0].shape)
            self.timestamps_ns.append(got[1])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.frames.close()
        assert not self.thread.is_alive(), "reader did not stop"


class RecordingEvent(threading.Event):
    """A stop event that remembers the longest wait() asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.longest_wait_s = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        self.longest_wait_s = max(self.longest_wait_s, timeout or 0.0)
        return super().wait(timeout)


@pytest.mark.timeout(30)
def test_file_reads_every_frame_in_order_at_the_configured_size(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=40, size=(160, 120), fps=20)
    frames = opened(str(clip))
    reads = read_all(frames)
    assert [read_marker(frame) for frame, _ in reads] == list(range(40))
    assert {frame.shape for frame, _ in reads} == {(96, 128, 3)}
    assert {frame.dtype for frame, _ in reads} == {np.dtype(np.uint8)}
    assert frames.frames_total == 40
    assert frames.native_fps == pytest.approx(20.0)
    assert frames.read() is None  # stays at the end


@pytest.mark.timeout(30)
def test_realtime_file_is_paced_to_its_fps(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(160, 120), fps=20)
    captured, arrived = read_timed(opened(str(clip), realtime=True))
    expected_s = 11 / 20
    assert len(arrived) == 12
    assert wall_span_s(arrived) >= 0.9 * expected_s
    assert wall_span_s(arrived) < 3 * expected_s
    gaps_s = np.diff(arrived) / 1e9
    assert float(np.median(gaps_s)) == pytest.approx(1 / 20, rel=0.3)
    # The frames carry their media time: the file's presentation times from 0.
    assert captured == [round(i * 1e9 / 20) for i in range(12)]


@pytest.mark.timeout(30)
def test_camera_fps_overrides_the_file_rate(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(160, 120), fps=2)
    _, arrived = read_timed(opened(str(clip), realtime=True, fps=40.0))
    assert wall_span_s(arrived) >= 0.9 * 11 / 40
    assert wall_span_s(arrived) < 0.5 * 11 / 2  # nowhere near the file's own 2 fps


@pytest.mark.timeout(30)
def test_unpaced_file_reads_faster_than_its_fps(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(160, 120), fps=2)
    captured, arrived = read_timed(opened(str(clip), realtime=False))
    assert len(arrived) == 12
    assert wall_span_s(arrived) < 0.5 * 11 / 2
    # ... yet with the same media time as a paced replay: 0.5 s apart, whatever the speed.
    assert captured == [i * 500_000_000 for i in range(12)]


@pytest.mark.timeout(30)
def test_loop_starts_again_at_the_end(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=5, size=(160, 120), fps=10)
    frames = opened(str(clip), loop=True)
    reads = [frames.read() for _ in range(12)]
    assert [read_marker(got[0]) for got in reads if got is not None] == [
        *(0, 1, 2, 3, 4),
        *(0, 1, 2, 3, 4),
        *(0, 1),
    ]
    # Media time goes on across the loop, one frame period after the last frame.
    assert [got[1] for got in reads if got is not None] == [i * 100_000_000 for i in range(12)]


@pytest.mark.timeout(30)
def test_frame_size_change_between_loops_is_resized(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=3, size=(160, 120), fps=10)
    frames = opened(str(clip), loop=True)
    first = [frames.read() for _ in range(3)]
    # The next pass reopens the file: it now holds another resolution.
    make_clip(tmp_path / "big.mp4", frames=3, size=(320, 176), fps=10)
    os.replace(tmp_path / "big.mp4", clip)
    second = [frames.read() for _ in range(3)]
    assert all(got is not None and got[0].shape == (96, 128, 3) for got in first + second)
    assert [read_marker(got[0]) for got in second if got is not None] == [0, 1, 2]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        opened(str(tmp_path / "nope.mp4"))


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = make_corrupt_file(tmp_path / "bad.mp4")
    with pytest.raises(SourceError, match="cannot decode video file .*bad.mp4"):
        opened(str(bad))


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory, not a video file"):
        opened(str(tmp_path))


def test_source_kinds_decide_replay_or_live() -> None:
    kinds = {
        source: FrameSource(camera(source), source)
        for source in ("test:bars", "rtsp://cam.local/stream", "/dev/video0", "/srv/clips/walk.mkv")
    }
    assert [(s.kind, s.is_live) for s in kinds.values()] == [
        ("test", False),
        ("url", True),
        ("device", True),
        ("file", False),
    ]


def test_unresolved_sample_source_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="was not resolved.*load_config"):
        FrameSource(camera("sample:walk"), "sample:walk")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pattern", ["bars", "moving-box", "still"])
def test_pattern_sources_make_frames_of_the_configured_size(pattern: str) -> None:
    frames = opened(f"test:{pattern}")
    images = [next_frame(frames) for _ in range(3)]
    assert {image.shape for image in images} == {(96, 128, 3)}
    assert frames.native_fps == 10.0
    changing = [not np.array_equal(a, b) for a, b in itertools.pairwise(images)]
    assert changing == [pattern == "moving-box"] * 2


@pytest.mark.timeout(30)
def test_moving_box_moves_left_to_right() -> None:
    frames = opened("test:moving-box")
    centroids = []
    for _ in range(5):
        gray = cv2.cvtColor(next_frame(frames), cv2.COLOR_BGR2GRAY)
        centroids.append(float(np.nonzero(gray > 140)[1].mean()))  # the box is the bright part
    assert all(b > a for a, b in itertools.pairwise(centroids))


@pytest.mark.timeout(30)
def test_pattern_is_paced_to_camera_fps() -> None:
    frames = opened("test:still", realtime=True, fps=25.0)
    captured, arrived = read_timed(frames, limit=8)
    assert len(arrived) == 8
    assert wall_span_s(arrived) >= 0.9 * 7 / 25
    assert captured == [i * 40_000_000 for i in range(8)]  # no PTS: frame index / fps


def test_unknown_pattern_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="unknown test pattern 'plaid'.*test:bars"):
        opened("test:plaid")


def test_crop_is_applied_before_resize() -> None:
    # The first of the eight 80 px bars of a 640x480 test frame is white.
    got = opened("test:bars", crop=(0, 0, 80, 480)).read()
    assert got is not None and got[0].shape == (96, 128, 3)
    assert int(got[0].min()) == 255


def test_crop_outside_the_frame_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="lies outside the 640x480 source frame"):
        opened("test:bars", crop=(700, 0, 10, 10)).read()


def test_crop_and_resize_handles_any_input_size() -> None:
    for shape in [(120, 160, 3), (480, 640, 3), (50, 60), (96, 128, 4)]:
        out = crop_and_resize(np.zeros(shape, np.uint8), None, 128, 96)
        assert out.shape == (96, 128, 3)


def test_ffmpeg_options_keep_rtsp_over_tcp() -> None:
    assert ffmpeg_capture_options(None) == "rtsp_transport;tcp"
    assert ffmpeg_capture_options("") == "rtsp_transport;tcp"
    assert ffmpeg_capture_options("stimeout;5000000") == "stimeout;5000000|rtsp_transport;tcp"
    assert ffmpeg_capture_options("rtsp_transport;tcp|fflags;nobuffer") == (
        "rtsp_transport;tcp|fflags;nobuffer"
    )
    # An explicit transport is the operator's choice (it is logged as a warning).
    assert ffmpeg_capture_options("rtsp_transport;udp") == "rtsp_transport;udp"


def test_stream_options_are_the_operators_plus_rtsp_over_tcp() -> None:
    assert stream_options("rtsp://cam/live", None) == {"rtsp_transport": "tcp"}
    assert stream_options("rtsps://cam/live", "buffer_size;1024000") == {
        "buffer_size": "1024000",
        "rtsp_transport": "tcp",
    }
    assert stream_options("rtsp://cam/live", "rtsp_transport;udp") == {"rtsp_transport": "udp"}
    # Other URLs get the operator's options only; an entry without a value sets "".
    assert stream_options("http://cam/mjpeg", "fflags;nobuffer|listen") == {
        "fflags": "nobuffer",
        "listen": "",
    }
    assert stream_options("http://cam/mjpeg", None) == {}


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.timeout(30)
def test_unreachable_stream_waits_on_stop_and_returns_promptly(refused_url: str) -> None:
    frames = opened(
        refused_url, open_timeout_s=2.0, reconnect_backoff_min_s=30.0, reconnect_backoff_max_s=60.0
    )
    assert not frames.connected  # a live source that is down does not raise
    assert FFMPEG_OPTIONS_ENV not in os.environ  # options go to FFmpeg, not the environment
    stop = RecordingEvent()
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(frames.read(stop)))
    thread.start()
    wait_for(lambda: stop.longest_wait_s >= 30.0, 10, "read() to wait out its backoff")
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 1.0
    assert result == [None]


@pytest.mark.timeout(30)
def test_missing_device_keeps_retrying_until_stopped() -> None:
    device = next(f"/dev/video{n}" for n in range(90, 200) if not os.path.exists(f"/dev/video{n}"))
    frames = opened(device, reconnect_backoff_min_s=0.01, reconnect_backoff_max_s=0.05)
    assert frames.kind == "device" and not frames.connected
    stop = threading.Event()
    thread = threading.Thread(target=frames.read, args=(stop,))
    thread.start()
    wait_for(lambda: frames.reconnects_total >= 3, 10, "reconnect attempts")
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def rtsp_camera(url: str, **overrides: object) -> FrameSource:
    """A FrameSource with short timeouts and backoff, for fault tests."""
    settings: dict[str, object] = {
        "width": 160,
        "height": 120,
        "open_timeout_s": 5.0,
        "read_timeout_s": 1.0,
        "reconnect_backoff_min_s": 0.1,
        "reconnect_backoff_max_s": 0.5,
    }
    settings.update(overrides)
    return opened(url, **settings)


@require_rtsp
@pytest.mark.faults
@pytest.mark.timeout(90)
def test_rtsp_frames_survive_a_server_kill_and_restart(rtsp_server: RtspServer) -> None:
    frames = rtsp_camera(rtsp_server.url)
    assert frames.connected and frames.native_fps == pytest.approx(25.0)
    reader = Reader(frames)
    try:
        wait_for(lambda: frames.frames_total >= 10, 20, "frames from the RTSP server")
        assert reader.shapes == {(120, 160, 3)}
        rtsp_server.stop()  # SIGKILL
        wait_for(lambda: frames.reconnects_total >= 2, 20, "reconnect attempts after the kill")
        assert not frames.connected
        rtsp_server.start()  # same port
        before = frames.frames_total
        wait_for(lambda: frames.frames_total >= before + 10, 30, "frames after the restart")
        assert frames.connected
    finally:
        reader.close()


@require_rtsp
@pytest.mark.faults
@pytest.mark.timeout(90)
def test_lost_stream_log_says_how_long_it_streamed(
    rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    frames = rtsp_camera(rtsp_server.url)
    opened_s = time.monotonic()
    reader = Reader(frames)
    try:
        with caplog.at_level(logging.WARNING, logger="daemon.stages.capture"):
            # Past the frames FFmpeg buffered while probing the stream at open.
            wait_for(lambda: frames.frames_total >= 60, 20, "frames from the RTSP server")
            streamed_s = time.monotonic() - opened_s
            rtsp_server.stop()  # SIGKILL: the next read fails at once
            wait_for(lambda: frames.reconnects_total >= 1, 20, "a reconnect after the kill")
    finally:
        reader.close()
    lost = [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]
    assert lost, caplog.text
    match = re.search(r"after (\d+\.\d) s of streaming \((\d+) frames\)", lost[0])
    assert match, lost[0]
    # Not the failed read's own duration (0.0 s): the time since the stream opened.
    assert float(match[1]) >= round(streamed_s, 1) - 0.1 and int(match[2]) >= 60, lost[0]


@require_rtsp
@pytest.mark.faults
@pytest.mark.timeout(90)
def test_rtsp_stall_is_counted_and_recovers(rtsp_server: RtspServer) -> None:
    frames = rtsp_camera(rtsp_server.url)
    reader = Reader(frames)
    try:
        wait_for(lambda: frames.frames_total >= 10, 20, "frames from the RTSP server")
        assert frames.stalls_total == 0
        rtsp_server.pause()  # SIGSTOP: connection open, no data
        wait_for(lambda: frames.stalls_total >= 1, 20, "a stall to be counted")
        rtsp_server.resume()
        before = frames.frames_total
        wait_for(lambda: frames.frames_total >= before + 10, 30, "frames after the stall")
    finally:
        reader.close()


@require_rtsp
@pytest.mark.timeout(60)
def test_rtsp_camera_fps_drops_frames_down_to_the_configured_rate(rtsp_server: RtspServer) -> None:
    frames = rtsp_camera(rtsp_server.url, fps=5.0)  # the server sends 25 fps
    reader = Reader(frames)
    try:
        wait_for(lambda: len(reader.timestamps_ns) >= 12, 20, "rate-limited frames")
        gaps_s = np.diff(reader.timestamps_ns[2:12]) / 1e9  # after the start-up burst
        assert float(np.median(gaps_s)) == pytest.approx(1 / 5, rel=0.3)
        assert frames.frames_skipped_total >= 20
    finally:
        reader.close()
