"""SIGHUP reload against a real daemon, a real mosquitto and real scrapes: one change per
config section, each seen from outside (topics, ports, worker pids, the log)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import tomllib
import urllib.error
from pathlib import Path

import pytest
from daemon_proc import Daemon, free_port, wait_for
from metrics_helpers import scrape_text
from models import brightness_model
from mosquitto_fixture import MosquittoBroker, MqttCollector
from test_daemon_mqtt import light_switch_clip

from daemon.bench.procstats import toml_document
from daemon.exitcodes import ExitCode
from daemon.ipc.events_channel import EventReceiver
from daemon.outputs.metrics import MetricsServerError, MetricsSnapshot, make_registry
from daemon.supervisor.outputs import Outputs

START_S = 60.0
STEP_S = 60.0
DEVICE = "reloadbox"
CAMERA = "hall"
CAMERA_WORKERS = (f"{CAMERA}.source", f"{CAMERA}.motion", f"{CAMERA}.overlay")
ALL_WORKERS = (*CAMERA_WORKERS, "infer.0")
MISLEADING = "died (exit code 0)"


def reload_daemon(tmp: Path, broker: MosquittoBroker, metrics_listen: str = "") -> Daemon:
    """The light-switch clip on a loop: a `bright` event every couple of seconds."""
    clip = light_switch_clip(tmp / "lights.mp4")
    camera = {"name": CAMERA, "source": str(clip), "width": 64, "height": 48, "loop": True}
    sections = {
        "daemon": {"device_id": DEVICE},
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(brightness_model(tmp / "brightness.onnx")), "stride": 2},
        "events": {"ignore": ["dark"], "start_windows": 2, "end_windows": 2, "cooldown_s": 0.0},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": 2,
            "discovery": False,
        },
        "metrics": {"listen": metrics_listen},
    }
    return Daemon(tmp, [camera], sections)


def reload_with(d: Daemon, **sections: dict[str, object]) -> None:
    """Change keys of some sections in the daemon's config file (one write), then SIGHUP."""
    data = tomllib.loads(d.config.read_text())
    cameras = data.pop("cameras")
    for section, values in sections.items():
        (cameras[0] if section == "cameras" else data.setdefault(section, {})).update(values)
    d.config.write_text(toml_document(data, cameras))
    d.signal(signal.SIGHUP)


def pids(d: Daemon, names: tuple[str, ...] = ALL_WORKERS) -> dict[str, int]:
    return {name: d.worker_pid(name) for name in names}


def all_up(d: Daemon, names: tuple[str, ...] = ALL_WORKERS) -> bool:
    return all(d.heartbeat_fresh(n) for n in names)


def restarted(d: Daemon, before: dict[str, int], names: tuple[str, ...]) -> bool:
    """Each of `names` runs again, under a new pid, with a fresh heartbeat."""
    now = pids(d, names)
    return all(now[n] not in (0, before[n]) for n in names) and all_up(d, names)


def answers(url: str) -> bool:
    try:
        scrape_text(url)
    except urllib.error.URLError:
        return False
    return True


def refused(url: str) -> bool:
    try:
        scrape_text(url)
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def events_under(collector: MqttCollector, prefix: str) -> list[dict[str, object]]:
    return [
        json.loads(m.payload)
        for m in collector.messages()
        if m.topic == f"{prefix}/{DEVICE}/{CAMERA}/event"
    ]


@pytest.mark.timeout(240)
def test_reload_reopens_mqtt_and_metrics(tmp_path, mosquitto, mqtt_collector, daemons) -> None:
    collector = mqtt_collector(mosquitto.port, [f"+/{DEVICE}/#"])
    port_a, port_b = free_port(), free_port()
    url_a, url_b = (f"http://127.0.0.1:{p}/metrics" for p in (port_a, port_b))
    d = reload_daemon(tmp_path, mosquitto, f"127.0.0.1:{port_a}")
    daemons.append(d.start())
    collector.wait_message(f"actiond/{DEVICE}/status", b"online", START_S)
    wait_for(lambda: events_under(collector, "actiond"), START_S, "an event")
    before = pids(d)

    # [mqtt]: status and events move to the new prefix; the old one says offline.
    reload_with(d, mqtt={"prefix": "site2"})
    collector.wait_message(f"site2/{DEVICE}/status", b"online", STEP_S)
    wait_for(lambda: events_under(collector, "site2"), STEP_S, "an event under site2/")
    assert collector.messages(f"actiond/{DEVICE}/status")[-1].payload == b"offline"
    assert pids(d) == before, "an [mqtt] change restarts no worker"

    # [metrics]: the new port answers, the old one refuses.
    assert answers(url_a)
    reload_with(d, metrics={"listen": f"127.0.0.1:{port_b}"})
    wait_for(lambda: answers(url_b), STEP_S, "metrics on the new port")
    wait_for(lambda: refused(url_a), STEP_S, "the old metrics port to refuse")

    # A listen address that cannot be bound keeps the whole running config.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        reload_with(d, mqtt={"prefix": "site3"}, metrics={"listen": f"127.0.0.1:{busy}"})
        wait_for(
            lambda: "reload failed, keeping the running config" in d.log(),
            STEP_S,
            "the failed reload",
        )
        assert answers(url_b) and d.proc.poll() is None
    assert not collector.messages(f"site3/{DEVICE}/status")
    assert d.stop() == ExitCode.OK
    log = d.log()
    assert f"127.0.0.1:{busy}" in log and "Traceback" not in log and MISLEADING not in log


@pytest.mark.timeout(300)
def test_reload_restarts_what_each_section_needs(
    tmp_path, mosquitto, mqtt_collector, daemons
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/{CAMERA}/event"])
    d = reload_daemon(tmp_path, mosquitto)
    daemons.append(d.start())
    wait_for(lambda: all_up(d), START_S, "workers up")

    # [events]: `dark` is no longer ignored, so the overlay (restarted) raises dark events.
    before = pids(d)
    reload_with(d, events={"ignore": []})
    wait_for(lambda: restarted(d, before, (f"{CAMERA}.overlay",)), STEP_S, "overlay restart")
    wait_for(
        lambda: any(e["action"] == "dark" for e in events_under(collector, "actiond")),
        STEP_S,
        "a dark event",
    )
    assert pids(d, (f"{CAMERA}.source", "infer.0")) == {
        n: before[n] for n in (f"{CAMERA}.source", "infer.0")
    }

    # [display]: the overlay only.
    before = pids(d)
    reload_with(d, display={"jpeg_quality": 60})
    wait_for(lambda: restarted(d, before, (f"{CAMERA}.overlay",)), STEP_S, "overlay restart")
    assert d.worker_pid(f"{CAMERA}.source") == before[f"{CAMERA}.source"]

    # [cameras]: that camera's workers, not the shared infer worker.
    before = pids(d)
    reload_with(d, cameras={"fps": 20.0})
    wait_for(lambda: restarted(d, before, CAMERA_WORKERS), STEP_S, "camera restart")
    assert d.worker_pid("infer.0") == before["infer.0"]

    # [daemon] log_level: the supervisor at once, and every worker.
    before = pids(d)
    reload_with(d, daemon={"log_level": "debug"})
    wait_for(lambda: restarted(d, before, ALL_WORKERS), STEP_S, "every worker restarted")
    wait_for(lambda: " DEBUG " in d.log(), STEP_S, "debug lines")

    # [motion] and [inference]: the whole graph.
    for section, values in (("motion", {"width": 24, "height": 24}), ("inference", {"stride": 3})):
        before = pids(d)
        reload_with(d, **{section: values})
        wait_for(lambda b=before: restarted(d, b, ALL_WORKERS), STEP_S, f"[{section}] rebuild")

    # [daemon] shm_dir cannot move under running workers: said, and kept.
    reload_with(d, daemon={"shm_dir": str(tmp_path)})
    wait_for(
        lambda: (
            "daemon.shm_dir changed, which takes effect only when the daemon is "
            "restarted" in d.log()
        ),
        STEP_S,
        "the restart-only warning",
    )
    assert d.stop() == ExitCode.OK
    log = d.log()
    assert "stopped for the reload (exit code 0)" in log
    assert MISLEADING not in log and "Traceback" not in log
    assert d.leftovers() == []


def test_metrics_endpoint_moves_within_its_port_and_keeps_it_on_failure(tmp_path) -> None:
    """127.0.0.1:P -> 0.0.0.0:P must free P first; an address that fails gives P back."""
    registry, event_metrics = make_registry(lambda: MetricsSnapshot())
    outputs = Outputs(EventReceiver(tmp_path / "events.sock"), registry, event_metrics)
    try:
        outputs.open_metrics("127.0.0.1:0")
        assert outputs.server is not None
        port = outputs.server.port
        outputs.open_metrics(f"0.0.0.0:{port}")
        assert outputs.server.port == port and answers(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(MetricsServerError):
            outputs.open_metrics(f"192.0.2.1:{port}")  # not an address of this host
        assert answers(f"http://127.0.0.1:{port}/metrics")
    finally:
        asyncio.run(outputs.aclose())
    assert refused(f"http://127.0.0.1:{port}/metrics")
