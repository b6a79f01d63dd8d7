"""The daemon's alert path end to end: overlay -> events -> supervisor -> outbox -> a real
mosquitto broker; and its availability topic with Last Will."""

from __future__ import annotations

import json
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, wait_for
from models import brightness_model
from mosquitto_fixture import MosquittoBroker, MqttCollector

from daemon.exitcodes import ExitCode
from daemon.outputs.discovery import event_key
from daemon.outputs.outbox import OUTBOX_FILENAME

START_S = 60.0
SEGMENT_FRAMES = 24  # dark, bright, dark, bright, dark: two "bright" events
SEGMENTS = 5
DEVICE = "testbox"


def light_switch_clip(path: Path, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for segment in range(SEGMENTS):
        level = 230 if segment % 2 else 20
        for _ in range(SEGMENT_FRAMES):
            writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def mqtt_daemon(
    tmp: Path,
    broker: MosquittoBroker,
    source: str,
    events_overrides: dict[str, object] | None = None,
    **cam: object,
) -> Daemon:
    model = brightness_model(tmp / "brightness.onnx")
    camera = {"name": "hall", "source": source, "width": 64, "height": 48, **cam}
    sections = {
        "daemon": {"device_id": DEVICE},
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(model), "stride": 2},
        "events": {
            "ignore": ["dark"],
            "start_windows": 2,
            "end_windows": 2,
            "cooldown_s": 0.0,
            **(events_overrides or {}),
        },
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": 2,
            "discovery": False,
        },
    }
    return Daemon(tmp, [camera], sections)


def lights_on_at_the_end_clip(path: Path, frames: int, bright_frames: int) -> Path:
    """Dark frames, then `bright_frames` bright ones at the very end of the file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(frames):
        level = 250 if i >= frames - bright_frames else 20
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def events(collector: MqttCollector) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in collector.messages(f"actiond/{DEVICE}/hall/event")]


@pytest.mark.timeout(180)
def test_events_reach_the_broker_with_ids_and_qos1(
    tmp_path, mosquitto, mqtt_collector, daemons
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/#"])
    clip = light_switch_clip(tmp_path / "lights.mp4")
    d = mqtt_daemon(tmp_path, mosquitto, str(clip), realtime=False, ring_policy="block")
    daemons.append(d.start())
    assert d.wait(START_S + 60) == ExitCode.OK, d.log()
    collector.wait_for(
        lambda ms: sum(1 for m in ms if m.topic.endswith("/event")) >= 4,
        "two start and two end events",
    )
    got = events(collector)
    assert [(e["action"], e["phase"]) for e in got] == [("bright", "start"), ("bright", "end")] * 2
    assert got[0]["id"] == got[1]["id"] != got[2]["id"] == got[3]["id"]
    assert all(m.qos == 1 for m in collector.messages(f"actiond/{DEVICE}/hall/event"))
    assert all(e["camera"] == "hall" and float(e["score_max"]) > 0.6 for e in got)
    status = collector.messages(f"actiond/{DEVICE}/status")
    assert status[-1].payload == b"offline"


@pytest.mark.timeout(180)
def test_the_last_window_of_a_file_makes_its_event(
    tmp_path, mosquitto, mqtt_collector, daemons
) -> None:
    # Clips of 4 frames every 2 frames end at frames 3, 5, ..., 39. With the last 3 of
    # 40 frames bright only the last clip (36..39) scores bright (0.75); the one before
    # (34..37) scores 0.30. Its result is computed after frame 39 reached the overlay.
    frames = 40
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/hall/event"])
    clip = lights_on_at_the_end_clip(tmp_path / "lights-on.mp4", frames, bright_frames=3)
    d = mqtt_daemon(
        tmp_path, mosquitto, str(clip), {"start_windows": 1}, realtime=False, ring_policy="block"
    )
    daemons.append(d.start())
    assert d.wait(START_S + 60) == ExitCode.OK, d.log()
    shown = d.frames()
    assert [f["frame_id"] for f in shown] == list(range(frames))
    assert shown[-1]["result_frame_id"] == frames - 1, shown[-3:]
    assert shown[-1]["label"] == "bright"
    collector.wait_for(lambda ms: len(ms) >= 2, "the start and end of the last window's event")
    got = events(collector)
    assert [(e["phase"], e["end_reason"]) for e in got] == [
        ("start", None),
        ("end", "end_of_stream"),
    ]
    assert got[0]["frame_id"] == frames - 1


def logged_ids(d: Daemon) -> set[str]:
    """Ids of the events the daemon logged as received from its overlay."""
    return {
        line.rsplit("id ", 1)[1].rstrip(")")
        for line in d.log().splitlines()
        if "event hall: bright" in line
    }


def outbox_keys(tmp: Path) -> set[str]:
    """Keys ("<id>:<phase>") of the event records stored in the outbox and not yet
    delivered everywhere."""
    path = tmp / "state" / OUTBOX_FILENAME
    if not path.exists():
        return set()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return {row[0] for row in db.execute("SELECT key FROM events")}


def ids_of(keys: set[str]) -> set[str]:
    return {key.rsplit(":", 1)[0] for key in keys}


@pytest.mark.timeout(240)
def test_outage_and_sigkill_lose_no_event(
    tmp_path, mosquitto_persistent, mqtt_collector, daemons
) -> None:
    broker = mosquitto_persistent
    # A persistent session: the broker keeps QoS 1 messages for us across its restart.
    collector = mqtt_collector(
        broker.port, [f"actiond/{DEVICE}/hall/event"], client_id="watcher", clean_session=False
    )
    clip = light_switch_clip(tmp_path / "lights.mp4")
    d = mqtt_daemon(tmp_path, broker, str(clip), realtime=True, loop=True)
    daemons.append(d.start())
    collector.wait_for(lambda ms: len(ms) >= 1, "a first event", START_S)
    broker.stop()
    before = logged_ids(d)
    # An event taken but not yet stored when the supervisor is SIGKILLed is lost, as the
    # README says: the kill waits until two events of the outage are in the outbox.
    wait_for(
        lambda: len((logged_ids(d) - before) & ids_of(outbox_keys(tmp_path))) >= 2,
        START_S,
        "two events of the outage in the outbox",
    )
    # The daemon dies with those events still in its outbox.
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    wanted = outbox_keys(tmp_path)  # every record, start and end, by its outbox key
    assert len(ids_of(wanted) - before) >= 2, wanted
    broker.start()
    again = mqtt_daemon(tmp_path, broker, "test:still", fps=10)  # same state dir
    daemons.append(again.start())

    def delivered() -> set[str]:
        return {event_key(json.loads(m.payload)) for m in collector.messages()}

    try:
        wait_for(lambda: wanted <= delivered(), START_S, "every stored event record, by key")
    except AssertionError as exc:
        missing = wanted - delivered()
        raise AssertionError(
            f"{exc}: {len(missing)} of {len(wanted)} not delivered, "
            f"{len(missing & outbox_keys(tmp_path))} of them still in the outbox; "
            f"the restarted daemon's log:\n{again.log()[-3000:]}"
        ) from exc
    assert again.stop() == ExitCode.OK


@pytest.mark.timeout(180)
def test_status_online_then_last_will_after_sigkill(
    tmp_path, mosquitto, mqtt_collector, daemons
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/status"])
    d = mqtt_daemon(tmp_path, mosquitto, "test:still", fps=10)
    daemons.append(d.start())
    collector.wait_message(f"actiond/{DEVICE}/status", b"online", START_S)
    wait_for(lambda: d.heartbeat_fresh("hall.overlay"), START_S, "workers up")
    pids = [d.worker_pid(w) for w in ("hall.source", "hall.motion", "hall.overlay")]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    collector.wait_for(lambda ms: ms[-1].payload == b"offline", "the Last Will", 20)

    def gone(pid: int) -> bool:
        """Exited: no such process, or a zombie waiting for its new parent to reap it."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    wait_for(lambda: all(gone(p) for p in pids), 20, "orphaned workers to exit")


@pytest.mark.timeout(180)
def test_unreachable_broker_is_logged_pipeline_runs_outbox_holds(tmp_path, daemons) -> None:
    closed = MosquittoBroker(tmp_path / "never-started")  # a free port nobody listens on
    clip = light_switch_clip(tmp_path / "lights.mp4")
    d = mqtt_daemon(tmp_path, closed, str(clip), realtime=True, loop=True)
    daemons.append(d.start())
    wait_for(lambda: len(logged_ids(d)) >= 2, START_S, "events with no broker")
    frames = len(d.frames())
    wait_for(lambda: len(d.frames()) > frames + 20, START_S, "frames keep flowing")
    log = d.log()
    assert f"127.0.0.1:{closed.port}" in log and "connection refused" in log
    assert "Traceback" not in log
    outbox = tmp_path / "state" / "events-outbox.sqlite3"
    with sqlite3.connect(outbox) as db:
        held = db.execute("SELECT COUNT(*) FROM deliveries WHERE sink = 'mqtt'").fetchone()[0]
    assert held >= 2, "every event must wait in the outbox"
    assert d.stop() == ExitCode.OK
