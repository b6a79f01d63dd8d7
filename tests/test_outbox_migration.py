"""Upgrade: the previous release's mqtt-outbox.sqlite3 (its schema, rows as its publisher
wrote them) is imported at first start; its pending events reach the broker, in order,
with their snapshots; nothing is imported twice."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mosquitto_fixture import MosquittoBroker, MqttCollector

from daemon.config import Config, DaemonConfig, MqttConfig
from daemon.outputs.outbox_legacy import LEGACY_OUTBOX_FILENAME
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.runner import SinkRunner

pytestmark = pytest.mark.timeout(60)

DEVICE = "oldbox"
# The previous release's schema (daemon/outputs/outbox.py before the sinks), verbatim.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""
JPEG = b"\xff\xd8 old snapshot \xff\xd9"


def old_record(i: int, has_snapshot: bool) -> bytes:
    return json.dumps(
        {
            "id": f"old{i}",
            "camera": "cam1",
            "action": "walk",
            "phase": "start",
            "score": 0.9,
            "started_at": 1.0,
            "ended_at": None,
            "event_type": "walk",
            "device_id": DEVICE,
            "has_snapshot": has_snapshot,
        },
        sort_keys=True,
    ).encode()


def make_old_outbox(state_dir: Path) -> None:
    """Rows as the old MqttPublisher left them: old0 with its snapshot row, old1 acked
    (deleted), old2 and old3 pending; WAL mode like the old code."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_dir / LEGACY_OUTBOX_FILENAME, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(OLD_SCHEMA)
    base = f"actiond/{DEVICE}/cam1"
    rows = [
        ("old0:start", f"{base}/event", old_record(0, True)),
        ("old0:start:attachment", f"{base}/snapshot", JPEG),
        ("old1:start", f"{base}/event", old_record(1, False)),
        ("old2:start", f"{base}/event", old_record(2, False)),
        ("old3:start", f"{base}/event", old_record(3, False)),
    ]
    for key, topic, payload in rows:
        db.execute(
            "INSERT INTO outbox (event_id, topic, payload, qos, created_at) "
            "VALUES (?, ?, ?, 1, 1.0)",
            (key, topic, payload),
        )
    db.execute("DELETE FROM outbox WHERE event_id = 'old1:start'")
    db.close()


def runner(state_dir: Path, port: int) -> SinkRunner:
    config = Config(
        daemon=DaemonConfig(device_id=DEVICE, state_dir=str(state_dir)),
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=port, discovery=False),
    )
    context = SinkContext(DEVICE, ("cam1",), ("walk",), state_dir)
    sinks = SinkRunner(state_dir, context)
    sinks.swap(sinks.build(config, context, ["mqtt"]), context)
    return sinks


def test_old_outbox_is_imported_once_in_order_with_snapshots(tmp_path: Path) -> None:
    state = tmp_path / "state"
    make_old_outbox(state)
    kept = tmp_path / "copy.sqlite3"
    shutil.copy(state / LEGACY_OUTBOX_FILENAME, kept)
    sinks = runner(state, 1)
    try:
        items = sinks.outbox.pending("mqtt")
        assert [i.key for i in items] == ["old0:start", "old2:start", "old3:start"]
        assert [i.snapshot for i in items] == [JPEG, None, None]
        assert "has_snapshot" not in items[0].record and items[0].record["device_id"] == DEVICE
        assert not (state / LEGACY_OUTBOX_FILENAME).exists()
        assert (state / (LEGACY_OUTBOX_FILENAME + ".imported")).exists()
    finally:
        sinks.close(0.0)
    # A start killed after the import but before the rename imports again: no doubles.
    shutil.copy(kept, state / LEGACY_OUTBOX_FILENAME)
    again = runner(state, 1)
    try:
        assert [i.key for i in again.outbox.pending("mqtt")] == [
            "old0:start",
            "old2:start",
            "old3:start",
        ]
    finally:
        again.close(0.0)


def test_imported_events_reach_the_broker(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    state = tmp_path / "state"
    make_old_outbox(state)
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/cam1/+"])
    sinks = runner(state, mosquitto.port)
    try:
        for sink in sinks.sinks.values():
            sink.start()

        def delivered(ms: list[Any]) -> bool:
            return len([m for m in ms if m.topic.endswith(("/event", "/snapshot"))]) >= 4

        messages = collector.wait_for(delivered, "the old events and snapshot")
        events = [json.loads(m.payload) for m in messages if m.topic.endswith("/event")]
        assert [e["id"] for e in events] == ["old0", "old2", "old3"]
        assert [e["has_snapshot"] for e in events] == [True, False, False]
        assert [m.payload for m in messages if m.topic.endswith("/snapshot")] == [JPEG]
    finally:
        sinks.close(2.0)
