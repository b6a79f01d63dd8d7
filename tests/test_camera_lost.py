"""A camera whose stream drops while an event is open, end to end: a real RTSP server
(gst-rtsp-server) serving a white picture, the real daemon, a real mosquitto.

The brightness model calls the white picture "bright", so an event opens and stays open.
Killing the RTSP server must end it promptly with `end_reason: stream_lost`, and take the
camera's availability (and with it its Home Assistant entities) offline; once frames flow
again the camera is online again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_proc import Daemon
from models import brightness_model
from mosquitto_fixture import MosquittoBroker, MqttCollector, Received
from rtsp_fixture import APT_PACKAGES, MISSING_RTSP_REQUIREMENTS, RtspServer

from daemon.exitcodes import ExitCode
from daemon.outputs.ha_ids import KIND_EVENT, HaEntity

DEVICE = "lostbox"
CAMERA = "door"
BASE = f"actiond/{DEVICE}/{CAMERA}"
START_S = 60.0
# From the kill to the end record and to `offline`: the source notices the broken
# connection at once, the overlay on its next idle step, the supervisor on its next tick.
PROMPT_S = 5.0
READ_TIMEOUT_S = 2.0


@pytest.fixture
def white_rtsp(tmp_path: Path) -> RtspServer:
    if MISSING_RTSP_REQUIREMENTS:
        pytest.skip(
            f"RTSP test server unavailable: missing {MISSING_RTSP_REQUIREMENTS}; "
            f"apt-get install {APT_PACKAGES}"
        )
    server = RtspServer(tmp_path / "rtsp_server.log", ("--pattern", "white", "--fps", "10"))
    try:
        server.start()
        yield server
    finally:
        server.close()


def lost_daemon(tmp: Path, broker: MosquittoBroker, url: str) -> Daemon:
    camera = {
        "name": CAMERA,
        "source": url,
        "width": 64,
        "height": 48,
        "fps": 10,
        "open_timeout_s": 3.0,
        "read_timeout_s": READ_TIMEOUT_S,
        "reconnect_backoff_min_s": 0.1,
        "reconnect_backoff_max_s": 0.5,
    }
    sections: dict[str, dict[str, object]] = {
        "daemon": {"device_id": DEVICE},
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(brightness_model(tmp / "brightness.onnx")), "stride": 2},
        # `dark` is this model's "nothing happens": ignored, it is not offered as an action.
        "events": {"ignore": ["dark"], "start_windows": 2, "end_windows": 2, "cooldown_s": 0.0},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": 2,
            "discovery": True,
            "snapshots": False,
        },
    }
    return Daemon(tmp, [camera], sections)


def payloads(messages: list[Received], topic: str) -> list[bytes]:
    return [m.payload for m in messages if m.topic == topic]


def records(collector: MqttCollector) -> list[dict[str, object]]:
    return [json.loads(p) for p in payloads(collector.messages(), f"{BASE}/event")]


@pytest.mark.timeout(240)
def test_lost_stream_ends_the_open_event_and_takes_the_camera_offline(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    white_rtsp: RtspServer,
    mqtt_collector: Callable[..., MqttCollector],
    daemons: list[Daemon],
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/#", "homeassistant/#"])
    d = lost_daemon(tmp_path, mosquitto, white_rtsp.url)
    daemons.append(d.start())
    collector.wait_for(
        lambda ms: payloads(ms, f"{BASE}/availability")[-1:] == [b"online"],
        "the camera online once its frames flow",
        START_S,
    )
    collector.wait_for(
        lambda ms: any(r["phase"] == "start" for r in records(collector)),
        "a bright event to open",
        START_S,
    )
    collector.wait_for(
        lambda ms: payloads(ms, f"{BASE}/state")[-1:] == [b"bright"], "the state to say bright"
    )
    assert not any(r["phase"] == "end" for r in records(collector))

    white_rtsp.stop()  # SIGKILL: the camera is gone mid-event
    killed_at = time.monotonic()
    collector.wait_for(
        lambda ms: any(r["phase"] == "end" for r in records(collector)),
        "the open event to end after the stream was lost",
        PROMPT_S,
    )
    ended_s = time.monotonic() - killed_at
    collector.wait_for(
        lambda ms: payloads(ms, f"{BASE}/availability")[-1:] == [b"offline"],
        "the camera offline",
        PROMPT_S,
    )
    offline_s = time.monotonic() - killed_at
    print(f"stream lost -> event ended in {ended_s:.2f} s, camera offline in {offline_s:.2f} s")
    start, end = records(collector)
    assert end["id"] == start["id"] and end["end_reason"] == "stream_lost"
    collector.wait_for(
        lambda ms: payloads(ms, f"{BASE}/state")[-1:] == [b"idle"], "the state to say idle"
    )

    white_rtsp.start()
    collector.wait_for(
        lambda ms: payloads(ms, f"{BASE}/availability")[-1:] == [b"online"],
        "the camera online again once frames flow",
        START_S,
    )
    assert "camera door: stream lost; ended bright" in d.log()

    # A stalled stream (the connection stays open, no data): lost after read_timeout_s.
    collector.wait_for(lambda ms: len(records(collector)) == 3, "a new event", START_S)
    white_rtsp.pause()
    try:
        collector.wait_for(
            lambda ms: len(records(collector)) == 4,
            "the event to end after the stall",
            READ_TIMEOUT_S + PROMPT_S,
        )
        collector.wait_for(
            lambda ms: payloads(ms, f"{BASE}/availability")[-1:] == [b"offline"],
            "the stalled camera offline",
            PROMPT_S,
        )
    finally:
        white_rtsp.resume()
    assert records(collector)[-1]["end_reason"] == "stream_lost"

    # Home Assistant is offered the actions (not the ignored label) and entities that
    # depend on the camera's availability.
    configs = {
        m.topic: json.loads(m.payload)
        for m in collector.messages()
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload
    }
    event_id = HaEntity(DEVICE, CAMERA, KIND_EVENT).object_id
    event_config = configs[f"homeassistant/event/{DEVICE}/{event_id}/config"]
    assert event_config["event_types"] == ["bright"]
    assert {"topic": f"{BASE}/availability"} in event_config["availability"]
    assert not any(f"/{CAMERA}_dark_" in t for t in configs)
    assert d.stop() == ExitCode.OK
    assert "Traceback" not in d.log()
