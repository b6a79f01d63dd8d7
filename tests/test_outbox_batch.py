"""Group commit (real SQLite): Outbox.add_many stores a batch in ONE transaction, all or
nothing, with the per-sink bound applied inside it; the intake's writer stores every record
queued at once in one add_many, not one transaction (one fsync) per event."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest

from daemon.config import Config, JsonlConfig
from daemon.ipc.events_channel import EventReceiver, EventSender
from daemon.outputs.outbox import Outbox, OutboxError
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.runner import SinkRunner
from daemon.supervisor.intake import EventIntake

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 20.0


def entries(n: int, start: int = 0, sinks: tuple[str, ...] = ("a",)) -> list:  # type: ignore[type-arg]
    return [(f"k{i}", {"id": f"e{i}"}, None, sinks) for i in range(start, start + n)]


def commits(conn: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("COMMIT") else None)
    return seen


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("a", 100)
        seen = commits(outbox._conn)
        items = outbox.add_many(entries(10))
        assert len(seen) == 1
        assert [i.key for i in items if i is not None] == [f"k{i}" for i in range(10)]
        assert [i.key for i in queue.pending()] == [f"k{i}" for i in range(10)]
        assert outbox.add_many(entries(2, 9))[0] is None  # k9 is there already
        assert queue.depth() == 11


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as outbox:
        queue = outbox.queue("a", 100)
        outbox.add_many(entries(2))
        with sqlite3.connect(path) as other:  # the disk says no to one event of the batch
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.key = 'k4' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        with pytest.raises(OutboxError, match="refused"):
            outbox.add_many(entries(5, 2))
        assert [i.key for i in queue.pending()] == ["k0", "k1"]
        assert queue.depth() == 2 and outbox.depth() == 2
        outbox.add("k9", {"id": "e9"}, None, ["a"])  # and the outbox still works
        assert queue.depth() == 3


def test_the_bound_applies_inside_a_batch(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        small, big = outbox.queue("small", 3), outbox.queue("big", 100)
        outbox.add_many(entries(5, sinks=("small", "big")))
        assert [i.key for i in small.pending()] == ["k2", "k3", "k4"]
        assert small.depth() == 3 and small.dropped_total == 2
        assert big.depth() == 5 and outbox.depth() == 5


async def _burst(intake: EventIntake, sock: Path, count: int) -> None:
    intake.start()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # the writer is busy (a slow fsync): records queue up meanwhile
        held.set()
        release.wait(DEADLINE_S)

    blocker = asyncio.ensure_future(intake.in_order(hold))

    def send_all() -> None:  # a thread: the loop must be free to read the socket
        sender = EventSender(sock)
        for i in range(count):
            record = {"id": f"e{i}", "camera": "front", "action": "walk", "phase": "start"}
            assert sender.send({**record, "score_max": 0.9, "started_at": "x", "ended_at": None})
        sender.close()

    await asyncio.to_thread(send_all)
    deadline = time.monotonic() + DEADLINE_S
    while intake.received_total < count:
        assert time.monotonic() < deadline, "the intake took nothing"
        await asyncio.sleep(0.01)
    assert held.is_set()
    release.set()
    await blocker
    while intake.pending:
        assert time.monotonic() < deadline, "the writer stored nothing"
        await asyncio.sleep(0.01)
    await intake.close()


def test_the_writer_stores_what_is_queued_in_one_transaction(tmp_path: Path) -> None:
    sinks = SinkRunner(tmp_path, SinkContext("box", ("front",), ("walk",), tmp_path))
    sinks.swap(
        sinks.build(Config(jsonl=JsonlConfig(enabled=True)), sinks.context, ["jsonl"]),
        sinks.context,
    )
    seen = commits(sinks.outbox._conn)
    count = 20  # below the intake's MAX_PENDING_EVENTS: all taken while the writer is busy
    with tempfile.TemporaryDirectory(prefix="actiond-gc-") as tmp:
        sock = Path(tmp) / "ev.sock"
        intake = EventIntake(EventReceiver(sock), sinks, None)
        asyncio.run(_burst(intake, sock, count))
    assert sinks.outbox.depth() == count and not intake.lost
    assert len(seen) == 1, f"{len(seen)} transactions for {count} queued records"
    sinks.close(0.0)


@pytest.mark.parametrize("table, event", [("deliveries", "INSERT"), ("deliveries", "DELETE")])
def test_a_transaction_sqlite_ended_keeps_the_real_error(
    tmp_path: Path, table: str, event: str
) -> None:
    """RAISE(ROLLBACK) (like SQLITE_FULL) ends the transaction inside SQLite: the outbox's
    own ROLLBACK must not replace the error with 'no transaction is active'."""
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as outbox:
        queue = outbox.queue("a", 100)
        outbox.add("k0", {"id": "e0"}, None, ["a"])
        with sqlite3.connect(path) as other:
            other.execute(
                f"CREATE TRIGGER refuse BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ROLLBACK, 'the disk is full'); END"
            )
        with pytest.raises(OutboxError, match="the disk is full"):
            if event == "INSERT":
                outbox.add("k1", {"id": "e1"}, None, ["a"])
            else:
                queue.ack(queue.pending()[0].seq)
        assert queue.depth() == 1 and not outbox._conn.in_transaction
