"""Outbox: order, ack, duplicates, the bound and its drop count, durability, threads."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from daemon.outputs.outbox import Outbox, OutboxError

pytestmark = pytest.mark.timeout(30)


def _fill(outbox: Outbox, count: int, start: int = 0) -> list[str]:
    ids = [f"ev-{i}" for i in range(start, start + count)]
    for event_id in ids:
        assert outbox.add(event_id, f"t/{event_id}", event_id.encode(), qos=1)
    return ids


def test_pending_keeps_insertion_order_and_fields(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", 100) as outbox:
        ids = _fill(outbox, 5)
        items = outbox.pending(10)
        assert [i.event_id for i in items] == ids
        assert [i.topic for i in items] == [f"t/{i}" for i in ids]
        assert [i.payload for i in items] == [i.encode() for i in ids]
        assert all(i.qos == 1 and i.created_at > 0 for i in items)
        assert [i.seq for i in items] == sorted(i.seq for i in items)
        assert [i.event_id for i in outbox.pending(2)] == ids[:2]
        after = outbox.pending(10, after_seq=items[2].seq)
        assert [i.event_id for i in after] == ids[3:]


def test_ack_removes_only_that_event(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", 100) as outbox:
        ids = _fill(outbox, 4)
        assert outbox.ack(ids[1]) is True
        assert outbox.ack(ids[1]) is False       # already gone: idempotent
        assert outbox.ack("never-added") is False
        assert [i.event_id for i in outbox.pending(10)] == [ids[0], ids[2], ids[3]]
        assert outbox.depth() == 3


def test_duplicate_event_id_is_ignored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", 100) as outbox:
        assert outbox.add("same", "t/a", b"first") is True
        assert outbox.add("same", "t/b", b"second") is False
        items = outbox.pending(10)
        assert [(i.topic, i.payload) for i in items] == [("t/a", b"first")]
        assert outbox.depth() == 1


def test_full_outbox_drops_oldest_and_counts(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.outputs.outbox")
    with Outbox(tmp_path / "o.sqlite3", 3) as outbox:
        ids = _fill(outbox, 7)
        assert outbox.depth() == 3
        assert outbox.dropped_total == 4
        assert [i.event_id for i in outbox.pending(10)] == ids[-3:]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one warning per burst, not one per drop"
        assert "full" in warnings[0].getMessage() and ids[0] in warnings[0].getMessage()
        # An ack makes room: the burst ends (INFO with its count), the next drop warns again.
        outbox.ack(ids[-1])
        assert any(r.levelno == logging.INFO and "4 pending events were dropped"
                   in r.getMessage() for r in caplog.records)
        _fill(outbox, 2, start=100)
        assert outbox.dropped_total == 5
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "o.sqlite3"       # the parent directory is created
    outbox = Outbox(path, 100)
    ids = _fill(outbox, 3)
    outbox.ack(ids[0])
    outbox.close()
    with Outbox(path, 100) as reopened:
        assert reopened.depth() == 2
        assert [i.event_id for i in reopened.pending(10)] == ids[1:]
        assert reopened.add("ev-new", "t", b"x")
        assert reopened.pending(10)[-1].seq > reopened.pending(10)[0].seq


def test_durable_settings_are_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, 10) as outbox:
        outbox.add("a", "t", b"x")
        # Another connection sees the committed row at once: add() returned after COMMIT.
        other = sqlite3.connect(str(path))
        try:
            assert other.execute("SELECT event_id FROM outbox").fetchall() == [("a",)]
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            other.close()
        assert outbox._conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL


def test_concurrent_add_and_ack_from_two_threads(tmp_path: Path) -> None:
    count = 300
    with Outbox(tmp_path / "o.sqlite3", count * 2) as outbox:
        added = threading.Semaphore(0)
        errors: list[BaseException] = []

        def producer() -> None:
            try:
                for i in range(count):
                    assert outbox.add(f"ev-{i}", "t", b"x")
                    added.release()
            except BaseException as exc:   # reported by the main thread's assert
                errors.append(exc)

        def acker() -> None:
            try:
                for i in range(count):
                    assert added.acquire(timeout=10), "producer stalled"
                    assert outbox.ack(f"ev-{i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=producer), threading.Thread(target=acker)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert outbox.depth() == 0
        assert outbox.pending(10) == []


def test_bad_bound_and_corrupt_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_events"):
        Outbox(tmp_path / "o.sqlite3", 0)
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(OutboxError, match="move it aside"):
        Outbox(corrupt, 10)


def test_closed_outbox_raises_outbox_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", 10)
    outbox.close()
    with pytest.raises(OutboxError):
        outbox.add("a", "t", b"x")
