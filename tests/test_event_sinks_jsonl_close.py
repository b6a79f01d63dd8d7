"""A jsonl sink closed while its thread still writes a backlog (a slow SD card) and its
replacement on the same pending rows (a reload) never write a line twice: real SQLite
outbox, real file, each batch's write made slow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon.outputs.outbox import Outbox
from daemon.outputs.sinks import jsonl
from daemon.outputs.sinks.jsonl import BATCH_EVENTS, JsonlSink

pytestmark = pytest.mark.timeout(60)

BATCHES = 8
SLOW_WRITE_S = 0.15  # per batch: the old thread outlives close()'s grace
DEADLINE_S = 30.0


def test_a_replacement_never_writes_the_rows_a_closed_sink_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = BATCHES * BATCH_EVENTS
    write_all = jsonl._write_all

    def slow_write(fd: int, data: bytes) -> None:
        time.sleep(SLOW_WRITE_S)  # a slow disk, not a synchronisation
        write_all(fd, data)

    monkeypatch.setattr(jsonl, "_write_all", slow_write)
    path = tmp_path / "events.jsonl"
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        queue = outbox.queue("jsonl", count)
        outbox.import_pending(
            "jsonl", [(f"e{i}:start", {"id": f"e{i}"}, None, 0.0) for i in range(count)]
        )
        old = JsonlSink(path, queue)
        old.start()
        old.close(0.0)  # returns after the grace, the backlog far from written
        assert old._thread is not None and old._thread.is_alive(), "the backlog was too short"
        new = JsonlSink(path, outbox.queue("jsonl", count))
        new.start()
        deadline = time.monotonic() + DEADLINE_S
        while queue.depth() or old._thread.is_alive():
            assert time.monotonic() < deadline, f"{queue.depth()} events never written"
            time.sleep(0.05)
        new.close(5.0)
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} lines written twice"
    assert ids == [f"e{i}" for i in range(count)]
