"""The one table of event sink kinds: config section -> (its config dataclass, factory).

Adding a sink = its module (a class implementing protocol.EventSink and a factory
`(section config, SinkContext, SinkQueue) -> sink`), one entry here, and its config
section dataclass (with `enabled` and `outbox_max_events`) as a field of
daemon.config.Config named like the entry. The supervisor opens every enabled sink in
this order, a reload re-opens a changed section's sink (daemon/supervisor/reload.py
reads this table), and the metrics label each sink's series with its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from daemon.config import ConsoleConfig, JsonlConfig, MqttConfig, WebhookConfig
from daemon.outputs.mqtt import mqtt_sink
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.console import console_sink
from daemon.outputs.sinks.jsonl import jsonl_sink
from daemon.outputs.sinks.protocol import EventSink, SinkContext
from daemon.outputs.sinks.webhook import webhook_sink

SinkFactory = Callable[[Any, SinkContext, SinkQueue], EventSink]


@dataclass(frozen=True)
class SinkKind:
    """One kind of event sink: its config section's dataclass, its factory, and whether
    a section makes it send snapshots (the outbox keeps them for it; read from the config
    so a reload need not touch the running sink's outbox state before the swap)."""

    config: type
    factory: SinkFactory
    snapshots: Callable[[Any], bool]


def _mqtt_snapshots(section: MqttConfig) -> bool:
    return section.snapshots


def _snapshots(section: object) -> bool:
    return True


def _no_snapshots(section: object) -> bool:
    return False


SINK_KINDS: Mapping[str, SinkKind] = MappingProxyType(
    {
        "mqtt": SinkKind(MqttConfig, mqtt_sink, _mqtt_snapshots),
        "jsonl": SinkKind(JsonlConfig, jsonl_sink, _no_snapshots),
        "console": SinkKind(ConsoleConfig, console_sink, _snapshots),
        "webhook": SinkKind(WebhookConfig, webhook_sink, _no_snapshots),
    }
)
