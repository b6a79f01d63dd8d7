"""A fleet: three daemons with their own device ids on one mosquitto and one Prometheus.

Every box has a camera called "door" (the usual case: the same camera names on every
box), so anything keyed by the camera alone would collide. Checked where a user sees it:
the series in a real Prometheus that scrapes all three (one per box under `device`, and
the dashboard's fleet-row queries, read from the dashboard JSON, give one series per
box), the retained topics on the broker (three disjoint device prefixes), the Home
Assistant discovery configs (unique ids and devices distinct) and the broker's log (three
client ids, nobody kicked off). Unit tests of the `device` label beside it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import Daemon, free_port, wait_for
from metrics_helpers import parse_samples, scrape_text
from models import brightness_model
from mosquitto_fixture import MosquittoBroker, MqttCollector
from prometheus_client import generate_latest
from prometheus_server import PROMETHEUS, PrometheusServer

from daemon.exitcodes import ExitCode
from daemon.outputs.metrics import CameraView, DeviceLabel, MetricsSnapshot, make_registry

DASHBOARD = Path(__file__).resolve().parents[1] / "monitoring/grafana/actiond-dashboard.json"
DEVICES = ("hall-box", "yard-box", "shop_box")
CAMERA = "door"
START_S = 90.0
SCRAPE_INTERVAL_S = 0.5
HEARTBEAT_TIMEOUT_S = 30.0
PREFIX, DISCOVERY_PREFIX = "actiond", "homeassistant"

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None and not Path(PROMETHEUS).exists(),
    reason="needs prometheus: apt-get install prometheus",
)


# --- the device label, without a daemon ------------------------------------------------


@pytest.mark.timeout(30)
def test_every_series_carries_the_device_and_a_reload_renames_it() -> None:
    device = DeviceLabel("hall-box")
    snapshot = MetricsSnapshot(cameras=[CameraView(CAMERA, False, 5.0, True)])
    registry, _ = make_registry(lambda: snapshot, [CAMERA], ["walk"], device)

    def devices() -> set[str]:
        samples = parse_samples(generate_latest(registry).decode(), keep_device=True)
        labels = [dict(key) for series in samples.values() for key in series]
        assert labels, "no samples"
        return {label.get("device", "") for label in labels}

    assert devices() == {"hall-box"}
    device.value = "yard-box"  # what Outputs.reconfigure does when daemon.device_id changes
    assert devices() == {"yard-box"}


@pytest.mark.timeout(30)
def test_camera_up_follows_the_camera_view() -> None:
    cameras = [CameraView("door", False, 5.0, True), CameraView("yard", False, 5.0, False)]
    registry, _ = make_registry(lambda: MetricsSnapshot(cameras=cameras))
    samples = parse_samples(generate_latest(registry).decode())["actiond_camera_up"]
    assert samples == {frozenset({("camera", "door")}): 1.0, frozenset({("camera", "yard")}): 0.0}


@pytest.mark.timeout(180)
def test_a_reload_that_renames_the_box_renames_its_series(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    port = free_port()
    camera = {"name": CAMERA, "source": "test:moving-box", "fps": 4, "width": 64, "height": 48}
    d = Daemon(
        tmp_path,
        [camera],
        {
            "daemon": {"device_id": "old-box"},
            "motion": {"width": 32, "height": 32},
            "inference": {"model": str(brightness_model(tmp_path / "b.onnx")), "stride": 4},
            "metrics": {"listen": f"127.0.0.1:{port}"},
        },
    )
    daemons.append(d.start())
    url = f"http://127.0.0.1:{port}/metrics"

    def devices() -> set[str]:
        try:
            samples = parse_samples(scrape_text(url), keep_device=True)
        except OSError:  # not listening yet
            return set()
        return {dict(k).get("device", "") for series in samples.values() for k in series}

    wait_for(lambda: devices() == {"old-box"}, START_S, "series of device old-box")
    d.config.write_text(d.config.read_text().replace('"old-box"', '"new-box"'))
    d.signal(signal.SIGHUP)
    wait_for(lambda: devices() == {"new-box"}, START_S, "every series renamed to new-box")
    assert d.stop() == ExitCode.OK


# --- three real daemons ----------------------------------------------------------------


def fleet_daemon(tmp: Path, broker: MosquittoBroker, device: str, model: Path) -> Daemon:
    """A box with one camera "door" (a moving box at 4 fps, 64x48: cheap on CPU), MQTT
    with discovery, and its metrics on a free port (`metrics_target`)."""
    camera = {"name": CAMERA, "source": "test:moving-box", "fps": 4, "width": 64, "height": 48}
    sections: dict[str, dict[str, object]] = {
        # Three daemons start their workers at once on a shared 2-core box: give a
        # worker's first heartbeat time (imports) before it counts as hung.
        "daemon": {"device_id": device, "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S},
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(model), "stride": 4},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": 5,
            "prefix": PREFIX,
            "discovery": True,
            "discovery_prefix": DISCOVERY_PREFIX,
        },
    }
    tmp.mkdir()
    return Daemon(tmp, [camera], sections)


def metrics_target(d: Daemon) -> str:
    match = re.search(r'^\[metrics\]\nlisten = "([^"]+)"', d.config.read_text(), re.MULTILINE)
    assert match, f"no [metrics] listen in {d.config}"
    return match.group(1)


def fleet_queries() -> dict[str, str]:
    """The fleet row's panel title -> query, with the device and camera selectors on All."""
    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    assert panels[0]["type"] == "row" and panels[0]["title"].startswith("Fleet")
    end = next(i for i, p in enumerate(panels[1:], 1) if p["type"] == "row")
    return {
        p["title"]: p["targets"][0]["expr"].replace("$device", ".*").replace("$camera", ".*")
        for p in panels[1:end]
    }


def by_device(result: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for series in result:
        device = series["metric"].get("device", "")
        assert device not in out, f"two series for device {device!r}: {result}"
        out[device] = float(series["value"][1])
    return out


def owner(topic: str) -> str:
    """The device a topic belongs to: <prefix>/<device>/... or
    <discovery_prefix>/<component>/<device>/<object>/config."""
    levels = topic.split("/")
    if levels[0] == PREFIX:
        return levels[1]
    assert levels[0] == DISCOVERY_PREFIX and levels[-1] == "config", topic
    return levels[2]


def retained_by_device(collector: MqttCollector) -> dict[str, set[str]]:
    topics: dict[str, set[str]] = defaultdict(set)
    for message in collector.messages():
        if message.retain and message.payload:
            topics[owner(message.topic)].add(message.topic)
    return topics


def poll(what: str, check: Callable[[], bool], timeout_s: float = START_S) -> None:
    wait_for(check, timeout_s, what)


@needs_prometheus
@pytest.mark.timeout(300)
def test_three_boxes_on_one_broker_and_one_prometheus(
    tmp_path: Path, daemons: list[Daemon], mosquitto: MosquittoBroker, mqtt_collector: Any
) -> None:
    model = brightness_model(tmp_path / "brightness.onnx")
    fleet = [fleet_daemon(tmp_path / name, mosquitto, name, model) for name in DEVICES]
    for d in fleet:  # one after another: three cold starts at once crowd two cores
        daemons.append(d.start())
        poll(
            f"frames from {d.tmp.name}'s camera",
            lambda d=d: d.stats(f"{CAMERA}.source").get("frames_out_total", 0) > 0,
        )
    prometheus = PrometheusServer(
        tmp_path / "prometheus", [metrics_target(d) for d in fleet], SCRAPE_INTERVAL_S
    ).start()
    try:
        poll("Prometheus scraping all three boxes", lambda: prometheus.targets_up() == 3)
        poll(
            "every box's camera up in Prometheus",
            lambda: (
                by_device(prometheus.query("sum by (device) (actiond_camera_up)"))
                == dict.fromkeys(DEVICES, 1.0)
            ),
        )
        # One box, one device name, one address: no two boxes share a name.
        pairs = prometheus.query("count by (device, instance) (actiond_build_info)")
        assert len(pairs) == 3 and {p["metric"]["device"] for p in pairs} == set(DEVICES)
        same_camera = prometheus.query(f'actiond_camera_expected_fps{{camera="{CAMERA}"}}')
        assert sorted(s["metric"]["device"] for s in same_camera) == sorted(DEVICES)
        queries = fleet_queries()
        for title, expr in queries.items():  # increase() needs two scrapes of each box
            poll(
                f"one series per box from the fleet panel {title!r}: {expr}",
                lambda expr=expr: set(by_device(prometheus.query(expr))) == set(DEVICES),
            )
        assert by_device(prometheus.query(queries["Cameras down"])) == dict.fromkeys(DEVICES, 0.0)
        assert by_device(prometheus.query("max by (device) (actiond_sink_up)")) == dict.fromkeys(
            DEVICES, 1.0
        )
    finally:
        prometheus.stop()
    # A client that subscribes now gets what the broker retains, flagged retained.
    check_the_broker(mqtt_collector(mosquitto.port, ["#"]), mosquitto)
    for d in fleet:
        assert d.stop() == ExitCode.OK, d.log()[-3000:]


def check_the_broker(collector: MqttCollector, broker: MosquittoBroker) -> None:
    def complete() -> bool:
        topics = retained_by_device(collector)
        return all(
            f"{PREFIX}/{d}/status" in topics.get(d, set())
            and any(t.startswith(f"{DISCOVERY_PREFIX}/") for t in topics.get(d, set()))
            and f"{PREFIX}/{d}/{CAMERA}/availability" in topics.get(d, set())
            for d in DEVICES
        )

    poll("every box's status, availability and discovery topics on the broker", complete)
    topics = retained_by_device(collector)
    assert set(topics) == set(DEVICES), f"retained topics of unknown owners: {set(topics)}"
    for a in DEVICES:
        for b in DEVICES:
            assert a == b or not topics[a] & topics[b], f"{a} and {b} share topics"
    for d in DEVICES:
        status = collector.messages(f"{PREFIX}/{d}/status")
        assert status and status[-1].payload == b"online", f"{d} is not online"
    configs = [
        json.loads(m.payload)
        for m in collector.messages()
        if m.topic.startswith(f"{DISCOVERY_PREFIX}/") and m.payload
    ]
    unique_ids = [c["unique_id"] for c in configs]
    assert len(set(unique_ids)) == len(unique_ids) >= 3 * 3, "Home Assistant unique ids collide"
    devices = {c["device"]["identifiers"][0] for c in configs}
    assert devices == set(DEVICES)
    log = broker.log_text()
    clients = set(re.findall(r"New client connected from \S+ as (actiond-\S+)", log))
    assert clients == {f"actiond-{d}" for d in DEVICES}, log[-2000:]
    assert "already connected, closing old connection" not in log
