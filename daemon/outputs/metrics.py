"""The Prometheus endpoint of actiond: a fresh registry with the collectors, served over HTTP.

Entry point for the supervisor: `make_registry(snapshot)` gives the registry and the event
metrics, `MetricsServer(listen, registry)` serves it at /metrics from a thread. Scrapes are
answered in the server's threads while the supervisor's state lives on its asyncio loop;
`snapshot_on_loop` builds each scrape's snapshot on the loop, so the collector never reads
state the loop is changing. The collectors and snapshot views live in metrics_collector
and are re-exported here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
from collections.abc import Callable, Iterator, Sequence
from types import MappingProxyType
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from daemon.config import parse_listen
from daemon.metrics_catalog import DEVICE_LABEL
from daemon.outputs.metrics_collector import (
    SHARED_CAMERA,
    ActiondCollector,
    CameraView,
    EventMetrics,
    HistogramCounts,
    MetricsSnapshot,
    WorkerView,
)

__all__ = [
    "SHARED_CAMERA",
    "ActiondCollector",
    "CameraView",
    "DeviceLabel",
    "EventMetrics",
    "HistogramCounts",
    "MetricsServer",
    "MetricsServerError",
    "MetricsSnapshot",
    "WorkerView",
    "make_registry",
    "snapshot_on_loop",
]

# A scrape waits this long for the loop; Prometheus' default scrape_timeout is 10 s.
SNAPSHOT_TIMEOUT_S = 5.0
SERVER_JOIN_S = 5.0
# ":port" means every interface; prometheus_client cannot resolve an empty host.
ANY_HOST = "0.0.0.0"


# What the usual bind errors mean for the person reading the message.
BIND_ERRORS = MappingProxyType(
    {
        errno.EADDRINUSE: ": another process listens there",
        errno.EADDRNOTAVAIL: ": not an address of this host",
        errno.EACCES: ": ports below 1024 need privileges",
    }
)


class MetricsServerError(Exception):
    """The metrics endpoint could not be started."""


class MetricsServer:
    """Serves `registry` at http://<listen>/metrics; "host:0" binds a free port."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        try:
            host, self._requested_port = parse_listen(listen)
        except ValueError as exc:
            raise MetricsServerError(f"metrics.listen {exc}") from exc
        self._listen = listen
        self._host = host or ANY_HOST
        self._registry = registry
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("MetricsServer.start() called twice")
        try:
            self._httpd, self._thread = start_http_server(
                self._requested_port, self._host, self._registry
            )
        except OSError as exc:
            why = BIND_ERRORS.get(exc.errno or 0, "")
            raise MetricsServerError(
                f'metrics.listen = "{self._listen}": cannot listen there '
                f"({exc.strerror or exc}{why}); set metrics.listen to a free port of this "
                f'host, or to "" to disable metrics'
            ) from exc

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked for port 0)."""
        if self._httpd is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving, close the socket (the port is free afterwards) and join the
        thread. Idempotent."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(SERVER_JOIN_S)
            if thread.is_alive():
                raise RuntimeError(f"metrics server thread did not stop in {SERVER_JOIN_S} s")

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot_on_loop(
    loop: asyncio.AbstractEventLoop,
    build: Callable[[], MetricsSnapshot],
    timeout_s: float = SNAPSHOT_TIMEOUT_S,
) -> Callable[[], MetricsSnapshot]:
    """A snapshot callable for ActiondCollector that runs `build` on `loop`'s thread.

    A loop that does not answer within `timeout_s` fails the scrape (TimeoutError), which
    Prometheus records as up == 0: a wedged supervisor is not reported as healthy.
    """

    def snapshot() -> MetricsSnapshot:
        if _running_loop() is loop:
            raise RuntimeError(
                "snapshot_on_loop's callable would wait on its own loop; "
                "call `build` directly on the loop thread"
            )
        future: concurrent.futures.Future[MetricsSnapshot] = concurrent.futures.Future()
        loop.call_soon_threadsafe(_build_into, future, build)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # the loop skips the build when it gets to it
            raise TimeoutError(
                f"the supervisor loop did not build a metrics snapshot within {timeout_s} s"
            ) from None

    return snapshot


def _build_into(
    future: concurrent.futures.Future[MetricsSnapshot], build: Callable[[], MetricsSnapshot]
) -> None:
    # Not asyncio.run_coroutine_threadsafe: its cancel reaches the loop only after the
    # task's first step, so a scrape that timed out would still run the build.
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(build())
    except Exception as exc:  # noqa: BLE001 - not swallowed: the scrape fails with it
        future.set_exception(exc)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread: the usual case, a server thread
        return None


class DeviceLabel:
    """The value of the `device` label on every series: daemon.device_id. A reload that
    changes the id sets `value`; the next scrape carries the new one."""

    def __init__(self, value: str) -> None:
        self.value = value  # one reference swap: safe to read from the server's threads


class _WithDevice:
    """`inner`'s families with the label device=<device.value> first on every sample:
    one box's series stay apart from another's on a shared Prometheus, under a name the
    dashboard can offer (the `instance` label is an address)."""

    def __init__(self, inner: ActiondCollector | EventMetrics, device: DeviceLabel) -> None:
        self._inner, self._device = inner, device

    def describe(self) -> Iterator[Metric]:
        return self._inner.describe()

    def collect(self) -> Iterator[Metric]:
        device = self._device.value
        for family in self._inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [
                sample._replace(labels={DEVICE_LABEL: device, **sample.labels})
                for sample in family.samples
            ]
            yield out


def make_registry(
    snapshot: Callable[[], MetricsSnapshot],
    cameras: Sequence[str] = (),
    actions: Sequence[str] = (),
    device: DeviceLabel | None = None,
) -> tuple[CollectorRegistry, EventMetrics]:
    """A fresh registry (never prometheus_client's global one) with the collector and the
    event metrics registered; `cameras` x `actions` event series start at zero. With
    `device` (the daemon always passes it) every series carries device=<device.value>."""
    registry = CollectorRegistry()
    events = EventMetrics(cameras, actions)
    collector = ActiondCollector(snapshot)
    if device is None:
        registry.register(collector)
        registry.register(events)
    else:
        registry.register(_WithDevice(collector, device))
        registry.register(_WithDevice(events, device))
    return registry, events
