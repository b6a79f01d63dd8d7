"""The event sink protocol: what every destination of action events implements.

The supervisor stores each event once in the durable outbox (daemon/outputs/outbox.py),
pending for every enabled sink, and then hands it to each sink's `deliver`. A sink
delivers in its own way and time (MQTT: now if connected, else after it reconnects;
jsonl: from its own thread) and acks each event on its SinkQueue once the event is
really delivered; what it has not acked it finds again in `queue.pending()`, also
after a restart. `deliver` may come before `start` (a reload swaps sinks in order): the
event is already durable, and the sink sends it once started.

One close protocol: `close(timeout_s)` is bounded by its argument and may block; the
runner calls it from a thread, in the reverse order of opening. A sink is closed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from daemon.outputs.outbox import OutboxItem


@dataclass(frozen=True)
class SinkContext:
    """What every sink may need beyond its own config section."""

    device_id: str
    cameras: tuple[str, ...]
    actions: tuple[str, ...]  # the labels that make events, all cameras together
    state_dir: Path
    # Each camera's own actions (its pipeline's: the people engine's or the clip
    # model's); a camera missing here offers `actions`.
    per_camera: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Each camera's live JPEG slot (daemon/ipc/liveslot.py, filled by its overlay while
    # a reader asks): the console's live images. Empty where no run is known (tests).
    live_slots: Mapping[str, Path] = field(default_factory=dict)
    # The console's base URL as others reach it (runner.console_url; "" when the console
    # is off or its address unknown): the base of event_links in events.
    console_url: str = ""

    def camera_actions(self, camera: str) -> tuple[str, ...]:
        """What this camera's events can be called (Home Assistant offers them)."""
        return self.per_camera.get(camera, self.actions)

    @property
    def by_camera(self) -> dict[str, tuple[str, ...]]:
        """Every camera's actions, by name."""
        return {camera: self.camera_actions(camera) for camera in self.cameras}


def event_links(record: Mapping[str, Any], console_url: str) -> dict[str, str]:
    """Where a consumer of the event (MQTT, webhook) fetches its clip and snapshot from
    the web console: `clip_url` (`<console_url>/api/events/<id>/clip`) when the record
    names a clip, `snapshot_url` (`.../snapshot.jpg`) when its `has_snapshot` is true;
    {} when `console_url` is "" (the console is off or its address unknown) or the record
    has no `id`. The clip URL answers 404 until the clip is complete (the event's end
    plus the post-roll)."""
    event_id = record.get("id")
    if not console_url or not isinstance(event_id, str) or not event_id:
        return {}
    base = f"{console_url}/api/events/{quote(event_id, safe='')}"
    links: dict[str, str] = {}
    if record.get("clip"):
        links["clip_url"] = f"{base}/clip"
    if record.get("has_snapshot"):
        links["snapshot_url"] = f"{base}/snapshot.jpg"
    return links


@dataclass(frozen=True)
class SinkView:
    """A sink's state at scrape time (the actiond_sink_* metrics)."""

    name: str
    up: bool
    delivered_total: int
    pending: int
    dropped_total: int  # oldest events dropped from its full queue
    snapshots_dropped_total: int = 0
    other_drops: tuple[tuple[str, int], ...] = ()  # (reason, count): given up for good
    retries_total: int | None = None  # failed tries retried later; None: not counted
    logins_failed_total: int | None = None  # the console's wrong tokens; None: no login


class SinkConfig(Protocol):
    """The keys every sink's config section has."""

    @property
    def enabled(self) -> bool: ...

    @property
    def outbox_max_events(self) -> int: ...


class EventSink(Protocol):
    """A destination of action events (see the module docstring)."""

    @property
    def name(self) -> str:
        """Its config section's name; also its delivery state's name in the outbox."""

    @property
    def wants_snapshots(self) -> bool:
        """Whether the outbox should keep event snapshots for it."""

    def start(self) -> None:
        """Begin delivering (returns at once; a broker may be down)."""

    def deliver(self, item: OutboxItem) -> None:
        """`item` is stored and pending for this sink: deliver it (and any earlier
        pending one) now or later. Called on the supervisor's writer thread; must not
        wait for a network or a disk."""

    def set_camera_available(self, camera: str, available: bool) -> None:
        """Live camera state (frames flow or not); a sink without live state ignores it.
        Called on the supervisor's loop every tick: must not wait for a network, a disk or
        a lock its sending holds (note it and wake the sink's own thread)."""

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """The supervisor's periodic status; best effort, may be ignored. Called on the
        supervisor's loop: must not wait, like set_camera_available."""

    def view(self) -> SinkView:
        """Its state for the metrics (cheap; called on the supervisor's loop)."""

    def close(self, timeout_s: float) -> None:
        """Stop, within `timeout_s`: what is not delivered by then stays in the outbox."""
