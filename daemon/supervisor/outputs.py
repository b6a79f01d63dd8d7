"""The supervisor's outputs: event intake from the overlays, the event sinks over the
durable outbox (daemon/outputs/sinks/), the metrics endpoint.

`open_outputs` opens them in order and registers one close on the supervisor's
AsyncExitStack. `Outputs.aclose` closes them last-opened-first (aiohttp's runner): the
intake takes and writes the overlays' last events and closes the event socket, the
metrics endpoint goes, the sinks close in reverse order within one deadline (MQTT says
offline and flushes what it can), then the outbox file closes.

A reload re-opens the changed sink sections and the metrics endpoint with the new config
(`reconfigure`), while the event socket, the intake and the outbox stay open: no event
is lost during the swap. The new endpoint and sinks are made before the old ones are
closed, so a new metrics.listen that cannot be bound, or a sink setting that cannot be
used, leaves the running outputs as they were.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from prometheus_client.registry import CollectorRegistry

from daemon.config import parse_listen
from daemon.events import event_actions
from daemon.ipc.events_channel import EventReceiver
from daemon.outputs.metrics import (
    DeviceLabel,
    EventMetrics,
    MetricsServer,
    MetricsServerError,
    MetricsSnapshot,
    make_registry,
)
from daemon.outputs.sinks.protocol import EventSink, SinkContext, SinkView
from daemon.outputs.sinks.runner import (
    SinkRunner,
    SinkSetupError,
    close_sinks,
    enabled_cameras,
    sink_context,
)
from daemon.outputs.sinks.table import SINK_KINDS
from daemon.supervisor.boot import Boot
from daemon.supervisor.intake import EventIntake
from daemon.supervisor.topology import live_slot_path

log = logging.getLogger(__name__)

# Within app.OUTPUTS_STOP_S, for all sinks together: MQTT adds up to 2 s of its own.
SINKS_CLOSE_S = 3.0


class OutputsError(Exception):
    """A reload's new sink or metrics settings cannot be used; nothing was changed."""


def boot_sink_context(boot: Boot, run_id: str = "") -> SinkContext:
    # Home Assistant is offered, per camera, the labels that make events, not `idle` &
    # co.: a camera on the person pipeline the people engine's actions (skeleton
    # classifiers' labels included), a clip camera its model's.
    clip = event_actions(boot.labels, boot.config.events.ignore)
    cameras = [c for c in boot.config.cameras if c.enabled]
    per_camera = {c.name: boot.camera_actions(c, clip) for c in cameras}
    # The console's live images: each camera's live slot in this run (none without one).
    shm_dir = boot.config.daemon.shm_dir
    slots = {c.name: Path(live_slot_path(shm_dir, run_id, c.name)) for c in cameras if run_id}
    return sink_context(boot.config, boot.actions(clip), per_camera, slots)


class Outputs:
    """The open outputs: the event socket, intake and outbox (open for the whole run),
    the event sinks and the metrics endpoint (re-opened by a reload)."""

    def __init__(
        self,
        receiver: EventReceiver,
        registry: CollectorRegistry,
        event_metrics: EventMetrics,
        sinks: SinkRunner | None = None,
        device: DeviceLabel | None = None,
    ) -> None:
        self.receiver = receiver
        self.registry = registry
        self.event_metrics = event_metrics
        self.sinks = sinks
        self.intake = EventIntake(receiver, sinks, event_metrics)
        self.server: MetricsServer | None = None
        self.device = device  # the `device` label of every series (a reload renames it)
        self._listen = ""  # what `server` was opened with
        self.run_id = ""  # the run whose live slots the console reads
        self._closed = False

    def sink(self, name: str) -> EventSink | None:
        """The running sink of section `name`, if any."""
        return self.sinks.sinks.get(name) if self.sinks is not None else None

    def sink_views(self) -> list[SinkView]:
        return self.sinks.views() if self.sinks is not None else []

    def publish_stats(self, stats: dict[str, Any]) -> None:
        if self.sinks is not None:
            self.sinks.publish_stats(stats)

    def set_camera_available(self, camera: str, available: bool) -> None:
        if self.sinks is not None:
            self.sinks.set_camera_available(camera, available)

    # -- event sinks --------------------------------------------------------------------

    async def open_sinks(self, boot: Boot, names: Collection[str]) -> None:
        """(Re-)open the sinks of the sections `names` with `boot`'s config;
        SinkSetupError, with nothing changed, when one cannot be made."""
        await self._swap_sinks(boot, await self._build_sinks(boot, names))

    async def _build_sinks(self, boot: Boot, names: Collection[str]) -> dict[str, EventSink | None]:
        if self.sinks is None:
            return {}
        return await asyncio.to_thread(
            self.sinks.build,
            boot.config,
            boot_sink_context(boot, self.run_id),
            [n for n in SINK_KINDS if n in names],
        )

    async def _swap_sinks(self, boot: Boot, built: dict[str, EventSink | None]) -> None:
        """Swap `built` in between two records, close the old ones (the MQTT sink says
        offline first: old and new use the same client id), then start the new ones,
        which send what waits in the outbox."""
        sinks = self.sinks
        if sinks is None:
            return
        context = boot_sink_context(boot, self.run_id)
        old = await self.intake.in_order(lambda: sinks.swap(built, context))
        await asyncio.to_thread(close_sinks, old, SINKS_CLOSE_S)
        for sink in built.values():
            if sink is not None:
                sink.start()
                log.info(
                    "event sink %s: started (%r; %d pending)", sink.name, sink, sink.view().pending
                )

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

    async def reconfigure(self, boot: Boot, sinks: Collection[str], metrics: bool) -> None:
        """Re-open the sinks of the sections `sinks` and/or the metrics endpoint with
        `boot`'s config. OutputsError (and every output as it was) when the new ones
        cannot be opened."""
        built: dict[str, EventSink | None] = {}
        try:
            built = await self._build_sinks(boot, sinks)
        except SinkSetupError as exc:
            raise OutputsError(str(exc)) from exc
        if metrics:
            try:
                self.open_metrics(boot.config.metrics.listen)
            except MetricsServerError as exc:
                # Made for the new config, never started: the running sinks stay.
                await asyncio.to_thread(close_sinks, [s for s in built.values() if s], 0.0)
                raise OutputsError(str(exc)) from exc
        if sinks:
            await self._swap_sinks(boot, built)
        if self.device is not None:
            self.device.value = boot.config.daemon.device_id
        self.event_metrics.add_series(enabled_cameras(boot.config), boot.actions(boot.labels))

    async def aclose(self) -> None:
        """Close every output, last-opened-first. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.intake.close()  # the overlays' last events in the outbox; the socket
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.sinks is not None:
            await asyncio.to_thread(self.sinks.close, SINKS_CLOSE_S)


def _same_port(listen: str, port: int) -> bool:
    try:
        return parse_listen(listen)[1] == port
    except ValueError:
        return False


async def open_outputs(
    stack: AsyncExitStack,
    boot: Boot,
    events_socket: Path,
    snapshot: Callable[[], MetricsSnapshot],
    run_id: str = "",
) -> Outputs:
    """Open the event socket, the event sinks and metrics; their closing is pushed onto
    `stack`. SinkSetupError when an enabled sink cannot be opened."""
    receiver = EventReceiver(events_socket)
    device = DeviceLabel(boot.config.daemon.device_id)
    registry, event_metrics = make_registry(
        snapshot, enabled_cameras(boot.config), boot.actions(boot.labels), device
    )
    sinks = SinkRunner(Path(boot.config.daemon.state_dir), boot_sink_context(boot, run_id))
    outputs = Outputs(receiver, registry, event_metrics, sinks, device)
    outputs.run_id = run_id
    stack.push_async_callback(outputs.aclose)
    await outputs.open_sinks(boot, SINK_KINDS)
    outputs.open_metrics(boot.config.metrics.listen)
    outputs.intake.start()
    return outputs
