"""The MJPEG server over real sockets: page, snapshot, stream, slow and vanishing clients,
prompt stop, and the cap on viewers."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest
from display_helpers import (
    HEIGHT,
    HTTP_TIMEOUT_S,
    STOP_PROMPT_S,
    WIDTH,
    get,
    make_frame,
    noise_frame,
    open_stream,
    publishing,
    read_part,
    running_server,
    wait_until,
)
from media import read_marker

from daemon.config import DisplayConfig
from daemon.display.mjpeg import MjpegServer
from daemon.display.outputs import DisplayUnavailable, open_outputs


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
    assert counters.frames_served >= 4  # three parts and the snapshot
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
    counters = server.counters  # read after stop(), which drains the client threads
    assert counters.frames_served >= 9
    assert counters.frames_encoded <= counters.frames_published, counters


@pytest.mark.timeout(30)
def test_client_vanishing_mid_stream_does_not_break_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_server() as server, publishing(server):
        rude = socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S)
        rude.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        assert rude.recv(4096), "no stream data before the disconnect"
        rude.close()  # unread data pending: the kernel answers the server with a reset
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
            for index in range(frames_to_publish):  # would hang here if publish waited
                server.publish(noise_frame(index))
            assert server.counters.frames_served < frames_to_publish

            def drained_and_skipped() -> bool:
                try:
                    chunk: bytes | None = slow.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:  # nothing buffered right now
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
    stuck.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # never reads: blocks sendall
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


@pytest.mark.timeout(60)
def test_streams_past_max_clients_get_503_until_one_leaves() -> None:
    # Each viewer holds a thread and a share of the uplink: an edge box caps them.
    with running_server(max_clients=2) as server, publishing(server):
        first, second = open_stream(server.port), open_stream(server.port)
        status, headers, body = get(server.port, "/stream.mjpg")
        assert status == 503 and headers.get("retry-after") == "5"
        assert b"too many viewers: 2 streams are open" in body
        assert b"display.mjpeg_max_clients" in body
        assert get(server.port, "/snapshot.jpg")[0] == 200, "snapshots are not capped"
        assert server.counters.clients_refused == 1
        for part in (first[1], first[0]):  # the response holds the socket open too
            part.close()
        wait_until(lambda: server.counters.clients == 1, "the closed stream to be counted out")
        conn, resp = open_stream(server.port)
        read_part(resp)
        for part in (*second, resp, conn):
            part.close()


@pytest.mark.timeout(60)
def test_connections_past_streams_and_spares_are_closed_at_once() -> None:
    # Silent connections (no request) must not grow threads without bound.
    with running_server(max_clients=1) as server:
        silent = [
            socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S)
            for _ in range(1 + 8)
        ]  # max_clients + SPARE_CONNECTIONS
        try:
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S)
            assert extra.recv(1) == b"", "the connection past the cap was not closed"
            extra.close()
        finally:
            for conn in silent:
                conn.close()

        def snapshot_status() -> int | None:
            # Until the server's threads have seen the silent connections close, a new
            # one is still past the cap and closed at once, as asserted above.
            try:
                return get(server.port, "/snapshot.jpg")[0]
            except ConnectionError:
                return None

        wait_until(
            lambda: snapshot_status() == 503,
            "the server to serve again once the silent connections closed",
        )
