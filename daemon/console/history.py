"""The console's event history: one SQLite file under the state directory.

Each event is one row: its start and end records merged by `id` (the end's fields over
the start's), its first snapshot, and the columns the console filters on. The console
sink writes it from its own thread (`store_many`, one transaction per batch) before it
acks the events in the outbox; the web server reads it from its loop's thread through a
second connection (WAL: readers never wait for the writer). Retention (`prune`) drops
the oldest events beyond an age, a count and a size (records and snapshots together)
and counts what it removed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HISTORY_FILENAME = "console-history.sqlite3"
BUSY_TIMEOUT_S = 5.0
MAX_LIMIT = 500  # most events one query returns
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    action TEXT NOT NULL,
    started REAL NOT NULL,
    stored REAL NOT NULL,
    record TEXT NOT NULL,
    snapshot BLOB,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_started ON events (started);
-- Covering for retention's size sum: `bytes` sits after the snapshot in the row, which a
-- scan of the table would read through (overflow pages) to reach it.
CREATE INDEX IF NOT EXISTS events_started_bytes ON events (started, bytes);
CREATE INDEX IF NOT EXISTS events_action ON events (action);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class HistoryError(Exception):
    """The history file cannot be opened, read or written (says which and why)."""


@dataclass(frozen=True)
class Retention:
    """How much history to keep (the [console] history_* keys)."""

    max_age_s: float
    max_events: int
    max_bytes: int


@dataclass(frozen=True)
class Query:
    """A filter over the history: newest first."""

    camera: str = ""
    action: str = ""
    since_epoch_s: float | None = None
    limit: int = 100


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except (sqlite3.Error, OSError) as exc:
        raise HistoryError(f"cannot open the console history {path}: {exc}") from exc
    return db


class History:
    """The history file: written by one thread, read by another (own connections)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = _connect(path)
        self._read = _connect(path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"

    # -- the sink's side ------------------------------------------------------------------

    def store_many(self, items: Sequence[tuple[Mapping[str, Any], bytes | None]]) -> None:
        """Merge each (record, snapshot) into its event's row, all in one transaction."""
        now = time.time()
        with self._write_lock, _errors("write", self.path):
            with self._write:
                for record, snapshot in items:
                    self._merge(record, snapshot, now)

    def _merge(self, record: Mapping[str, Any], snapshot: bytes | None, now: float) -> None:
        event_id = str(record["id"])
        row = self._write.execute(
            "SELECT record, snapshot FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        merged: dict[str, Any] = {}
        if row is not None:
            merged = json.loads(row[0])
            snapshot = row[1] if row[1] is not None else snapshot
        if record.get("phase") == "start" and merged.get("phase") == "end":
            merged = {**record, **merged}  # a start redelivered after its end
        else:
            merged.update(record)
        text = json.dumps(merged, sort_keys=True)
        started = float(merged.get("started_at_epoch") or now)
        size = len(text) + (len(snapshot) if snapshot else 0)
        self._write.execute(
            "INSERT OR REPLACE INTO events (id, camera, action, started, stored, record, "
            "snapshot, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                str(merged["camera"]),
                str(merged["action"]),
                started,
                now,
                text,
                snapshot,
                size,
            ),
        )

    def prune(self, keep: Retention, now: float | None = None) -> int:
        """Remove the oldest events beyond `keep`; how many were removed (also added to
        the file's `pruned` counter)."""
        now = time.time() if now is None else now
        with self._write_lock, _errors("prune", self.path):
            with self._write:
                db = self._write
                removed = db.execute(
                    "DELETE FROM events WHERE started < ?", (now - keep.max_age_s,)
                ).rowcount
                removed += db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events "
                    "ORDER BY started DESC LIMIT -1 OFFSET ?)",
                    (keep.max_events,),
                ).rowcount
                removed += self._prune_bytes(keep.max_bytes)
                if removed:
                    db.execute(
                        "INSERT INTO counters VALUES ('pruned', ?) ON CONFLICT(name) "
                        "DO UPDATE SET value = value + excluded.value",
                        (removed,),
                    )
        return removed

    def _prune_bytes(self, max_bytes: int) -> int:
        total = self._write.execute("SELECT COALESCE(SUM(bytes), 0) FROM events").fetchone()[0]
        removed = 0
        while total > max_bytes:
            row = self._write.execute(
                "SELECT id, bytes FROM events ORDER BY started LIMIT 1"
            ).fetchone()
            if row is None:
                break
            self._write.execute("DELETE FROM events WHERE id = ?", (row[0],))
            total -= row[1]
            removed += 1
        return removed

    # -- the server's side ----------------------------------------------------------------

    def events(self, query: Query) -> list[dict[str, Any]]:
        """The merged records matching `query`, newest first."""
        sql, args = "SELECT record FROM events WHERE 1 = 1", list[object]()
        if query.camera:
            sql, args = sql + " AND camera = ?", [*args, query.camera]
        if query.action:
            sql, args = sql + " AND action = ?", [*args, query.action]
        if query.since_epoch_s is not None:
            sql, args = sql + " AND started >= ?", [*args, query.since_epoch_s]
        sql += " ORDER BY started DESC, rowid DESC LIMIT ?"
        args.append(max(1, min(query.limit, MAX_LIMIT)))
        with self._read_lock, _errors("read", self.path):
            rows = self._read.execute(sql, args).fetchall()
        return [json.loads(row[0]) for row in rows]

    def actions(self) -> list[str]:
        """The distinct actions of the events kept, sorted."""
        with self._read_lock, _errors("read", self.path):
            rows = self._read.execute("SELECT DISTINCT action FROM events ORDER BY action")
            return [str(row[0]) for row in rows.fetchall()]

    def event(self, event_id: str) -> dict[str, Any] | None:
        with self._read_lock, _errors("read", self.path):
            row = self._read.execute(
                "SELECT record FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def snapshot(self, event_id: str) -> bytes | None:
        with self._read_lock, _errors("read", self.path):
            row = self._read.execute(
                "SELECT snapshot FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def summary(self) -> dict[str, int]:
        """Events kept, their bytes and how many retention removed (ever)."""
        with self._read_lock, _errors("read", self.path):
            count, size = self._read.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM events"
            ).fetchone()
            row = self._read.execute("SELECT value FROM counters WHERE name = 'pruned'").fetchone()
        return {"events": int(count), "bytes": int(size), "pruned_total": int(row[0]) if row else 0}

    def close(self) -> None:
        with self._write_lock:
            self._write.close()
        with self._read_lock:
            self._read.close()


class _errors:
    """Turns sqlite3 errors into HistoryError naming the file and what was being done."""

    def __init__(self, doing: str, path: Path) -> None:
        self.doing, self.path = doing, path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise HistoryError(
                f"cannot {self.doing} the console history {self.path}: {exc}"
            ) from exc
