"""Display outputs: the MJPEG server over real sockets, the window check, recording."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.config import DisplayConfig
from daemon.outputs.display import (
    DisplayUnavailable, Recorder, WindowOutput, gui_backend, open_outputs,
)
from daemon.outputs.mjpeg import MjpegServer
from media import draw_marker, read_marker

WIDTH, HEIGHT = 320, 240
PUBLISH_INTERVAL_S = 0.02    # publisher pacing (about 50 fps), not a synchronisation
HTTP_TIMEOUT_S = 5.0
DEADLINE_S = 10.0
STOP_PROMPT_S = 1.5          # well below the 10 s client socket timeout stop() must not wait


def make_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A BGR frame carrying ``index`` as a marker strip."""
    frame = np.full((height, width, 3), 90, np.uint8)
    cv2.circle(frame, (width // 2, height // 2), height // 4, (30, 200, 60), -1)
    draw_marker(frame, index)
    return frame


def noise_frame(index: int) -> np.ndarray:
    """A 640x480 frame that compresses badly, so socket buffers fill after a few."""
    frame = np.random.default_rng(index).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    draw_marker(frame, index)
    return frame


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running_server(quality: int = 80) -> Iterator[MjpegServer]:
    server = MjpegServer("127.0.0.1:0", quality)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def publishing(server: MjpegServer, first_index: int = 1) -> Iterator[None]:
    """Publish marked frames from a thread, like the overlay worker does."""
    stop = threading.Event()

    def loop() -> None:
        index = first_index
        while not stop.is_set():
            server.publish(make_frame(index))
            index += 1
            stop.wait(PUBLISH_INTERVAL_S)

    thread = threading.Thread(target=loop, name="test-publisher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_S)
        assert not thread.is_alive(), "publisher thread did not end"


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def open_stream(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    assert resp.readline() == b"--frame\r\n"
    return conn, resp


def read_part(resp: http.client.HTTPResponse) -> np.ndarray:
    """Read one multipart JPEG part (headers, body, boundary) and decode it."""
    headers: dict[str, str] = {}
    while (line := resp.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("ascii").partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers.get("content-type") == "image/jpeg", headers
    body = resp.read(int(headers["content-length"]))
    assert resp.read(2) == b"\r\n"
    assert resp.readline() == b"--frame\r\n"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "stream part is not a decodable JPEG"
    return image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def count_frames(path: Path) -> tuple[int, list[int], tuple[int, int]]:
    """Frames in a video file, their markers and the frame size (width, height)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot reopen {path}"
    markers: list[int] = []
    size = (0, 0)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            markers.append(read_marker(frame))
            size = (frame.shape[1], frame.shape[0])
    finally:
        cap.release()
    return len(markers), markers, size


# --- MJPEG ---------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_page_snapshot_and_stream() -> None:
    with running_server() as server:
        server.publish(make_frame(0))
        with publishing(server):
            status, headers, body = get(server.port, "/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b'<img src="/stream.mjpg"' in body

            status, headers, body = get(server.port, "/snapshot.jpg")
            assert status == 200 and headers["content-type"] == "image/jpeg"
            snapshot = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert snapshot is not None and snapshot.shape == (HEIGHT, WIDTH, 3)

            conn, resp = open_stream(server.port)
            try:
                frames = [read_part(resp) for _ in range(3)]
            finally:
                conn.close()
    assert all(frame.shape == (HEIGHT, WIDTH, 3) for frame in frames)
    markers = [read_marker(frame) for frame in frames]
    assert markers == sorted(set(markers)), f"stream frames not new each time: {markers}"
    counters = server.counters
    assert counters.clients_total == 1
    assert counters.frames_served >= 4   # three parts and the snapshot
    assert 0 < counters.frames_encoded <= counters.frames_published


@pytest.mark.timeout(30)
def test_503_before_first_frame_and_404() -> None:
    with running_server() as server:
        status, headers, body = get(server.port, "/snapshot.jpg")
        assert status == 503
        assert b"no frame yet" in body and headers.get("retry-after") == "1"
        status, _, body = get(server.port, "/nope")
        assert status == 404 and b"/stream.mjpg" in body


@pytest.mark.timeout(30)
def test_stream_opened_before_first_frame_gets_frames() -> None:
    with running_server() as server:
        conn, resp = open_stream(server.port)
        try:
            wait_until(lambda: server.counters.clients == 1, "the stream client to register")
            with publishing(server, first_index=5):
                frame = read_part(resp)
        finally:
            conn.close()
    assert read_marker(frame) >= 5


@pytest.mark.timeout(30)
def test_one_encode_per_frame_for_several_clients() -> None:
    with running_server() as server, publishing(server):
        streams = [open_stream(server.port) for _ in range(3)]
        try:
            for _, resp in streams:
                for _ in range(3):
                    read_part(resp)
        finally:
            for conn, _ in streams:
                conn.close()
    counters = server.counters   # read after stop(), which drains the client threads
    assert counters.frames_served >= 9
    assert counters.frames_encoded <= counters.frames_published, counters


@pytest.mark.timeout(30)
def test_client_vanishing_mid_stream_does_not_break_server(
        caplog: pytest.LogCaptureFixture) -> None:
    with running_server() as server, publishing(server):
        rude = socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S)
        rude.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        assert rude.recv(4096), "no stream data before the disconnect"
        rude.close()   # unread data pending: the kernel answers the server with a reset
        wait_until(lambda: server.counters.clients == 0, "the server to notice the disconnect")

        conn, resp = open_stream(server.port)
        try:
            frames = [read_part(resp) for _ in range(3)]
        finally:
            conn.close()
    assert len(frames) == 3 and server.counters.clients_total == 2
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.timeout(60)
def test_slow_client_never_stalls_publish() -> None:
    frames_to_publish = 60
    with running_server() as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(HTTP_TIMEOUT_S)
        slow.connect(("127.0.0.1", server.port))
        try:
            slow.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
            wait_until(lambda: server.counters.clients == 1, "the slow client to register")
            for index in range(frames_to_publish):   # would hang here if publish waited
                server.publish(noise_frame(index))
            assert server.counters.frames_served < frames_to_publish

            def drained_and_skipped() -> bool:
                try:
                    chunk: bytes | None = slow.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:   # nothing buffered right now
                    chunk = None
                assert chunk != b"", "server closed the slow client"
                return server.counters.frames_skipped > 0

            # Once the client reads again, its handler sends the newest frame, skipping ahead.
            wait_until(drained_and_skipped, "the slow client's handler to skip frames")
        finally:
            slow.close()
    assert server.counters.frames_published == frames_to_publish


@pytest.mark.timeout(30)
def test_stop_is_prompt_and_releases_port() -> None:
    server = MjpegServer("127.0.0.1:0")
    server.start()
    port = server.port
    server.publish(noise_frame(0))
    stuck = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")     # never reads: blocks sendall
    silent = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S)
    try:
        wait_until(lambda: server.counters.clients == 1, "the stuck client to register")
        for index in range(1, 40):
            server.publish(noise_frame(index))
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
    finally:
        stuck.close()
        silent.close()
    assert elapsed < STOP_PROMPT_S, f"stop() took {elapsed:.2f} s"
    assert not any(t.name == "mjpeg-http" for t in threading.enumerate())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S).close()
    again = MjpegServer(f"127.0.0.1:{port}")
    again.start()
    try:
        assert again.port == port
    finally:
        again.stop()


@pytest.mark.timeout(30)
def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="mjpeg_listen"):
        MjpegServer("localhost:http")
    with pytest.raises(ValueError, match="jpeg_quality"):
        MjpegServer("127.0.0.1:0", jpeg_quality=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(DisplayUnavailable, match="mjpeg_listen.*cannot listen"):
            open_outputs(DisplayConfig(mjpeg_listen=listen), 10.0, (WIDTH, HEIGHT))


# --- window ----------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_window_without_gui_points_to_mjpeg() -> None:
    if gui_backend(cv2.getBuildInformation()) is not None:
        pytest.skip("this OpenCV has a GUI backend; the headless error cannot happen")
    with pytest.raises(DisplayUnavailable) as caught:
        WindowOutput("actiond")
    message = str(caught.value)
    assert "mjpeg_listen" in message and "opencv-python-headless" in message


@pytest.mark.parametrize(("info", "expected"), [
    ("  GUI:                           NONE\n    VTK support:  NO\n", None),
    ("  GUI:                           GTK3\n    GTK+:         YES (ver 3.24.5)\n", "GTK3"),
    ("  GUI:\n    QT:                          NO\n    GTK+ 2.x:                    YES\n"
     "  Media I/O:\n    PNG:   YES\n", "GTK+ 2.x"),
    ("  GUI:\n    QT:                          NO\n  Media I/O:\n    JPEG:    YES\n", None),
])
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
    with pytest.raises(ConnectionRefusedError):   # the MJPEG server opened first was stopped
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S).close()


@pytest.mark.timeout(30)
def test_no_outputs_configured() -> None:
    with open_outputs(DisplayConfig(), 15.0, (WIDTH, HEIGHT)) as outputs:
        assert not outputs.enabled
        outputs.show(make_frame(0))   # a no-op, and must not fail
