"""The supervisor's outputs: event intake from the overlays, MQTT, the metrics endpoint.

Each is opened in order and registered on an AsyncExitStack, so shutdown closes them
last-opened-first (aiohttp's runner): the metrics endpoint goes first, then MQTT says
offline and flushes what it can, then the outbox file closes, then the event socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Callable

from daemon.ipc.events_channel import EventReceiver
from daemon.outputs.metrics import EventMetrics, MetricsServer, MetricsSnapshot, make_registry
from daemon.outputs.mqtt import MqttPublisher
from daemon.outputs.outbox import OUTBOX_FILENAME, Outbox
from daemon.supervisor.boot import Boot

log = logging.getLogger(__name__)

MQTT_STOP_S = 3.0   # within app.OUTPUTS_STOP_S: the publisher adds up to 2 s of its own


class EventIntake:
    """Takes event records off the socket and hands them to MQTT and the metrics."""

    def __init__(self, receiver: EventReceiver, publisher: MqttPublisher | None,
                 metrics: EventMetrics | None) -> None:
        self._receiver, self._publisher, self._metrics = receiver, publisher, metrics
        # One thread keeps the outbox writes (an fsync each) off the loop, in order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self.received_total = 0

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._receiver.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for record, snapshot in self._receiver.receive_all():
            self.handle(record, snapshot)

    def handle(self, record: dict[str, Any], snapshot: bytes | None) -> None:
        self.received_total += 1
        camera, action, phase = record.get("camera", ""), record.get("action", ""), record.get("phase")
        log.info("event %s: %s %s (score %.2f, id %s)", camera, action, phase,
                 float(record.get("score_max", 0.0)), record.get("id"))
        if self._metrics is not None and phase == "start":
            self._metrics.event(camera, action)
            capture_ns = int(record.get("capture_ts_ns") or 0)
            if capture_ns:
                self._metrics.latency(camera, (time.monotonic_ns() - capture_ns) / 1e9)
        if self._publisher is not None:
            self._writer.submit(self._publisher.publish_event, record, snapshot)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._receiver.fileno())
        self._on_readable()  # what arrived during shutdown still goes to the outbox
        await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown)
        self._receiver.close()


async def open_outputs(stack: AsyncExitStack, boot: Boot, events_socket: Path,
                       snapshot: Callable[[], MetricsSnapshot]) -> "OpenOutputs":
    """Open the event socket, MQTT and metrics; their closing is pushed onto `stack`."""
    cfg = boot.config
    cameras = [c.name for c in cfg.cameras if c.enabled]
    receiver = EventReceiver(events_socket)
    stack.callback(receiver.close)
    publisher = None
    if cfg.mqtt.enabled:
        state_dir = Path(cfg.daemon.state_dir)
        outbox = Outbox(state_dir / OUTBOX_FILENAME, cfg.mqtt.outbox_max_events)
        stack.callback(outbox.close)
        publisher = MqttPublisher(cfg.mqtt, cfg.daemon.device_id, cameras, boot.labels, outbox)
        publisher.start()
        stack.push_async_callback(asyncio.to_thread, publisher.stop, MQTT_STOP_S)
        log.info("MQTT: publishing to %s (outbox %s, %d pending)", publisher.broker,
                 outbox.path, outbox.depth())
    registry, event_metrics = make_registry(snapshot, cameras, boot.labels)
    if cfg.metrics.listen:
        server = MetricsServer(cfg.metrics.listen, registry)
        server.start()
        stack.callback(server.stop)
        log.info("metrics on %s", server.url)
    intake = EventIntake(receiver, publisher, event_metrics)
    intake.start()
    stack.push_async_callback(intake.close)
    return OpenOutputs(publisher, intake)


class OpenOutputs:
    """What the supervisor keeps of its outputs while running."""

    def __init__(self, publisher: MqttPublisher | None, intake: EventIntake) -> None:
        self.publisher = publisher
        self.intake = intake

    def publish_stats(self, stats: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.publish_stats(stats)
