"""Two event sinks over one durable outbox: the same events reach MQTT (a real mosquitto)
and the JSON-lines file, and each sink keeps its own delivery state. A real sender process
(the overlay's EventSender) -> the supervisor's event socket, intake, outbox and sinks
(daemon.supervisor.outputs, as the supervisor opens them), closed and opened again like a
daemon restart.

Story: the broker is down; a burst arrives; jsonl writes every event while MQTT keeps
them in its queue; the outputs close (a restart) with MQTT's events still pending in the
file; the broker comes back, the outputs open again, and MQTT catches up from the outbox
in order, while jsonl writes nothing twice. The metrics say the same, per sink.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import uvloop
from metrics_helpers import label_set, parse_samples, scrape_text
from mosquitto_fixture import MosquittoBroker, MqttCollector
from test_event_burst import CAMERA, DEVICE, REPO, SENDER, burst_boot

from daemon.config import JsonlConfig
from daemon.outputs.metrics import MetricsSnapshot, snapshot_on_loop
from daemon.outputs.outbox import OUTBOX_FILENAME
from daemon.supervisor.boot import Boot
from daemon.supervisor.outputs import Outputs, open_outputs

EVENTS = 40
DEADLINE_S = 30.0
POLL_S = 0.05

pytestmark = pytest.mark.timeout(120)


def sinks_boot(broker: MosquittoBroker, state_dir: Path) -> Boot:
    """test_event_burst's boot (MQTT without discovery, metrics on a free port) with the
    jsonl sink enabled too."""
    boot = burst_boot(broker, state_dir)
    return dataclasses.replace(
        boot,
        config=dataclasses.replace(
            boot.config, jsonl=JsonlConfig(enabled=True, path="events.jsonl")
        ),
    )


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def sink_samples(outputs: Outputs) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    assert outputs.server is not None
    samples = parse_samples(scrape_text(outputs.server.url))
    return {
        name: samples.get(name, {})
        for name in (
            "actiond_sink_up",
            "actiond_sink_pending_events",
            "actiond_sink_delivered_total",
        )
    }


async def open_for_test(stack: AsyncExitStack, boot: Boot, socket_path: Path) -> Outputs:
    loop = asyncio.get_running_loop()
    holder: list[Outputs] = []
    snapshot = snapshot_on_loop(
        loop, lambda: MetricsSnapshot(sinks=holder[0].sink_views() if holder else ())
    )
    outputs = await open_outputs(stack, boot, socket_path, snapshot)
    holder.append(outputs)
    return outputs


async def burst_while_broker_down(
    boot: Boot, socket_path: Path, jsonl: Path, expected: list[str]
) -> None:
    async with AsyncExitStack() as stack:
        outputs = await open_for_test(stack, boot, socket_path)
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            str(socket_path),
            str(EVENTS),
            CAMERA,
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(sender.communicate(), DEADLINE_S)
        assert json.loads(out)["sent"] == EVENTS
        await wait_until(lambda: lines(jsonl) == expected, "every event in the jsonl file")
        mqtt, jsonl_sink = outputs.sink("mqtt"), outputs.sink("jsonl")
        assert mqtt is not None and jsonl_sink is not None
        await wait_until(lambda: mqtt.view().pending == EVENTS, "MQTT's queue to hold all")
        assert jsonl_sink.view().pending == 0
        samples = await asyncio.to_thread(sink_samples, outputs)
        assert samples["actiond_sink_up"] == {label_set(sink="mqtt"): 0, label_set(sink="jsonl"): 1}
        assert samples["actiond_sink_pending_events"] == {
            label_set(sink="mqtt"): EVENTS,
            label_set(sink="jsonl"): 0,
        }
        assert samples["actiond_sink_delivered_total"] == {
            label_set(sink="mqtt"): 0,
            label_set(sink="jsonl"): EVENTS,
        }


async def restart_and_catch_up(boot: Boot, socket_path: Path, collector: MqttCollector) -> None:
    async with AsyncExitStack() as stack:
        outputs = await open_for_test(stack, boot, socket_path)
        mqtt = outputs.sink("mqtt")
        assert mqtt is not None
        await wait_until(lambda: len(collector.messages()) >= EVENTS, "MQTT to catch up")
        await wait_until(lambda: mqtt.view().pending == 0, "MQTT's queue to empty")
        samples = await asyncio.to_thread(sink_samples, outputs)
        assert samples["actiond_sink_up"][label_set(sink="mqtt")] == 1
        assert samples["actiond_sink_delivered_total"][label_set(sink="mqtt")] == EVENTS


def test_two_sinks_each_keep_their_own_delivery_state(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    mosquitto.stop()
    state = tmp_path / "state"
    boot = sinks_boot(mosquitto, state)
    expected = [f"burst-{i:04d}" for i in range(EVENTS)]
    with tempfile.TemporaryDirectory(prefix="actiond-sinks-") as sock_dir:
        socket_path = Path(sock_dir) / "events.sock"
        uvloop.run(burst_while_broker_down(boot, socket_path, state / "events.jsonl", expected))
        # Stopped in between: the file holds MQTT's events only.
        with sqlite3.connect(state / OUTBOX_FILENAME) as db:
            held = dict(db.execute("SELECT sink, COUNT(*) FROM deliveries GROUP BY sink"))
        assert held == {"mqtt": EVENTS}
        mosquitto.start()
        collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/{CAMERA}/event"])
        uvloop.run(restart_and_catch_up(boot, socket_path, collector))
    ids = [json.loads(m.payload)["id"] for m in collector.messages()]
    assert ids == expected, "MQTT lost, doubled or reordered events"
    assert lines(state / "events.jsonl") == expected, "jsonl wrote an event twice"
    record = json.loads((state / "events.jsonl").read_text().splitlines()[0])
    assert record["device_id"] == DEVICE and record["camera"] == CAMERA


async def reload_enables_jsonl(boot: Boot, socket_path: Path, jsonl: Path) -> None:
    off = dataclasses.replace(
        boot, config=dataclasses.replace(boot.config, jsonl=JsonlConfig(enabled=False))
    )
    async with AsyncExitStack() as stack:
        outputs = await open_for_test(stack, off, socket_path)
        assert outputs.sink("jsonl") is None and outputs.sink("mqtt") is not None
        await outputs.reconfigure(boot, {"jsonl"}, metrics=False)
        mqtt = outputs.sink("mqtt")
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            str(socket_path),
            "3",
            CAMERA,
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        await asyncio.wait_for(sender.communicate(), DEADLINE_S)
        await wait_until(lambda: len(lines(jsonl)) == 3, "the re-opened jsonl sink to write")
        assert outputs.sink("mqtt") is mqtt, "a [jsonl] change leaves the MQTT sink running"


def test_a_reload_opens_a_sink_section_alone(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    state = tmp_path / "state"
    with tempfile.TemporaryDirectory(prefix="actiond-sinks-") as sock_dir:
        uvloop.run(
            reload_enables_jsonl(
                sinks_boot(mosquitto, state), Path(sock_dir) / "events.sock", state / "events.jsonl"
            )
        )
