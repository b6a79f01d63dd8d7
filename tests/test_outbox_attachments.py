"""Event snapshots in the durable outbox: stored with their event for the sinks that want
them, bounded by size, never counted as events (pure SQLite, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.outputs.outbox import Outbox

pytestmark = pytest.mark.timeout(20)


def jpeg(i: int, size: int = 40) -> bytes:
    return bytes([i]) * size


def test_snapshot_travels_with_its_event_and_is_not_an_event(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("mqtt", 10, snapshots=True)
        assert queue.store("a:start", {}, jpeg(1))
        assert queue.store("b:start", {})
        assert queue.depth() == 2
        rows = queue.pending()
        assert [(r.key, r.snapshot) for r in rows] == [("a:start", jpeg(1)), ("b:start", None)]
        assert queue.ack(rows[0].seq) and queue.depth() == 1
        # A duplicate event stores nothing, its snapshot neither.
        assert queue.store("b:start", {}, jpeg(2)) is None
        assert [(r.key, r.snapshot) for r in queue.pending()] == [("b:start", None)]


def test_snapshots_are_kept_only_for_sinks_that_want_them(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        lines = outbox.queue("jsonl", 10)
        assert lines.store("a:start", {}, jpeg(1))
        assert lines.pending()[0].snapshot is None, "no sink wants it: not stored"
        mqtt = outbox.queue("mqtt", 10, snapshots=True)
        item = outbox.add("b:start", {}, jpeg(2), ["jsonl", "mqtt"])
        assert item is not None and item.snapshot == jpeg(2)
        mqtt.ack(item.seq)  # jsonl still waits for the event, nobody for the snapshot
        assert [r.snapshot for r in lines.pending()] == [None, None]


def test_snapshots_are_bounded_by_size_oldest_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, max_snapshot_bytes=100) as outbox:
        queue = outbox.queue("mqtt", 10, snapshots=True)
        for i in range(3):
            queue.store(f"e{i}:start", {}, jpeg(i))
        assert queue.snapshots_dropped_total == 1
        assert queue.depth() == 3, "events stay when their snapshot is dropped"
        assert [(r.key, r.snapshot is not None) for r in queue.pending()] == [
            ("e0:start", False),
            ("e1:start", True),
            ("e2:start", True),
        ]
        queue.store("big:start", {}, jpeg(9, 101))
        assert queue.snapshots_dropped_total == 2
        assert queue.pending()[-1].key == "big:start"
    # Reopened: the events and bytes on disk are counted again.
    with Outbox(path, max_snapshot_bytes=100) as again:
        queue = again.queue("mqtt", 10, snapshots=True)
        assert queue.depth() == 4
        queue.store("e3:start", {}, jpeg(3))
        assert queue.snapshots_dropped_total == 1  # 120 bytes: e1's goes
        assert [r.key for r in queue.pending() if r.snapshot] == ["e2:start", "e3:start"]


def test_an_event_dropped_from_a_full_outbox_takes_its_snapshot(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_snapshot_bytes=100) as outbox:
        queue = outbox.queue("mqtt", 2, snapshots=True)
        for i in range(3):
            queue.store(f"e{i}:start", {}, jpeg(i))
        assert queue.dropped_total == 1 and queue.snapshots_dropped_total == 0
        assert [(r.key, r.snapshot) for r in queue.pending()] == [
            ("e1:start", jpeg(1)),
            ("e2:start", jpeg(2)),
        ]
        queue.store("e3:start", {}, jpeg(3))  # 80 bytes held: room without dropping
        assert queue.snapshots_dropped_total == 0
