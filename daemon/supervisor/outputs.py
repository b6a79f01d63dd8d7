"""The supervisor's outputs: event intake from the overlays, MQTT, the metrics endpoint.

`open_outputs` opens them in order and registers one close on the supervisor's
AsyncExitStack. `Outputs.aclose` closes them last-opened-first (aiohttp's runner): the
intake takes and writes the overlays' last events, the metrics endpoint goes, MQTT says
offline and flushes what it can, the outbox file closes, then the event socket.

A reload re-opens MQTT and the metrics endpoint with the new config (`reconfigure`),
while the event socket and the intake stay open: no event is lost during the swap. The
new endpoint and publisher are made before the old ones are closed, so a new
metrics.listen that cannot be bound, or an MQTT setting that cannot be used, leaves the
running outputs as they were.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prometheus_client.registry import CollectorRegistry

from daemon.config import parse_listen
from daemon.events import event_actions
from daemon.ipc.events_channel import EventReceiver
from daemon.outputs.metrics import (EventMetrics, MetricsServer, MetricsServerError,
                                    MetricsSnapshot, make_registry)
from daemon.outputs.mqtt import MqttPublisher
from daemon.outputs.mqtt_session import MqttSetupError
from daemon.outputs.outbox import OUTBOX_FILENAME, Outbox, OutboxError
from daemon.supervisor.boot import Boot
from daemon.supervisor.intake import EventIntake

log = logging.getLogger(__name__)

MQTT_STOP_S = 3.0   # within app.OUTPUTS_STOP_S: the publisher adds up to 2 s of its own


class OutputsError(Exception):
    """A reload's new MQTT or metrics settings cannot be used; nothing was changed."""


@dataclass(frozen=True)
class MqttSink:
    """A publisher made for a config, with its outbox, before it is started."""

    publisher: MqttPublisher
    outbox: Outbox
    max_events: int


def enabled_cameras(boot: Boot) -> list[str]:
    return [c.name for c in boot.config.cameras if c.enabled]


class Outputs:
    """The open outputs: the event socket and intake (open for the whole run), and the
    MQTT publisher and metrics endpoint (re-opened by a reload)."""

    def __init__(self, receiver: EventReceiver, registry: CollectorRegistry,
                 event_metrics: EventMetrics) -> None:
        self.receiver = receiver
        self.registry = registry
        self.event_metrics = event_metrics
        self.intake = EventIntake(receiver, None, event_metrics)
        self.outbox: Outbox | None = None
        self.server: MetricsServer | None = None
        self._listen = ""   # what `server` was opened with
        self._closed = False

    @property
    def publisher(self) -> MqttPublisher | None:
        return self.intake.publisher

    def publish_stats(self, stats: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.publish_stats(stats)

    # -- MQTT ---------------------------------------------------------------------------

    def new_sink(self, boot: Boot) -> MqttSink | None:
        """A publisher for `boot`'s [mqtt] (not started), on the outbox file of the state
        directory; None when MQTT is disabled. MqttSetupError or OutboxError if it
        cannot be made; nothing running changes until swap_sink()."""
        cfg = boot.config
        if not cfg.mqtt.enabled:
            return None
        path = Path(cfg.daemon.state_dir) / OUTBOX_FILENAME
        reuse = self.outbox is not None and self.outbox.path == path
        outbox = self.outbox if reuse and self.outbox else Outbox(path, cfg.mqtt.outbox_max_events)
        try:
            # Home Assistant is offered the labels that make events, not `idle` & co.
            publisher = MqttPublisher(cfg.mqtt, cfg.daemon.device_id, enabled_cameras(boot),
                                      event_actions(boot.labels, cfg.events.ignore), outbox)
        except MqttSetupError:
            if not reuse:
                outbox.close()
            raise
        return MqttSink(publisher, outbox, cfg.mqtt.outbox_max_events)

    async def swap_sink(self, sink: MqttSink | None) -> None:
        """Events taken from now on go to `sink`; the old publisher says offline and
        stops first (both use the same MQTT client id), then the new one connects and
        sends what waits in the outbox."""
        old = self.publisher
        await self.intake.swap_publisher(sink.publisher if sink is not None else None)
        if old is not None:
            await asyncio.to_thread(old.stop, MQTT_STOP_S)
        outbox = sink.outbox if sink is not None else None
        if self.outbox is not None and self.outbox is not outbox:
            self.outbox.close()
        self.outbox = outbox
        if sink is not None:
            sink.outbox.max_events = sink.max_events
            sink.publisher.start()
            log.info("MQTT: publishing to %s under %s/ (outbox %s, %d pending)",
                     sink.publisher.broker, sink.publisher.topics.base, sink.outbox.path,
                     sink.publisher.outbox_depth)

    # -- metrics ------------------------------------------------------------------------

    def open_metrics(self, listen: str) -> None:
        """Serve the registry on `listen` ("" serves nothing); MetricsServerError if it
        cannot be bound, with the running endpoint left as it was."""
        old, old_listen = self.server, self._listen
        if listen == "":
            self.server = None
        else:
            try:
                self.server = self._serve(listen)
            except MetricsServerError:
                if old is None or not _same_port(listen, old.port):
                    raise
                # The new address overlaps the old one's port (e.g. 127.0.0.1:9108 ->
                # 0.0.0.0:9108): free it, and take it back if the new one still fails.
                port = old.port
                old.stop()
                try:
                    self.server = self._serve(listen)
                except MetricsServerError:
                    self.server = self._serve(f"{old_listen.rpartition(':')[0]}:{port}")
                    raise
                old = None
            log.info("metrics on %s", self.server.url)
        self._listen = listen
        if old is not None:
            old.stop()

    def _serve(self, listen: str) -> MetricsServer:
        server = MetricsServer(listen, self.registry)
        server.start()
        return server

    # -- reload and close ---------------------------------------------------------------

    async def reconfigure(self, boot: Boot, mqtt: bool, metrics: bool) -> None:
        """Re-open MQTT and/or the metrics endpoint with `boot`'s config. OutputsError
        (and every output as it was) when the new ones cannot be opened."""
        sink = None
        if mqtt:
            try:
                sink = self.new_sink(boot)
            except (MqttSetupError, OutboxError) as exc:
                raise OutputsError(f"MQTT: {exc}") from exc
        if metrics:
            try:
                self.open_metrics(boot.config.metrics.listen)
            except MetricsServerError as exc:
                if sink is not None and sink.outbox is not self.outbox:
                    sink.outbox.close()   # opened for the new publisher, which never ran
                raise OutputsError(str(exc)) from exc
        if mqtt:
            await self.swap_sink(sink)
        self.event_metrics.add_series(enabled_cameras(boot), boot.labels)

    async def aclose(self) -> None:
        """Close every output, last-opened-first. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.intake.close()   # the overlays' last events into the outbox
        if self.server is not None:
            self.server.stop()
            self.server = None
        publisher = self.publisher
        if publisher is not None:
            await asyncio.to_thread(publisher.stop, MQTT_STOP_S)
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        self.receiver.close()


def _same_port(listen: str, port: int) -> bool:
    try:
        return parse_listen(listen)[1] == port
    except ValueError:
        return False


async def open_outputs(stack: AsyncExitStack, boot: Boot, events_socket: Path,
                       snapshot: Callable[[], MetricsSnapshot]) -> Outputs:
    """Open the event socket, MQTT and metrics; their closing is pushed onto `stack`."""
    receiver = EventReceiver(events_socket)
    registry, event_metrics = make_registry(snapshot, enabled_cameras(boot), boot.labels)
    outputs = Outputs(receiver, registry, event_metrics)
    stack.push_async_callback(outputs.aclose)
    await outputs.swap_sink(outputs.new_sink(boot))
    outputs.open_metrics(boot.config.metrics.listen)
    outputs.intake.start()
    return outputs
