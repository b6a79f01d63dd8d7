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

from daemon.config import JsonlConfig, MqttConfig
from daemon.outputs.mqtt import mqtt_sink
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.jsonl import jsonl_sink
from daemon.outputs.sinks.protocol import EventSink, SinkContext

SinkFactory = Callable[[Any, SinkContext, SinkQueue], EventSink]


@dataclass(frozen=True)
class SinkKind:
    """One kind of event sink: its config section's dataclass and its factory."""

    config: type
    factory: SinkFactory


SINK_KINDS: Mapping[str, SinkKind] = MappingProxyType(
    {"mqtt": SinkKind(MqttConfig, mqtt_sink), "jsonl": SinkKind(JsonlConfig, jsonl_sink)}
)
