"""The outbox's SQL (daemon.outputs.outbox): its tables, and the statements that delete
deliveries, events and snapshots. Each runs inside the caller's transaction, with the
outbox's lock held; the bookkeeping (depths, counts, logs) stays with the Outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.outputs.outbox_queue import SinkState

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL,
        snapshot BLOB,
        created_at REAL NOT NULL)""",
    # One row per (sink, event) not yet delivered; attempts/next_try: failed deliveries
    # and when the sink may try the row again (0: at once).
    """CREATE TABLE IF NOT EXISTS deliveries (
        sink TEXT NOT NULL,
        seq INTEGER NOT NULL REFERENCES events(seq),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (sink, seq)) WITHOUT ROWID""",
)


@dataclass
class AddBatch:
    """Outbox.add_many's bookkeeping inside its transaction, applied once it commits."""

    now: float
    depths: dict[str, int] = field(default_factory=dict)  # sink -> depth after the batch
    dropped: dict[str, list[str]] = field(default_factory=dict)  # sink -> keys dropped
    snapshot_bytes: int = 0
    too_big: list[list[SinkState]] = field(default_factory=list)  # per oversized snapshot


def drop_oldest(conn: sqlite3.Connection, sink: str, count: int) -> list[str]:
    """Delete `sink`'s `count` oldest deliveries: the keys of their events."""
    if count <= 0:
        return []
    rows = conn.execute(
        "DELETE FROM deliveries WHERE sink = ? AND seq IN (SELECT seq FROM deliveries "
        "WHERE sink = ? ORDER BY seq LIMIT ?) RETURNING seq",
        (sink, sink, count),
    ).fetchall()
    seqs = sorted(int(r[0]) for r in rows)
    return [
        str(conn.execute("SELECT key FROM events WHERE seq = ?", (seq,)).fetchone()[0])
        for seq in seqs
    ]


def delete_orphans(conn: sqlite3.Connection, seqs: Sequence[int] | None = None) -> int:
    """Delete events no sink waits for (among `seqs`, or all): the snapshot bytes freed."""
    where = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)"
    if seqs is None:
        rows = conn.execute(
            f"DELETE FROM events WHERE {where} RETURNING length(snapshot)"
        ).fetchall()
    else:
        rows = [
            r
            for seq in seqs
            for r in conn.execute(
                f"DELETE FROM events WHERE seq = ? AND {where} RETURNING length(snapshot)", (seq,)
            ).fetchall()
        ]
    return sum(int(r[0] or 0) for r in rows)


def release_snapshots(conn: sqlite3.Connection, seqs: Sequence[int], wanting: Sequence[str]) -> int:
    """Delete the snapshots of `seqs` that no sink still waiting wants (`wanting`: the
    sinks that send snapshots): bytes freed."""
    marks = ", ".join("?" * len(wanting))
    freed = 0
    for seq in seqs:
        row = conn.execute(
            f"SELECT length(snapshot) FROM events WHERE seq = ? AND snapshot IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq AND "
            f"d.sink IN ({marks}))",
            (seq, *wanting),
        ).fetchone()
        if row is not None:
            conn.execute("UPDATE events SET snapshot = NULL WHERE seq = ?", (seq,))
            freed += int(row[0])
    return freed


def drop_snapshots(conn: sqlite3.Connection, over_bytes: int) -> tuple[list[int], int]:
    """Delete the oldest snapshots until `over_bytes` are freed: their events' seqs, and
    the bytes freed."""
    if over_bytes <= 0:
        return [], 0
    rows = conn.execute(
        "SELECT seq, length(snapshot) FROM events WHERE snapshot IS NOT NULL ORDER BY seq"
    ).fetchall()
    seqs, freed = [], 0
    for seq, size in rows:
        if freed >= over_bytes:
            break
        conn.execute("UPDATE events SET snapshot = NULL WHERE seq = ?", (seq,))
        seqs.append(int(seq))
        freed += int(size)
    return seqs, freed
