"""Event snapshots in the durable outbox: stored with their event, bounded by size,
never counted as events (pure SQLite, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.outputs.outbox import Outbox, attachment_key

pytestmark = pytest.mark.timeout(20)


def jpeg(i: int, size: int = 40) -> bytes:
    return bytes([i]) * size


def test_attachment_follows_its_event_and_is_not_an_event(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", 10) as outbox:
        assert outbox.add("a:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(1)))
        assert outbox.add("b:start", "t/event", b"{}")
        assert outbox.depth() == 2
        rows = outbox.pending()
        assert [(r.event_id, r.topic, r.qos) for r in rows] == [
            ("a:start", "t/event", 1), (attachment_key("a:start"), "t/snapshot", 1),
            ("b:start", "t/event", 1)]
        assert rows[1].payload == jpeg(1)
        assert outbox.ack(attachment_key("a:start"))
        assert outbox.depth() == 2
        assert outbox.ack("a:start") and outbox.depth() == 1
        # A duplicate event stores nothing, its attachment neither.
        assert not outbox.add("b:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(2)))
        assert [r.event_id for r in outbox.pending()] == ["b:start"]


def test_snapshots_are_bounded_by_size_oldest_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, 10, max_attachment_bytes=100) as outbox:
        for i in range(3):
            outbox.add(f"e{i}:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(i)))
        assert outbox.attachments_dropped_total == 1
        assert outbox.depth() == 3, "events stay when their snapshot is dropped"
        assert [r.event_id for r in outbox.pending()] == [
            "e0:start", "e1:start", attachment_key("e1:start"), "e2:start",
            attachment_key("e2:start")]
        outbox.add("big:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(9, 101)))
        assert outbox.attachments_dropped_total == 2
        assert outbox.pending()[-1].event_id == "big:start"
    # Reopened: the events and bytes on disk are counted again.
    with Outbox(path, 10, max_attachment_bytes=100) as again:
        assert again.depth() == 4
        again.add("e3:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(3)))
        assert again.attachments_dropped_total == 1      # 120 bytes: e1's goes
        assert attachment_key("e1:start") not in {r.event_id for r in again.pending()}


def test_an_event_dropped_from_a_full_outbox_takes_its_snapshot(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", 2) as outbox:
        for i in range(3):
            outbox.add(f"e{i}:start", "t/event", b"{}", attachment=("t/snapshot", jpeg(i)))
        assert outbox.dropped_total == 1 and outbox.attachments_dropped_total == 0
        assert [r.event_id for r in outbox.pending()] == [
            "e1:start", attachment_key("e1:start"), "e2:start", attachment_key("e2:start")]
