"""The running event sinks over one durable outbox: open, store, swap, close.

The supervisor's outputs own one SinkRunner. `store` (on the intake's writer thread)
checks an event record once, stores it once in the outbox pending for every running
sink, and hands it to each. A reload builds the new sinks of the changed sections first
(`build`: a section that cannot work changes nothing; a running sink's outbox state,
its bound and whether snapshots are kept, is left alone), swaps them in on the writer
thread (`swap`: every record before goes to the old set, every later one to the new; the
new bounds apply from there), then closes the old ones. Closing is one protocol, `EventSink.close(timeout_s)`, called
in the reverse order of opening within one shared deadline (aiohttp's runner).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from daemon.config import Config, ConsoleConfig, parse_listen
from daemon.outputs.discovery import event_key, event_payload
from daemon.outputs.outbox import OUTBOX_FILENAME, Outbox, OutboxError
from daemon.outputs.outbox_legacy import import_legacy_outbox
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import EventSink, SinkConfig, SinkContext, SinkView
from daemon.outputs.sinks.table import SINK_KINDS

log = logging.getLogger(__name__)


class SinkSetupError(Exception):
    """A sink's config section cannot be used (names the section); nothing was changed."""


def sink_config(config: Config, name: str) -> SinkConfig:
    section: SinkConfig = getattr(config, name)
    return section


def enabled_cameras(config: Config) -> tuple[str, ...]:
    """The names of the cameras enabled in `config`, in its order."""
    return tuple(c.name for c in config.cameras if c.enabled)


def enabled_sinks(config: Config) -> tuple[str, ...]:
    """The sink sections enabled in `config`, in the table's order."""
    return tuple(name for name in SINK_KINDS if sink_config(config, name).enabled)


class SinkRunner:
    """The outbox and the running sinks, in the table's order. The outbox file is opened
    when a first sink is enabled (a daemon without sinks writes nothing to state_dir)."""

    def __init__(self, state_dir: Path, context: SinkContext) -> None:
        self.state_dir = state_dir
        self.context = context
        self.sinks: dict[str, EventSink] = {}
        self._outbox: Outbox | None = None
        # Built, not yet swapped in: name -> (sink, outbox_max_events, wants snapshots).
        self._planned: dict[str, tuple[EventSink, int, bool]] = {}

    def __repr__(self) -> str:
        return f"SinkRunner({list(self.sinks)}, state_dir={str(self.state_dir)!r})"

    @property
    def outbox(self) -> Outbox:
        """The outbox file of the state directory (with the previous release's MQTT
        outbox imported at first); OutboxError when it cannot be opened."""
        if self._outbox is None:
            outbox = Outbox(self.state_dir / OUTBOX_FILENAME)
            try:
                import_legacy_outbox(outbox, self.state_dir)
            except (OutboxError, OSError) as exc:
                outbox.close()
                raise OutboxError(str(exc)) from exc
            self._outbox = outbox
        return self._outbox

    def build(
        self, config: Config, context: SinkContext, names: Sequence[str]
    ) -> dict[str, EventSink | None]:
        """New (not started) sinks for the sections `names` (None where disabled);
        SinkSetupError, with nothing left open, when one cannot be made."""
        built: dict[str, EventSink | None] = {}
        self._planned = {}
        try:
            for name in names:
                section = sink_config(config, name)
                if not section.enabled:
                    built[name] = None
                    continue
                snapshots = SINK_KINDS[name].snapshots(section)
                queue = self._queue(name, section.outbox_max_events, snapshots)
                sink = SINK_KINDS[name].factory(section, context, queue)
                self._planned[name] = (sink, section.outbox_max_events, snapshots)
                built[name] = sink
        except (ValueError, OSError, OutboxError) as exc:
            close_sinks([made for made in built.values() if made is not None], 0.0)
            raise SinkSetupError(f"[{name}]: {exc}") from exc
        return built

    def _queue(self, name: str, max_events: int, snapshots: bool) -> SinkQueue:
        """The queue of sink `name`; its bounds are set here only when no sink of that
        name has outbox state yet (else `swap` sets them, on the writer thread)."""
        if max_events < 1:
            raise ValueError(f"outbox_max_events must be >= 1, got {max_events}")
        try:
            self.outbox.sink_state(name)
        except KeyError:
            return self.outbox.queue(name, max_events, snapshots)
        return SinkQueue(self.outbox, name)

    def swap(self, new: Mapping[str, EventSink | None], context: SinkContext) -> list[EventSink]:
        """Run `new` in place of the sinks of the same names (on the writer thread,
        between two records); the replaced sinks, to be closed by the caller."""
        replaced = [self.sinks[name] for name in new if name in self.sinks]
        for name, sink in new.items():
            planned = self._planned.pop(name, None)
            if sink is not None and planned is not None and planned[0] is sink:
                self.outbox.queue(name, planned[1], planned[2])  # the new bounds, from now
        merged = {**self.sinks, **new}
        self.sinks = {name: sink for name in SINK_KINDS if (sink := merged.get(name)) is not None}
        self.context = context
        return replaced

    def store(self, event: Mapping[str, Any], snapshot: bytes | None) -> None:
        """Check the record, store it once for every running sink, hand it to each.
        ValueError (a bad record) or OutboxError (not stored): the caller counts it lost."""
        outcome = self.store_many([(event, snapshot)])[0]
        if outcome is not None:
            raise outcome

    def store_many(
        self, events: Sequence[tuple[Mapping[str, Any], bytes | None]]
    ) -> list[Exception | None]:
        """Like store() for each event, the valid ones in ONE outbox transaction (group
        commit: one fsync for a burst): per event None (stored, or already there) or why
        it is lost (ValueError: a bad record; OutboxError: none of them was stored)."""
        outcomes: list[Exception | None] = [None] * len(events)
        sinks = list(self.sinks.values())
        if not sinks:
            return outcomes
        names, valid, entries = [s.name for s in sinks], [], []
        for i, (event, snapshot) in enumerate(events):
            try:
                record = event_payload(event, self.context.device_id, self.context.cameras)
            except ValueError as exc:
                outcomes[i] = exc
                continue
            valid.append(i)
            entries.append((event_key(record), record, snapshot, names))
        try:
            items = self.outbox.add_many(entries) if entries else []
        except OutboxError as exc:
            return [exc if i in valid else outcome for i, outcome in enumerate(outcomes)]
        for (key, *_), item in zip(entries, items, strict=True):
            if item is None:
                log.debug("event %s already in the outbox; not stored twice", key)
                continue
            for sink in sinks:
                sink.deliver(item)
        return outcomes

    def set_camera_available(self, camera: str, available: bool) -> None:
        for sink in self.sinks.values():
            sink.set_camera_available(camera, available)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        for sink in self.sinks.values():
            sink.publish_stats(stats)

    def views(self) -> list[SinkView]:
        return [sink.view() for sink in self.sinks.values()]

    def close(self, timeout_s: float) -> None:
        """Close every sink (reverse order, one deadline), then the outbox."""
        sinks, self.sinks = list(self.sinks.values()), {}
        close_sinks(sinks, timeout_s)
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None


def close_sinks(sinks: Sequence[EventSink], timeout_s: float) -> None:
    """Close `sinks` last-opened-first, all within `timeout_s` (blocking)."""
    deadline = time.monotonic() + timeout_s
    for sink in reversed(sinks):
        sink.close(max(0.0, deadline - time.monotonic()))


def sink_context(
    config: Config,
    actions: Sequence[str],
    per_camera: Mapping[str, Sequence[str]] | None = None,
    live_slots: Mapping[str, Path] | None = None,
) -> SinkContext:
    """`actions`: all cameras' together; `per_camera`: each camera's own; `live_slots`:
    each camera's live JPEG slot file."""
    return SinkContext(
        config.daemon.device_id,
        enabled_cameras(config),
        tuple(actions),
        Path(config.daemon.state_dir),
        {name: tuple(names) for name, names in (per_camera or {}).items()},
        dict(live_slots or {}),
        console_url(config.console),
    )


def console_url(cfg: ConsoleConfig) -> str:
    """The console's base URL as others reach it, without a trailing slash: `public_url`
    when set (e.g. "https://box.example:8443" behind a proxy), else "http://<host>:<port>"
    from a concrete `listen` address; "" when the console is off or `listen` is a
    wildcard (":8090", "0.0.0.0:8090" say nothing about how others reach the box)."""
    if not cfg.enabled:
        return ""
    if cfg.public_url:
        return cfg.public_url.rstrip("/")
    try:
        host, port = parse_listen(cfg.listen)
    except ValueError:
        return ""
    if host in ("", "0.0.0.0", "::") or port == 0:
        return ""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
