"""Durable, bounded outbox for MQTT events: an SQLite file under the state directory.

paho-mqtt keeps unacknowledged QoS 1 messages only in memory, so every event is written
here first and deleted only when the broker's PUBACK for it arrives. Across a broker outage
or a daemon restart the pending rows are published again, in insertion order (`seq`).

Durability: WAL journal with synchronous=FULL. In WAL mode synchronous=NORMAL does not
fsync the WAL at commit, so the last events before a power cut can vanish; edge boxes do
lose power, and events are rare (a few per minute), so one fsync per add/ack is cheap and
`add()` really is durable when it returns.

Bound and drop policy: at most `max_events` rows. When an add finds the outbox full, the
OLDEST pending rows are deleted to make room (the newest alerts are the most useful after a
long outage) and counted in `dropped_total`. A burst of drops (consecutive adds that had to
drop, with no ack in between) logs one WARNING at its start and one INFO line with the
count when room appears again; the drops inside a burst log at DEBUG.

Attachments: an event may carry one attachment (its JPEG snapshot), stored in the same
transaction as a row of its own right after the event's (key `<event key>:attachment`),
so it is published at QoS 1 right after its event and kept across outages and restarts
exactly like it. Attachments count neither as events (depth, max_events) nor towards
published events; they are bounded by their total size (`max_attachment_bytes`): when
an add goes over it, the OLDEST attachments are deleted (their events stay) and counted
in `attachments_dropped_total`. An event dropped from a full outbox takes its attachment
with it.

Thread safety: one connection (check_same_thread=False) guarded by a lock, because adds
come from the supervisor's thread and acks from paho's network thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

OUTBOX_FILENAME = "mqtt-outbox.sqlite3"
SQLITE_BUSY_TIMEOUT_S = 5.0
DEFAULT_PENDING_LIMIT = 1000
ATTACHMENT_SUFFIX = ":attachment"
# Snapshots kept for undelivered events: a few hundred JPEGs of a few tens of kB.
DEFAULT_ATTACHMENT_MAX_BYTES = 32 * 1024 * 1024


def attachment_key(event_id: str) -> str:
    """The outbox key of an event's attachment."""
    return event_id + ATTACHMENT_SUFFIX


def is_attachment(key: str) -> bool:
    """Whether an outbox key names an attachment rather than an event."""
    return key.endswith(ATTACHMENT_SUFFIX)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or used (corrupt, unwritable, disk full)."""


@dataclass(frozen=True)
class OutboxItem:
    """One pending message: published again until the broker acknowledges it."""

    seq: int
    event_id: str
    topic: str
    payload: bytes
    qos: int
    created_at: float


class Outbox:
    """A bounded, durable FIFO of MQTT messages keyed by a unique event id."""

    def __init__(self, path: Path, max_events: int,
                 max_attachment_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES) -> None:
        if max_events < 1:
            raise ValueError(f"outbox max_events must be >= 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self.max_attachment_bytes = max_attachment_bytes
        self._lock = threading.Lock()
        self._dropped_total = 0
        self._attachments_dropped_total = 0
        self._burst_drops = 0
        self._conn = self._open(self.path)
        # ATTACHMENT_SUFFIX has no LIKE wildcards (% _), so LIKE matches it literally.
        events, attachment_bytes = self._conn.execute(
            "SELECT COUNT(*) - COUNT(a), COALESCE(SUM(a), 0) FROM (SELECT CASE "
            "WHEN event_id LIKE ? THEN length(payload) END AS a FROM outbox)",
            (f"%{ATTACHMENT_SUFFIX}",)).fetchone()
        self._depth = int(events)
        self._attachment_bytes = int(attachment_bytes)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit; add() opens its own IMMEDIATE transaction.
            conn = sqlite3.connect(str(path), timeout=SQLITE_BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(
                f"cannot open the MQTT outbox {path}: {exc}. Check that the state directory "
                f"is writable; if the file is corrupt, move it aside (its pending alerts "
                f"are then lost) and start again") from exc
        return conn

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, max_events={self.max_events}, depth={self._depth})"

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def dropped_total(self) -> int:
        """Pending events deleted unsent because the outbox was full (since this open)."""
        return self._dropped_total

    @property
    def attachments_dropped_total(self) -> int:
        """Attachments deleted unsent to stay within max_attachment_bytes (since open)."""
        return self._attachments_dropped_total

    def depth(self) -> int:
        """Number of pending (unacknowledged) events, attachments not counted."""
        return self._depth

    def add(self, event_id: str, topic: str, payload: bytes, qos: int = 1,
            attachment: tuple[str, bytes] | None = None) -> bool:
        """Store a message, and its (topic, bytes) attachment if any, durably in one
        transaction; False (and nothing stored) when event_id is present."""
        with self._lock:
            try:
                return self._add_locked(event_id, topic, bytes(payload), qos, attachment)
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write to the MQTT outbox {self.path}: {exc} "
                                  f"(disk full or read-only state directory?)") from exc

    def _add_locked(self, event_id: str, topic: str, payload: bytes, qos: int,
                    attachment: tuple[str, bytes] | None) -> bool:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._insert_locked(event_id, topic, payload, qos):
                conn.execute("ROLLBACK")
                return False
            added_bytes = 0
            if attachment is not None and len(attachment[1]) <= self.max_attachment_bytes:
                self._insert_locked(attachment_key(event_id), attachment[0],
                                    bytes(attachment[1]), qos)
                added_bytes = len(attachment[1])
            excess = self._depth + 1 - self.max_events
            dropped, dropped_bytes = self._drop_oldest_locked(excess)
            kept_bytes = self._attachment_bytes + added_bytes - dropped_bytes
            freed = self._drop_attachments_locked(kept_bytes - self.max_attachment_bytes)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._depth += 1 - len(dropped)
        self._attachment_bytes += added_bytes - dropped_bytes - freed[1]
        too_big = attachment is not None and not added_bytes
        self._note_attachment_drops(freed[0] + int(too_big))
        self._note_drops(dropped)
        return True

    def _insert_locked(self, key: str, topic: str, payload: bytes, qos: int) -> bool:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO outbox (event_id, topic, payload, qos, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (key, topic, payload, qos, time.time()))
        return cur.rowcount > 0

    def _drop_oldest_locked(self, count: int) -> tuple[list[str], int]:
        """Delete the `count` oldest events and their attachments: (event keys, bytes of
        attachments deleted)."""
        if count <= 0:
            return [], 0
        rows = self._conn.execute(
            "SELECT seq, event_id FROM outbox WHERE event_id NOT LIKE ? ORDER BY seq LIMIT ?",
            (f"%{ATTACHMENT_SUFFIX}", count)).fetchall()
        keys = [str(r[1]) for r in rows]
        self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(r[0],) for r in rows])
        freed = 0
        for key in keys:
            sizes = self._conn.execute("DELETE FROM outbox WHERE event_id = ? RETURNING "
                                       "length(payload)", (attachment_key(key),)).fetchall()
            freed += sum(int(r[0]) for r in sizes)
        return keys, freed

    def _drop_attachments_locked(self, over_bytes: int) -> tuple[int, int]:
        """Delete the oldest attachments until `over_bytes` are freed: (count, bytes)."""
        if over_bytes <= 0:
            return 0, 0
        rows = self._conn.execute(
            "SELECT seq, length(payload) FROM outbox WHERE event_id LIKE ? ORDER BY seq",
            (f"%{ATTACHMENT_SUFFIX}",)).fetchall()
        count = freed = 0
        for seq, size in rows:
            if freed >= over_bytes:
                break
            self._conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            count, freed = count + 1, freed + int(size)
        return count, freed

    def _note_attachment_drops(self, count: int) -> None:
        if not count:
            return
        # Counted every time (exported as a metric); logged at WARNING only the first time.
        level = logging.DEBUG if self._attachments_dropped_total else logging.WARNING
        self._attachments_dropped_total += count
        log.log(level, "MQTT outbox %s: dropped %d event snapshot(s) to stay within %d bytes "
                "of snapshots (%d since start); their events are kept", self.path, count,
                self.max_attachment_bytes, self._attachments_dropped_total)

    def _note_drops(self, dropped: list[str]) -> None:
        if not dropped:
            self._end_burst()
            return
        self._dropped_total += len(dropped)
        if self._burst_drops == 0:
            log.warning("MQTT outbox %s is full (%d events): dropping the oldest pending "
                        "events, first %s; the broker has been unreachable for long, or raise "
                        "mqtt.outbox_max_events", self.path, self.max_events, dropped[0])
        else:
            log.debug("MQTT outbox full: dropped %s", ", ".join(dropped))
        self._burst_drops += len(dropped)

    def _end_burst(self) -> None:
        if self._burst_drops:
            log.info("MQTT outbox %s has room again; %d pending events were dropped while it "
                     "was full (%d since start)", self.path, self._burst_drops,
                     self._dropped_total)
            self._burst_drops = 0

    def pending(self, limit: int = DEFAULT_PENDING_LIMIT, after_seq: int = 0) -> list[OutboxItem]:
        """Up to `limit` pending items with seq > after_seq, oldest first."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT seq, event_id, topic, payload, qos, created_at FROM outbox "
                    "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read the MQTT outbox {self.path}: {exc}") from exc
        return [OutboxItem(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), int(r[4]), float(r[5]))
                for r in rows]

    def ack(self, event_id: str) -> bool:
        """Delete a delivered item; False when it was not there (already acked or dropped)."""
        with self._lock:
            try:
                sizes = self._conn.execute("DELETE FROM outbox WHERE event_id = ? RETURNING "
                                           "length(payload)", (event_id,)).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write to the MQTT outbox {self.path}: {exc} "
                                  f"(disk full or read-only state directory?)") from exc
            if is_attachment(event_id):
                self._attachment_bytes -= sum(int(r[0]) for r in sizes)
                return bool(sizes)
            self._depth -= len(sizes)
            self._end_burst()
            return bool(sizes)

    def close(self) -> None:
        """Close the database; later calls raise OutboxError."""
        with self._lock:
            self._conn.close()
