"""A stuck MQTT flush never stalls the supervisor's loop: the supervisor's outputs (as it
opens them) with a real mosquitto, the outbox flush after CONNACK held (a slow SD card),
while the loop does what Supervisor.tick() does every tick (camera availability and
stats to every sink) and a thread scrapes /metrics, whose snapshot is built on the loop.

Before, the MQTT sink took its send lock in those calls, and the flush held it: the loop
waited for the whole flush and the scrapes with it.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import uvloop
from metrics_helpers import scrape_text
from mosquitto_fixture import MosquittoBroker, MqttCollector

from daemon.config import CameraConfig, Config, DaemonConfig, MetricsConfig, MqttConfig, model_facts
from daemon.outputs.metrics import MetricsSnapshot, snapshot_on_loop
from daemon.outputs.outbox_queue import SinkQueue
from daemon.supervisor.boot import Boot
from daemon.supervisor.outputs import open_outputs

DEVICE = "stallbox"
CAMERA = "hall"
HOLD_S = 4.0  # how long the flush is stuck (released by a timer, whatever happens)
TICK_S = 0.05
TICKING_S = 1.5
SCRAPE_BOUND_S = 1.0
DEADLINE_S = 20.0


def stall_boot(broker: MosquittoBroker, state_dir: Path) -> Boot:
    config = Config(
        daemon=DaemonConfig(device_id=DEVICE, state_dir=str(state_dir)),
        cameras=(CameraConfig(name=CAMERA, source="test:still"),),
        mqtt=MqttConfig(enabled=True, host=broker.host, port=broker.port, discovery=False),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
    )
    facts = model_facts(config, "model.onnx", ("dark", "bright"), 8, "rgb+flow", 0, 0)
    return Boot(config, state_dir / "config.toml", "model.onnx", facts, ("CPUExecutionProvider",))


class StuckFlush:
    """Holds the first reads of pending outbox rows until released (or HOLD_S)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        pending = SinkQueue.pending

        def held(queue: SinkQueue, *args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.released.wait(HOLD_S)
            return pending(queue, *args, **kwargs)

        monkeypatch.setattr(SinkQueue, "pending", held)


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(TICK_S)


def scrape_times(url: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            scrape_text(url)
        except OSError:
            pass  # a failed scrape counts with its time
        out.append(time.monotonic() - started)


async def tick_while_stuck(
    boot: Boot, socket_path: Path, stuck: StuckFlush, collector: MqttCollector
) -> list[float]:
    loop = asyncio.get_running_loop()
    snapshot = snapshot_on_loop(loop, MetricsSnapshot, timeout_s=HOLD_S)
    async with AsyncExitStack() as stack:
        outputs = await open_outputs(stack, boot, socket_path, snapshot)
        assert outputs.server is not None
        await wait_for(stuck.entered.is_set, "the flush after CONNACK")
        times: list[float] = []
        stop = threading.Event()
        scraper = threading.Thread(target=scrape_times, args=(outputs.server.url, stop, times))
        scraper.start()
        try:
            ticks, until = 0, time.monotonic() + TICKING_S
            while time.monotonic() < until:  # what Supervisor.tick() does to the sinks
                outputs.set_camera_available(CAMERA, ticks % 2 == 0)
                outputs.publish_stats({"cameras": {CAMERA: {"fps": 10.0}}, "tick": ticks})
                ticks += 1
                await asyncio.sleep(TICK_S)
            outputs.set_camera_available(CAMERA, True)
        finally:
            stop.set()
            await asyncio.to_thread(scraper.join, DEADLINE_S)
            stuck.released.set()
        # Once the flush ends, the retained availability is the latest one said: online.
        await wait_for(
            lambda: [m.payload for m in collector.messages()][-1:] == [b"online"],
            "the latest availability at the broker",
        )
    return times


@pytest.mark.timeout(60)
def test_a_stuck_flush_does_not_stall_the_loop(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    mqtt_collector: Callable[..., MqttCollector],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/{CAMERA}/availability"])
    stuck = StuckFlush(monkeypatch)
    release = threading.Timer(HOLD_S, stuck.released.set)
    release.start()
    try:
        with tempfile.TemporaryDirectory(prefix="actiond-stall-") as sock_dir:
            times = uvloop.run(
                tick_while_stuck(
                    stall_boot(mosquitto, tmp_path / "state"),
                    Path(sock_dir) / "ev.sock",
                    stuck,
                    collector,
                )
            )
    finally:
        release.cancel()
        stuck.released.set()
    assert len(times) >= 3, times
    assert max(times) < SCRAPE_BOUND_S, f"scrapes took {max(times):.2f} s while the flush hung"
    collector.wait_for(  # the clean stop's, last
        lambda ms: ms[-1].payload == b"offline", "the clean stop's offline"
    )
