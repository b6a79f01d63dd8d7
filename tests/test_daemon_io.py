"""The daemon against real peers: an RTSP server, a fake systemd notify socket, a browser's
HTTP requests to the MJPEG view."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families
from rtsp_fixture import RtspServer

from daemon.exitcodes import ExitCode

START_S = 60.0
SMALL = {"motion": {"width": 64, "height": 64}}


@pytest.mark.timeout(240)
def test_rtsp_camera_reconnects_after_the_server_restarts(
    tmp_path: Path, daemons, rtsp_server: RtspServer
) -> None:
    cam = {
        "name": "door",
        "source": rtsp_server.url,
        "width": 160,
        "height": 120,
        "open_timeout_s": 3.0,
        "read_timeout_s": 2.0,
        "reconnect_backoff_min_s": 0.2,
        "reconnect_backoff_max_s": 1.0,
    }
    d = Daemon(tmp_path, [cam], SMALL)
    daemons.append(d.start())
    wait_for(lambda: len(d.frames()) > 10, START_S, "frames from the RTSP camera")
    rtsp_server.stop()
    wait_for(
        lambda: d.stats("door.source").get("reconnects_total", 0) >= 1,
        START_S,
        "the source to notice the lost stream",
    )
    rtsp_server.start()
    shown = len(d.frames())
    wait_for(lambda: len(d.frames()) > shown + 10, START_S, "frames after the server restart")
    assert d.stats("door.source")["reconnects_total"] >= 1
    assert d.stop() == ExitCode.OK
    assert d.leftovers() == []


@pytest.mark.timeout(180)
def test_sd_notify_ready_watchdog_status_stopping(tmp_path: Path, daemons) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    messages: list[str] = []

    def received(prefix: str) -> bool:
        try:
            messages.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            pass  # nothing this round; the deadline in wait_for bounds the wait
        return any(m.startswith(prefix) for m in messages)

    cam = {"name": "cam", "source": "test:moving-box", "fps": 10, "width": 160, "height": 120}
    d = Daemon(tmp_path, [cam], SMALL, env={"NOTIFY_SOCKET": str(sock_path)})
    daemons.append(d.start())
    try:
        wait_for(lambda: received("READY=1"), START_S, "READY=1")
        wait_for(lambda: received("WATCHDOG=1"), START_S, "WATCHDOG=1")
        wait_for(lambda: received("STATUS=cam:"), START_S, "a STATUS= line")
        d.signal(signal.SIGTERM)
        wait_for(lambda: received("STOPPING=1"), START_S, "STOPPING=1")
        assert d.wait(30) == ExitCode.OK
    finally:
        sock.close()


@pytest.mark.timeout(180)
def test_mjpeg_view_serves_the_overlay(tmp_path: Path, daemons) -> None:
    port = free_port()
    cam = {"name": "cam", "source": "test:moving-box", "fps": 10, "width": 160, "height": 120}
    d = Daemon(tmp_path, [cam], {**SMALL, "display": {"mjpeg_listen": f"127.0.0.1:{port}"}})
    daemons.append(d.start())
    wait_for(lambda: len(d.frames()) > 3, START_S, "frames at the overlay")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    page = conn.getresponse().read().decode()
    assert "stream.mjpg" in page
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.status == 200
    assert "multipart/x-mixed-replace" in resp.getheader("Content-Type", "")
    jpegs = []
    while len(jpegs) < 3:
        line = resp.fp.readline()
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            resp.fp.readline()
            jpegs.append(resp.fp.read(length))
    for data in jpegs:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (120, 160, 3)
    # The overlay reports its viewers for actiond_mjpeg_viewers.
    wait_for(
        lambda: d.stats("cam.overlay").get("mjpeg_viewers") == 1,
        START_S,
        "the overlay to count its one viewer",
    )
    resp.close()
    conn.close()
    wait_for(
        lambda: d.stats("cam.overlay").get("mjpeg_viewers") == 0,
        START_S,
        "the overlay to count the viewer out",
    )
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(180)
def test_metrics_endpoint_reports_the_pipeline_and_passes_promtool(tmp_path: Path, daemons) -> None:
    port = free_port()
    cam = {"name": "cam", "source": "test:moving-box", "fps": 10, "width": 160, "height": 120}
    d = Daemon(tmp_path, [cam], {**SMALL, "metrics": {"listen": f"127.0.0.1:{port}"}})
    daemons.append(d.start())
    wait_for(lambda: len(d.frames()) > 10, START_S, "frames at the overlay")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def frames_out(text: str) -> dict[str, float]:
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return {
            s.labels["stage"]: s.value
            for s in families["actiond_stage_frames_out"].samples
            if s.labels.get("camera") in ("cam", "all") and s.name.endswith("_total")
        }

    text = scrape()
    first = frames_out(text)
    assert first["source"] > 0 and first["overlay"] > 0
    up = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "actiond_worker_up"
        for s in f.samples
    ]
    assert up and all(s.value == 1 for s in up)
    assert "actiond_mqtt_connected" not in text  # MQTT is off: no broker alerts
    promtool = shutil.which("promtool")
    if promtool:
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text, text=True, capture_output=True, timeout=30
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    # Values are read from the workers at scrape time: the counter keeps moving.
    wait_for(lambda: frames_out(scrape())["source"] > first["source"], 20, "a newer count")
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(180)
def test_no_ready_before_every_camera_fails_and_the_end_of_files_is_named(
    tmp_path: Path, daemons
) -> None:
    from media import make_clip, make_corrupt_file

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    bad = make_corrupt_file(tmp_path / "bad.mp4")
    cam = {"name": "cam", "source": str(bad), "width": 160, "height": 120}
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    d = Daemon(tmp_path / "a", [cam], SMALL, env={"NOTIFY_SOCKET": str(sock_path)})
    daemons.append(d.start())
    try:
        assert d.wait(START_S) == ExitCode.ALL_CAMERAS_FAILED, d.log()
        messages = []
        while True:
            try:
                messages.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                break
    finally:
        sock.close()
    assert "READY=1" not in messages, messages
    assert "every camera has failed (cam)" in d.log()
    clip = make_clip(tmp_path / "ok.mp4", frames=24, size=(160, 120), pattern="moving-box", fps=30)
    ok = Daemon(tmp_path / "b", [{**cam, "source": str(clip), "realtime": False}], SMALL)
    daemons.append(ok.start())
    assert ok.wait(START_S) == ExitCode.OK, ok.log()
    assert "every camera's source has ended (end of file)" in ok.log()
