"""The PyAV backend of live streams (daemon.capture.rtsp.StreamCapture): a read is bounded
by read_timeout_s even while other streams (audio) go on; a codec without a decoder is a
clear reason, not a traceback; a live frame leaves the decoder with its own packet (no
frame threading delay); OpenCV-only keys of OPENCV_FFMPEG_CAPTURE_OPTIONS are warned
about once. Real streams: GStreamer's gst-launch serving MPEG-TS over TCP, real files."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from av.packet import Packet
from av.video.stream import VideoStream
from daemon_proc import free_port, wait_for
from media import make_clip, read_marker

from daemon.capture import rtsp
from daemon.capture.file import FileCapture
from daemon.capture.protocol import OpenOptions, SourceError
from daemon.capture.rtsp import StreamCapture, stream_options

pytestmark = pytest.mark.timeout(60)

VIDEO_FRAMES = 100  # at 25 fps: four seconds of video, then audio only
READ_TIMEOUT_S = 1.0
# A read after the video stopped may take read_timeout_s, plus one more for the blocked
# packet read PyAV's own timeout ends; the audio goes on until the server is stopped.
MAX_STALL_S = 2 * READ_TIMEOUT_S + 0.5
# Reading that goes on this long after the first frame did not stop with the video.
GIVE_UP_S = 15.0


def gst_launch() -> str:
    path = shutil.which("gst-launch-1.0")
    if path is None:
        pytest.skip("gst-launch-1.0 (gstreamer1.0-tools, .ci/apt-packages.txt) is missing")
    return path


@pytest.fixture
def audio_outlives_video() -> Iterator[str]:
    """tcp:// URL of an MPEG-TS stream: H.264 video for VIDEO_FRAMES frames, then MP2
    audio only until the server is stopped."""
    port = free_port()
    pipeline = (
        f"mpegtsmux name=mux ! tcpserversink host=127.0.0.1 port={port} "
        f"videotestsrc is-live=true num-buffers={VIDEO_FRAMES} ! "
        "video/x-raw,width=320,height=240,framerate=25/1 ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5 ! h264parse ! mux. "
        "audiotestsrc is-live=true ! audioconvert ! avenc_mp2 ! mux."
    )
    server = subprocess.Popen(
        [gst_launch(), "-q", *pipeline.split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 10, f"gst-launch listening on port {port}")
        yield f"tcp://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def test_a_live_read_ends_when_the_video_stops_though_the_audio_goes_on(
    audio_outlives_video: str,
) -> None:
    cap = StreamCapture(
        audio_outlives_video, OpenOptions(open_timeout_s=5, read_timeout_s=READ_TIMEOUT_S)
    )
    assert cap.open()
    started = time.monotonic()
    frames, last_frame_at = 0, started
    while cap.read() is not None:
        frames, last_frame_at = frames + 1, time.monotonic()
        assert time.monotonic() - started < GIVE_UP_S, "read() did not stop with the video"
    stalled_s = time.monotonic() - last_frame_at
    cap.release()
    assert frames > 10
    # Before: read() went on reading (and dropping) audio until the server closed.
    assert stalled_s < MAX_STALL_S, stalled_s


@pytest.fixture(scope="module")
def unknown_codec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AVI whose video codec tag no FFmpeg decoder knows (MJPG renamed QQQQ)."""
    folder = tmp_path_factory.mktemp("codec")
    clip = make_clip(folder / "mjpg.avi", frames=10, size=(64, 48), codec="MJPG")
    unknown = folder / "unknown.avi"
    unknown.write_bytes(clip.read_bytes().replace(b"MJPG", b"QQQQ"))
    return unknown


def test_a_video_codec_without_a_decoder_is_a_clear_error(unknown_codec: Path) -> None:
    with pytest.raises(SourceError, match=r"unknown\.avi.*: no decoder for its video codec"):
        FileCapture(str(unknown_codec), OpenOptions()).open()


def test_a_live_codec_without_a_decoder_is_retried_with_its_reason(
    unknown_codec: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.capture")
    assert StreamCapture(f"file:{unknown_codec}", OpenOptions()).open() is False
    assert "no decoder for its video codec" in caplog.text


class PacketCounting(StreamCapture):
    """StreamCapture that counts the packets it has given the decoder."""

    packets = 0

    def _decode(self, packet: Packet[VideoStream]) -> None:
        self.packets += 1
        super()._decode(packet)


def test_a_live_frame_leaves_the_decoder_with_its_own_packet(tmp_path: Path) -> None:
    # A big frame, so that libavcodec's frame threading (AUTO) has several threads.
    clip = make_clip(tmp_path / "clip.mp4", frames=20, size=(640, 360))
    cap = PacketCounting(f"file:{clip}", OpenOptions())
    assert cap.open()
    for index in range(5):
        frame = cap.read()
        assert frame is not None and read_marker(frame) == index
        # Before: frame threading held frames back, packets ran ahead of frames.
        assert cap.packets == index + 1, (index, cap.packets)
    cap.release()


def test_opencv_only_options_are_dropped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    rtsp.warn_opencv_only_key.cache_clear()
    caplog.set_level(logging.WARNING, logger="daemon.capture")
    entries = "avdiscard;nonref|video_codec;h264_cuvid|buffer_size;1024000"
    for _ in range(3):  # every reopen of every camera
        options = stream_options("rtsp://camera/stream", entries)
        assert options == {"buffer_size": "1024000", "rtsp_transport": "tcp"}
    warnings = [r.getMessage() for r in caplog.records if "OpenCV's reader" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "'avdiscard'" in warnings[0] and "'video_codec'" in warnings[1]
