"""A burst of events from a worker reaches the broker whole and in order: a real sender
process (the overlay's EventSender) -> the supervisor's event socket, intake and outbox
(daemon.supervisor.outputs, as the supervisor opens them) -> a real mosquitto, and the
loss counters in a real scrape of the metrics endpoint.

A full daemon raises an event every few windows, far too slowly for a burst; the path
from the sender's socket to the broker is the daemon's own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import uvloop
from metrics_helpers import parse_samples, scrape_text
from mosquitto_fixture import MosquittoBroker, MqttCollector

from daemon.config import CameraConfig, Config, DaemonConfig, MetricsConfig, MqttConfig, model_facts
from daemon.outputs.metrics import MetricsSnapshot, snapshot_on_loop
from daemon.supervisor.boot import Boot
from daemon.supervisor.metrics_view import intake_losses
from daemon.supervisor.outputs import Outputs, open_outputs

REPO = Path(__file__).resolve().parent.parent
DEVICE = "burstbox"
CAMERA = "hall"
BURST_EVENTS = 1000
SEND_DEADLINE_S = 60.0
DELIVERY_DEADLINE_S = 90.0
POLL_S = 0.05

# The worker side, in its own process: send BURST_EVENTS as fast as sendto() takes them.
# Only send() is used, so the same script measures the old and the new sender.
SENDER = """
import json, sys, time
from daemon.ipc.events_channel import EventSender
path, count, camera = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sender = EventSender(path)
started = time.monotonic()
sent = 0
for i in range(count):
    record = {"id": f"burst-{i:04d}", "camera": camera, "action": "bright", "phase": "start",
              "score_max": 0.9, "started_at": "2026-01-01T00:00:00Z", "ended_at": None,
              "capture_ts_ns": 0}
    sent += bool(sender.send(record))
print(json.dumps({"sent": sent, "seconds": time.monotonic() - started}))
"""


def burst_boot(broker: MosquittoBroker, state_dir: Path) -> Boot:
    config = Config(
        daemon=DaemonConfig(device_id=DEVICE, state_dir=str(state_dir)),
        cameras=(CameraConfig(name=CAMERA, source="test:still"),),
        mqtt=MqttConfig(enabled=True, host=broker.host, port=broker.port, discovery=False),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
    )
    facts = model_facts(config, "model.onnx", ("dark", "bright"), 8, "rgb+flow", 0, 0)
    return Boot(config, state_dir / "config.toml", "model.onnx", facts, ("CPUExecutionProvider",))


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)


async def run_burst(
    boot: Boot, socket_path: Path, collector: MqttCollector
) -> tuple[dict[str, float], str]:
    """Open the supervisor's outputs, run the sender, wait for the broker; returns the
    sender's report and a scrape taken once everything is delivered."""
    loop = asyncio.get_running_loop()
    holder: list[Outputs] = []
    snapshot = snapshot_on_loop(
        loop,
        lambda: MetricsSnapshot(
            losses=intake_losses([CAMERA], holder[0].intake if holder else None)
        ),
    )
    async with AsyncExitStack() as stack:
        outputs = await open_outputs(stack, boot, socket_path, snapshot)
        holder.append(outputs)
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            str(socket_path),
            str(BURST_EVENTS),
            CAMERA,
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(sender.communicate(), SEND_DEADLINE_S)
        report = json.loads(out)
        await wait_until(
            lambda: len(collector.messages()) >= report["sent"],
            f"{report['sent']} events at the broker",
            DELIVERY_DEADLINE_S,
        )
        assert outputs.server is not None
        text = await asyncio.to_thread(scrape_text, outputs.server.url)
    return report, text


@pytest.mark.timeout(180)
def test_a_burst_of_1000_events_reaches_the_broker_in_order(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/{CAMERA}/event"])
    # A short socket path: AF_UNIX paths end at 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="actiond-burst-") as sock_dir:
        report, text = uvloop.run(
            run_burst(
                burst_boot(mosquitto, tmp_path / "state"), Path(sock_dir) / "events.sock", collector
            )
        )
    print(f"sender: {report['sent']} of {BURST_EVENTS} events taken in {report['seconds']:.2f} s")
    assert report["sent"] == BURST_EVENTS, "the sender lost events"
    ids = [json.loads(m.payload)["id"] for m in collector.messages()]
    assert ids == [f"burst-{i:04d}" for i in range(BURST_EVENTS)], "lost, doubled or reordered"
    lost = parse_samples(text)["actiond_lost_total"]
    assert lost and set(lost.values()) == {0.0}, lost
