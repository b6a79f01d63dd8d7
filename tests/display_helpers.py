"""Helpers of the display tests: marked frames, an MJPEG server with a publisher thread,
HTTP requests and stream parts, and counting the frames of a recording."""

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
from media import draw_marker, read_marker

from daemon.display.mjpeg import MjpegServer

WIDTH, HEIGHT = 320, 240
PUBLISH_INTERVAL_S = 0.02  # publisher pacing (about 50 fps), not a synchronisation
HTTP_TIMEOUT_S = 5.0
DEADLINE_S = 10.0
STOP_PROMPT_S = 1.5  # well below the 10 s client socket timeout stop() must not wait


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
def running_server(quality: int = 80, max_clients: int = 8) -> Iterator[MjpegServer]:
    server = MjpegServer("127.0.0.1:0", quality, max_clients=max_clients)
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
