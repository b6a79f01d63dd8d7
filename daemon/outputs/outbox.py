"""Durable, bounded outbox of events for every event sink: an SQLite file under the state
directory.

Each event is stored once (its record as JSON and, when a sink wants it, its JPEG
snapshot) with one delivery row per sink it is for. A sink takes its rows in order
through its own `SinkQueue` and acks them one by one when delivered (MQTT: the broker's
PUBACK; jsonl: the line is fsync'd); an event leaves the file when its last sink has
acked it. So each sink keeps its own delivery state: a broker outage holds only the MQTT
rows, and across a daemon restart every sink resumes where it stopped.

Durability: WAL journal with synchronous=FULL. In WAL mode synchronous=NORMAL does not
fsync the WAL at commit, so the last events before a power cut can vanish; edge boxes do
lose power, so `add()` really is durable when it returns. A burst must not cost one fsync
per event (20-100 ms each on an SD card): `add_many()` stores every event the writer has
at hand in ONE transaction (group commit), all or nothing.

Bound and drop policy, per sink: at most `max_events` pending rows for each sink. When an
add finds a sink's queue full, that sink's OLDEST pending rows are deleted to make room
(the newest alerts are the most useful after a long outage) and counted in its
`dropped_total`; the other sinks keep theirs. A burst of drops (consecutive adds that had
to drop, with no ack in between) logs one WARNING at its start and one INFO line with the
count when room appears again; the drops inside a burst log at DEBUG.

Snapshots are kept only while a sink that wants them has the event pending, bounded by
their total size (`max_snapshot_bytes`): when an add goes over it, the OLDEST snapshots
are deleted (their events stay) and counted in `snapshots_dropped_total` of each sink that
wanted them.

Thread safety: one connection (check_same_thread=False) guarded by a lock, because adds
come from the supervisor's writer thread and acks from the sinks' threads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from daemon.outputs.outbox_queue import SinkQueue, SinkState
from daemon.outputs.outbox_store import (
    SCHEMA,
    AddBatch,
    delete_orphans,
    drop_oldest,
    drop_snapshots,
    release_snapshots,
)

log = logging.getLogger(__name__)

OUTBOX_FILENAME = "events-outbox.sqlite3"
SQLITE_BUSY_TIMEOUT_S = 5.0
DEFAULT_PENDING_LIMIT = 1000
# Snapshots kept for undelivered events: a few hundred JPEGs of a few tens of kB.
DEFAULT_SNAPSHOT_MAX_BYTES = 32 * 1024 * 1024


# add_many's events: (key, record, snapshot, the sinks it is for).
NewEvent = tuple[str, Mapping[str, Any], bytes | None, Sequence[str]]


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or used (corrupt, unwritable, disk full)."""


@dataclass(frozen=True)
class OutboxItem:
    """One pending event for one sink: delivered again until the sink acks it."""

    seq: int
    key: str  # "<event id>:<phase>": unique, so a redelivery is idempotent
    record: Mapping[str, Any]  # the event record (JSON object)
    snapshot: bytes | None
    created_at: float
    attempts: int = 0


class Outbox:
    """Events stored once, delivered to each sink through its own queue."""

    def __init__(self, path: Path, max_snapshot_bytes: int = DEFAULT_SNAPSHOT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_snapshot_bytes = max_snapshot_bytes
        self._lock = threading.Lock()
        self._sinks: dict[str, SinkState] = {}
        self._snapshot_drops_logged = False
        self._conn = self._open(self.path)
        self._depths = dict(
            self._conn.execute("SELECT sink, COUNT(*) FROM deliveries GROUP BY sink").fetchall()
        )
        self._snapshot_bytes = int(
            self._conn.execute("SELECT COALESCE(SUM(length(snapshot)), 0) FROM events").fetchone()[
                0
            ]
        )

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit; writes open their own IMMEDIATE transaction.
            conn = sqlite3.connect(
                str(path),
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            for statement in SCHEMA:
                conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(
                f"cannot open the event outbox {path}: {exc}. Check that the state directory "
                f"is writable; if the file is corrupt, move it aside (its pending alerts "
                f"are then lost) and start again"
            ) from exc
        return conn

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, sinks={sorted(self._sinks)}, depth={self.depth()})"

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- sinks ----

    def queue(self, sink: str, max_events: int, snapshots: bool = False) -> SinkQueue:
        """The delivery queue of `sink` (rows kept from earlier runs included), bounded
        to `max_events` pending events; `snapshots`: the sink sends event snapshots. A
        second call for the same sink (a reload) changes its bound and keeps its counts."""
        if max_events < 1:
            raise ValueError(f"outbox max_events must be >= 1, got {max_events}")
        with self._lock:
            state = self._sinks.get(sink)
            if state is None:
                state = SinkState(max_events, snapshots, self._depths.get(sink, 0))
                self._sinks[sink] = state
            state.max_events, state.snapshots = max_events, snapshots
        return SinkQueue(self, sink)

    def sink_state(self, sink: str) -> SinkState:
        return self._sinks[sink]

    def depth(self) -> int:
        """Events stored (pending for at least one sink)."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    # ---- writes ----

    def add(
        self, key: str, record: Mapping[str, Any], snapshot: bytes | None, sinks: Sequence[str]
    ) -> OutboxItem | None:
        """Store an event for `sinks` (each registered with queue()) durably in one
        transaction; the snapshot only if one of them wants it. None (nothing stored)
        when `key` is present already."""
        return self.add_many([(key, record, snapshot, sinks)])[0]

    def add_many(self, events: Sequence[NewEvent]) -> list[OutboxItem | None]:
        """Store (key, record, snapshot, sinks) events like add(), all in ONE transaction
        (one fsync): all of them, or none (OutboxError). Per event, its item or None."""
        with self._lock:
            batch = AddBatch(time.time())
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                items = [self._insert_locked(batch, *event) for event in events]
                self._snapshot_bytes += batch.snapshot_bytes - delete_orphans(conn)
                over = self._snapshot_bytes - self.max_snapshot_bytes
                freed, freed_bytes = drop_snapshots(conn, over)
                self._snapshot_bytes -= freed_bytes
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback_locked()
                if isinstance(exc, sqlite3.Error):
                    raise OutboxError(
                        f"cannot write to the event outbox {self.path}: {exc} "
                        f"(disk full or read-only state directory?)"
                    ) from exc
                raise
            for name, depth in batch.depths.items():
                self._sinks[name].depth = depth
                self._sinks[name].note_drops(self.path, name, batch.dropped[name])
            self._note_snapshot_drops(freed, batch.too_big)
            return items

    def _rollback_locked(self) -> None:
        """Undo a failed write (a failed COMMIT may have ended the transaction already);
        never raises over the caller's error."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._snapshot_bytes = self._count_snapshot_bytes_locked()
        except (sqlite3.Error, OutboxError) as exc:
            log.debug("event outbox %s: rollback: %s", self.path, exc)

    def _insert_locked(
        self,
        batch: AddBatch,
        key: str,
        record: Mapping[str, Any],
        snapshot: bytes | None,
        sinks: Sequence[str],
    ) -> OutboxItem | None:
        """One event of add_many's transaction (its bookkeeping in `batch`)."""
        conn, states = self._conn, {name: self._sinks[name] for name in sinks}
        if not any(s.snapshots for s in states.values()):
            snapshot = None
        too_big = snapshot is not None and len(snapshot) > self.max_snapshot_bytes
        stored = None if too_big or not snapshot else bytes(snapshot)
        cur = conn.execute(
            "INSERT OR IGNORE INTO events (key, record, snapshot, created_at) VALUES (?, ?, ?, ?)",
            (key, json.dumps(dict(record), sort_keys=True), stored, batch.now),
        )
        if cur.rowcount == 0:
            return None
        seq = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO deliveries (sink, seq) VALUES (?, ?)", [(name, seq) for name in states]
        )
        for name, state in states.items():
            depth = batch.depths.get(name, state.depth) + 1
            dropped = drop_oldest(conn, name, depth - state.max_events)
            batch.depths[name] = depth - len(dropped)
            batch.dropped.setdefault(name, []).extend(dropped)
        batch.snapshot_bytes += len(stored or b"")
        if too_big:
            batch.too_big.append(list(states.values()))
        return OutboxItem(seq, key, record, stored, batch.now)

    def _count_snapshot_bytes_locked(self) -> int:
        return int(self._query("SELECT COALESCE(SUM(length(snapshot)), 0) FROM events")[0][0])

    def ack(self, sink: str, seqs: Sequence[int], delivered: bool = True) -> int:
        """`sink` delivered (or dropped) these events: delete its rows (and events no sink
        waits for) in one transaction; the number of rows that were there."""
        with self._lock:
            try:
                return self._ack_locked(sink, seqs, delivered)
            except sqlite3.Error as exc:
                raise OutboxError(
                    f"cannot write to the event outbox {self.path}: {exc} "
                    f"(disk full or read-only state directory?)"
                ) from exc

    def _ack_locked(self, sink: str, seqs: Sequence[int], delivered: bool) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            gone = sum(
                conn.execute(
                    "DELETE FROM deliveries WHERE sink = ? AND seq = ?", (sink, seq)
                ).rowcount
                for seq in seqs
            )
            freed = delete_orphans(conn, seqs)
            state = self._sinks.get(sink)
            if state is not None and state.snapshots:
                wanting = [name for name, other in self._sinks.items() if other.snapshots]
                freed += release_snapshots(conn, seqs, wanting)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback_locked()  # a failed COMMIT may have ended it: keep its error
            raise
        self._snapshot_bytes -= freed
        if state is not None:
            state.depth -= gone
            state.delivered_total += gone if delivered else 0
            if gone:
                state.end_burst(self.path, sink)
        return gone

    def import_pending(
        self, sink: str, events: Sequence[tuple[str, Mapping[str, Any], bytes | None, float]]
    ) -> int:
        """Store (key, record, snapshot, created_at) events pending for `sink` in one
        transaction, keys already present skipped (a migration run twice): the number
        stored. No bound is applied here: the next add() applies it."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                stored = 0
                for key, record, snapshot, created_at in events:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO events (key, record, snapshot, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (key, json.dumps(dict(record), sort_keys=True), snapshot, created_at),
                    )
                    if cur.rowcount:
                        conn.execute(
                            "INSERT INTO deliveries (sink, seq) VALUES (?, ?)",
                            (sink, cur.lastrowid),
                        )
                        stored += 1
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback_locked()
                raise OutboxError(f"cannot write to the event outbox {self.path}: {exc}") from exc
            self._snapshot_bytes = self._count_snapshot_bytes_locked()
            if sink in self._sinks:
                self._sinks[sink].depth += stored
            else:
                self._depths[sink] = self._depths.get(sink, 0) + stored
            return stored

    def retry_later(self, sink: str, seq: int, next_try: float) -> None:
        """A delivery of `seq` to `sink` failed: count the attempt, wait until next_try."""
        with self._lock:
            try:
                self._conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_try "
                    "= ? WHERE sink = ? AND seq = ?",
                    (next_try, sink, seq),
                )
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write to the event outbox {self.path}: {exc}") from exc

    # ---- reads ----

    def pending(
        self, sink: str, limit: int = DEFAULT_PENDING_LIMIT, after_seq: int = 0
    ) -> list[OutboxItem]:
        """Up to `limit` of `sink`'s pending events with seq > after_seq, oldest first,
        stopping before the first one that waits for its next try (order is kept)."""
        with self._lock:
            rows = self._query(
                "SELECT e.seq, e.key, e.record, e.snapshot, e.created_at, d.attempts, "
                "d.next_try FROM deliveries d JOIN events e ON e.seq = d.seq WHERE d.sink = ? "
                "AND d.seq > ? ORDER BY d.seq LIMIT ?",
                (sink, after_seq, limit),
            )
        items, now = [], time.time()
        for seq, key, record, snapshot, created_at, attempts, next_try in rows:
            if next_try > now:
                break
            items.append(
                OutboxItem(
                    int(seq),
                    str(key),
                    json.loads(record),
                    None if snapshot is None else bytes(snapshot),
                    float(created_at),
                    int(attempts),
                )
            )
        return items

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the event outbox {self.path}: {exc}") from exc

    # ---- drop accounting (counted always: exported as metrics) ----

    def _note_snapshot_drops(self, seqs: list[int], too_big: list[list[SinkState]]) -> None:
        for seq in seqs:
            for (name,) in self._conn.execute(
                "SELECT sink FROM deliveries WHERE seq = ?", (seq,)
            ).fetchall():
                state = self._sinks.get(str(name))
                if state is not None and state.snapshots:
                    state.snapshots_dropped_total += 1
        for states in too_big:  # per event whose snapshot alone was over the bound
            for state in states:
                state.snapshots_dropped_total += int(state.snapshots)
        if seqs or too_big:
            # Counted every time (exported as a metric); logged at WARNING only the first time.
            level = logging.DEBUG if self._snapshot_drops_logged else logging.WARNING
            self._snapshot_drops_logged = True
            log.log(
                level,
                "event outbox %s: dropped %d event snapshot(s) to stay within %d bytes "
                "of snapshots; their events are kept",
                self.path,
                len(seqs) + len(too_big),
                self.max_snapshot_bytes,
            )

    def close(self) -> None:
        """Close the database; later calls raise OutboxError."""
        with self._lock:
            self._conn.close()
