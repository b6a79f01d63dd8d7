"""Outbox: order, ack, duplicates, the bound and its drop count, durability, threads;
each sink's own queue over one file."""

from __future__ import annotations

import logging
import queue as queue_module
import sqlite3
import threading
from pathlib import Path

import pytest

from daemon.outputs.outbox import Outbox, OutboxError
from daemon.outputs.outbox_queue import SinkQueue

pytestmark = pytest.mark.timeout(30)


def _fill(queue: SinkQueue, count: int, start: int = 0) -> list[str]:
    ids = [f"ev-{i}" for i in range(start, start + count)]
    for event_id in ids:
        assert queue.store(event_id, {"id": event_id})
    return ids


def _keys(queue: SinkQueue, limit: int = 10) -> list[str]:
    return [i.key for i in queue.pending(limit)]


def _seq(queue: SinkQueue, key: str) -> int:
    return next(i.seq for i in queue.pending(1000) if i.key == key)


def test_pending_keeps_insertion_order_and_fields(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", 100)
        ids = _fill(queue, 5)
        items = queue.pending(10)
        assert [i.key for i in items] == ids
        assert [i.record for i in items] == [{"id": i} for i in ids]
        assert all(i.snapshot is None and i.created_at > 0 for i in items)
        assert [i.seq for i in items] == sorted(i.seq for i in items)
        assert _keys(queue, 2) == ids[:2]
        after = queue.pending(10, after_seq=items[2].seq)
        assert [i.key for i in after] == ids[3:]


def test_ack_removes_only_that_event(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", 100)
        ids = _fill(queue, 4)
        seq = _seq(queue, ids[1])
        assert queue.ack(seq) == 1
        assert queue.ack(seq) == 0  # already gone: idempotent
        assert queue.ack(9999) == 0
        assert _keys(queue) == [ids[0], ids[2], ids[3]]
        assert queue.depth() == 3 and outbox.depth() == 3 and queue.delivered_total == 1


def test_duplicate_event_id_is_ignored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", 100)
        assert queue.store("same", {"v": "first"}) is not None
        assert queue.store("same", {"v": "second"}) is None
        assert [i.record for i in queue.pending(10)] == [{"v": "first"}]
        assert queue.depth() == 1


def test_full_outbox_drops_oldest_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.outputs.outbox")
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", 3)
        ids = _fill(queue, 7)
        assert queue.depth() == 3 and outbox.depth() == 3
        assert queue.dropped_total == 4
        assert _keys(queue) == ids[-3:]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one warning per burst, not one per drop"
        assert "full" in warnings[0].getMessage() and ids[0] in warnings[0].getMessage()
        # An ack makes room: the burst ends (INFO with its count), the next drop warns again.
        queue.ack(_seq(queue, ids[-1]))
        assert any(
            r.levelno == logging.INFO and "4 pending events were dropped" in r.getMessage()
            for r in caplog.records
        )
        _fill(queue, 2, start=100)
        assert queue.dropped_total == 5
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "o.sqlite3"  # the parent directory is created
    outbox = Outbox(path)
    queue = outbox.queue("s", 100)
    ids = _fill(queue, 3)
    queue.ack(_seq(queue, ids[0]))
    outbox.close()
    with Outbox(path) as reopened:
        again = reopened.queue("s", 100)
        assert again.depth() == 2
        assert _keys(again) == ids[1:]
        assert again.store("ev-new", {})
        assert again.pending(10)[-1].seq > again.pending(10)[0].seq


def test_durable_settings_are_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as outbox:
        outbox.queue("s", 10).store("a", {})
        # Another connection sees the committed row at once: add() returned after COMMIT.
        other = sqlite3.connect(str(path))
        try:
            assert other.execute("SELECT key FROM events").fetchall() == [("a",)]
            assert other.execute("SELECT sink FROM deliveries").fetchall() == [("s",)]
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            other.close()
        assert outbox._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_concurrent_add_and_ack_from_two_threads(tmp_path: Path) -> None:
    count = 300
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", count * 2)
        added: queue_module.Queue[int] = queue_module.Queue()
        errors: list[BaseException] = []

        def producer() -> None:
            try:
                for i in range(count):
                    item = queue.store(f"ev-{i}", {})
                    assert item is not None
                    added.put(item.seq)
            except BaseException as exc:  # noqa: BLE001 - the main thread's assert reports it
                errors.append(exc)

        def acker() -> None:
            try:
                for _ in range(count):
                    assert queue.ack(added.get(timeout=10)) == 1
            except BaseException as exc:  # noqa: BLE001 - the main thread's assert reports it
                errors.append(exc)

        threads = [threading.Thread(target=producer), threading.Thread(target=acker)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert queue.depth() == 0 and outbox.depth() == 0
        assert queue.pending(10) == []


def test_bad_bound_and_corrupt_file_are_clear_errors(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox, pytest.raises(ValueError, match="max_events"):
        outbox.queue("s", 0)
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(OutboxError, match="move it aside"):
        Outbox(corrupt)


def test_closed_outbox_raises_outbox_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    queue = outbox.queue("s", 10)
    outbox.close()
    with pytest.raises(OutboxError):
        queue.store("a", {})


def test_each_sink_keeps_its_own_delivery_state(tmp_path: Path) -> None:
    """One event stored once for two sinks: acks, bounds and drops are per sink, and the
    event leaves the file when the last sink has it."""
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as outbox:
        fast, slow = outbox.queue("fast", 100), outbox.queue("slow", 2)
        items = [outbox.add(f"e{i}", {"i": i}, None, ["fast", "slow"]) for i in range(3)]
        assert all(items)
        assert fast.depth() == 3 and slow.depth() == 2 and slow.dropped_total == 1
        assert fast.dropped_total == 0 and _keys(fast) == ["e0", "e1", "e2"]
        assert outbox.depth() == 3  # e0 still waits for `fast`
        fast.ack(*(i.seq for i in fast.pending()))
        assert fast.depth() == 0 and outbox.depth() == 2 and _keys(slow) == ["e1", "e2"]
    with Outbox(path) as reopened:  # each sink's state survives a restart
        assert reopened.queue("fast", 100).depth() == 0
        slow = reopened.queue("slow", 2)
        assert _keys(slow) == ["e1", "e2"]
        slow.ack(*(i.seq for i in slow.pending()))
        assert reopened.depth() == 0


def test_a_failed_delivery_counts_an_attempt_and_holds_the_queue_in_order(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("s", 10)
        _fill(queue, 3)
        head = queue.pending()[0]
        queue.retry_later(head.seq, 60.0)
        assert queue.pending() == [], "later events wait behind the head (order is kept)"
        queue.retry_later(head.seq, 0.0)
        items = queue.pending()
        assert items[0].seq == head.seq and items[0].attempts == 2
