"""One sink's view of the event outbox: its pending events, in order, and its acks.

Every sink gets a SinkQueue from the supervisor's outputs (or a test); the counts behind
it (delivered, dropped, snapshots dropped) live in the Outbox, so they carry on across a
reload that replaces the sink object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.outputs.outbox import Outbox, OutboxItem

log = logging.getLogger("daemon.outputs.outbox")


@dataclass
class SinkState:
    """One sink's bound and counts in an Outbox (kept across reloads)."""

    max_events: int
    snapshots: bool
    depth: int = 0
    delivered_total: int = 0
    dropped_total: int = 0
    snapshots_dropped_total: int = 0
    burst_drops: int = 0
    retries_total: int = 0  # failed tries, each retried later (retry_later)
    drops: dict[str, int] = field(default_factory=dict, compare=False)  # by reason, not
    # outbox_full: events the sink gave up on (webhook: every receiver refused it)
    # Held by a sink's thread over one batch (pending -> write -> ack): a replaced sink's
    # thread still finishing its batch and its replacement never take the same rows.
    batch_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def note_drops(self, path: Path, sink: str, dropped: list[str]) -> None:
        """Count drops (always: exported); log a burst's start at WARNING, once."""
        if not dropped:
            self.end_burst(path, sink)
            return
        self.dropped_total += len(dropped)
        if self.burst_drops == 0:
            log.warning(
                "event outbox %s is full for sink %s (%d events): dropping its oldest "
                "pending events, first %s; the sink has been failing for long, or "
                "raise %s.outbox_max_events",
                path,
                sink,
                self.max_events,
                dropped[0],
                sink,
            )
        else:
            log.debug("event outbox full for sink %s: dropped %s", sink, ", ".join(dropped))
        self.burst_drops += len(dropped)

    def end_burst(self, path: Path, sink: str) -> None:
        if self.burst_drops:
            log.info(
                "event outbox %s has room again for sink %s; %d pending events were "
                "dropped while it was full (%d since start)",
                path,
                sink,
                self.burst_drops,
                self.dropped_total,
            )
            self.burst_drops = 0


class SinkQueue:
    """The delivery state of one sink in an Outbox."""

    def __init__(self, outbox: Outbox, sink: str) -> None:
        self._outbox, self.sink = outbox, sink

    def __repr__(self) -> str:
        return f"SinkQueue({self.sink!r}, depth={self.depth()}, path={str(self.path)!r})"

    @property
    def path(self) -> Path:
        return self._outbox.path

    def store(
        self, key: str, record: Mapping[str, Any], snapshot: bytes | None = None
    ) -> OutboxItem | None:
        """Store an event for this sink alone (a sink used on its own: tests, tools);
        the supervisor stores each event once for every sink (Outbox.add)."""
        return self._outbox.add(key, record, snapshot, [self.sink])

    def pending(self, limit: int = 1000, after_seq: int = 0) -> list[OutboxItem]:
        """Up to `limit` pending events after `after_seq`, oldest first."""
        return self._outbox.pending(self.sink, limit, after_seq)

    def ack(self, *seqs: int) -> int:
        """These events are delivered; the number that were still pending."""
        return self._outbox.ack(self.sink, seqs)

    def drop(self, reason: str, *seqs: int) -> int:
        """The sink gave up on these events for good (not delivered): they leave its
        queue and are counted under `reason`; the number that were still pending."""
        gone = self._outbox.ack(self.sink, seqs, delivered=False)
        drops = self._outbox.sink_state(self.sink).drops
        drops[reason] = drops.get(reason, 0) + gone
        return gone

    def count_drop(self, reason: str, count: int = 1) -> None:
        """Count `count` drops under `reason` for an event that stays in the queue or was
        delivered anyway (webhook: one URL refused an event another one took)."""
        drops = self._outbox.sink_state(self.sink).drops
        drops[reason] = drops.get(reason, 0) + count

    @property
    def other_drops(self) -> tuple[tuple[str, int], ...]:
        """(reason, count) of the events dropped by `drop`, by reason."""
        return tuple(sorted(self._outbox.sink_state(self.sink).drops.copy().items()))

    def retry_later(self, seq: int, delay_s: float) -> None:
        """Delivering `seq` failed: count the attempt; pending() holds it (and every later
        event, to keep the order) back for `delay_s`."""
        self._outbox.retry_later(self.sink, seq, time.time() + delay_s)
        self._outbox.sink_state(self.sink).retries_total += 1

    @property
    def retries_total(self) -> int:
        """Failed tries this sink will retry (retry_later calls) since the outbox opened."""
        return self._outbox.sink_state(self.sink).retries_total

    @property
    def batch_lock(self) -> threading.Lock:
        """Held over one batch by the thread delivering for this sink (kept across a
        reload: the old sink's thread and the new one's take turns)."""
        return self._outbox.sink_state(self.sink).batch_lock

    def depth(self) -> int:
        """Events waiting for this sink."""
        return self._outbox.sink_state(self.sink).depth

    @property
    def max_events(self) -> int:
        return self._outbox.sink_state(self.sink).max_events

    @property
    def delivered_total(self) -> int:
        """Events this sink acked since the outbox was opened."""
        return self._outbox.sink_state(self.sink).delivered_total

    @property
    def dropped_total(self) -> int:
        """Events dropped unsent because this sink's queue was full."""
        return self._outbox.sink_state(self.sink).dropped_total

    @property
    def snapshots_dropped_total(self) -> int:
        """Snapshots of this sink's events dropped to bound the outbox's size."""
        return self._outbox.sink_state(self.sink).snapshots_dropped_total
