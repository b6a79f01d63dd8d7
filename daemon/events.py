"""Action events: per camera, the per-window score stream -> hysteresis -> ActionEvent.

Pure logic, no I/O. The infer stage yields one score vector per window (one score per
label). A raw score stream flickers, so each action goes through hysteresis before it
becomes an event:

- start: `start_windows` consecutive windows with score >= the action's threshold;
- end: `end_windows` consecutive windows below it (shorter dips are part of the event);
- cooldown: after an end, that action cannot start again on the camera for `cooldown_s`.

Each occurrence yields two records with the same id: a "start" record as soon as it is
confirmed and an "end" record when it is over. The id lets a consumer that gets a record
twice (MQTT QoS 1 redelivery, outbox replay after a restart) drop the duplicate. An end
record says why it ended (`end_reason`): the scores fell (END_SCORES_LOW), the camera's
stream was lost (END_STREAM_LOST), the stream ended (END_END_OF_STREAM: a finite file),
or the camera's pipeline stopped (END_STOPPED: shutdown, reload, a restarted worker).

Time: the tracker runs on the frames' capture times (EventClock.seconds), never on the
wall clock: time.monotonic_ns() for a live source, media time for a replayed file (see
daemon.stages.media_clock). So a file gives the same events whatever its replay speed.
EventClock turns those times into what a record says (epoch seconds, media seconds).
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np

# Which labels make events is a config rule (daemon.config.rules); re-exported here.
from daemon.config.rules import BACKGROUND_LABELS as BACKGROUND_LABELS
from daemon.config.rules import event_actions as event_actions
from daemon.config.rules import ignored_labels as ignored_labels

DEFAULT_THRESHOLD = 0.6
PHASE_START = "start"
PHASE_END = "end"
END_SCORES_LOW = "scores_low"
END_STREAM_LOST = "stream_lost"
END_END_OF_STREAM = "end_of_stream"
END_STOPPED = "stopped"
NS_PER_S = 1_000_000_000
RECORD_DECIMALS_S = 3  # durations and media times in a record: whole milliseconds


def record_s(seconds: float) -> float:
    """A duration or media time as a record says it: to the millisecond, so that float
    noise (1.2000000000000455) never reaches a consumer."""
    return round(seconds, RECORD_DECIMALS_S)


class EventClock:
    """One camera's capture times (the rings' timestamps, ns) as an event record says them.

    `live`: capture times are time.monotonic_ns() (network streams, devices); otherwise
    they are a replay's media time, which runs ahead of the clock when a file is read
    unpaced. seconds() gives the time base of every window and cooldown.
    """

    def __init__(self, live: bool) -> None:
        self.live = live
        self._epoch_offset_s: float | None = None

    def seconds(self, capture_ns: int) -> float:
        """The capture time in seconds: what windows, dwell and cooldown run on."""
        t_s = capture_ns / NS_PER_S
        self._offset(t_s)
        return t_s

    def epoch_s(self, t_s: float) -> float:
        """Wall-clock (epoch) seconds of capture time `t_s`. Live: when it was captured.
        Replay: when it would have been shown by a real-time playback that reached the
        first frame this clock saw at the moment it saw it."""
        return t_s + self._offset(t_s)

    def media_s(self, t_s: float) -> float | None:
        """Seconds into the replayed stream, to the millisecond (None for a live source)."""
        return None if self.live else record_s(t_s)

    def latency_stamp(self, capture_ns: int) -> int:
        """The capture time to measure capture -> event latency from, 0 for none: only a
        live source's capture times come from the clock that latency is read on."""
        return capture_ns if self.live else 0

    def _offset(self, t_s: float) -> float:
        if self._epoch_offset_s is None:
            base_s = time.monotonic() if self.live else t_s
            self._epoch_offset_s = time.time() - base_s
        return self._epoch_offset_s


@dataclass(frozen=True)
class EventSettings:
    """Hysteresis parameters shared by every action of one camera."""

    start_windows: int = 2
    end_windows: int = 2
    cooldown_s: float = 5.0
    default_threshold: float = DEFAULT_THRESHOLD
    thresholds: Mapping[str, float] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.start_windows < 1:
            raise ValueError(f"start_windows must be >= 1, got {self.start_windows}")
        if self.end_windows < 1:
            raise ValueError(f"end_windows must be >= 1, got {self.end_windows}")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be a finite number >= 0, got {self.cooldown_s}")
        for name, value in {"<default>": self.default_threshold, **self.thresholds}.items():
            if not math.isfinite(value):
                raise ValueError(f"threshold for {name!r} must be a finite number, got {value}")
        # A read-only copy: the caller's dict must not change a frozen settings object.
        object.__setattr__(self, "thresholds", MappingProxyType(dict(self.thresholds)))
        object.__setattr__(self, "ignore", frozenset(self.ignore))

    def threshold(self, action: str) -> float:
        """The score an action needs to count a window as 'on'."""
        return self.thresholds.get(action, self.default_threshold)


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ActionEvent:
    """One start or end record of an action occurrence on one camera."""

    id: str
    camera: str
    action: str
    phase: str  # PHASE_START | PHASE_END
    score_max: float
    score_mean: float
    started_at: float  # capture time (s, see EventClock) of the occurrence's first window
    ended_at: float | None  # capture time (s) of the first low window; None for start
    frame_id: int  # the window with the highest score so far
    snapshot: bytes | None = field(default=None, repr=False)  # JPEG, filled by the caller
    end_reason: str | None = None  # END_*; None for a start record

    def with_snapshot(self, jpeg: bytes | None) -> ActionEvent:
        """A copy carrying the JPEG of frame `frame_id` (the record itself is frozen)."""
        return dataclasses.replace(self, snapshot=jpeg)

    def to_json_dict(self, clock: EventClock | None = None) -> dict[str, Any]:
        """JSON-ready fields; the snapshot bytes are left out (they travel separately).

        With `clock`, started_at/ended_at are capture times it converts (epoch fields,
        plus media_start_s/media_end_s for a replay); without, they are epoch seconds.
        """
        started = self.started_at if clock is None else clock.epoch_s(self.started_at)
        ended = self.ended_at
        media_start = media_end = duration = None
        if self.ended_at is not None:
            duration = record_s(self.ended_at - self.started_at)
        if clock is not None:
            media_start = clock.media_s(self.started_at)
            if ended is not None:
                media_end, ended = clock.media_s(ended), clock.epoch_s(ended)
        return {
            "id": self.id,
            "camera": self.camera,
            "action": self.action,
            "phase": self.phase,
            "score_max": self.score_max,
            "score_mean": self.score_mean,
            "started_at": iso_utc(started),
            "started_at_epoch": started,
            "ended_at": None if ended is None else iso_utc(ended),
            "ended_at_epoch": ended,
            "duration_s": duration,
            "media_start_s": media_start,
            "media_end_s": media_end,
            "frame_id": self.frame_id,
            "end_reason": self.end_reason,
            "has_snapshot": self.snapshot is not None,
        }


@dataclass
class _Window:
    score: float
    frame_id: int
    t: float


@dataclass
class _Occurrence:
    """Running statistics of one open event."""

    id: str
    started_at: float
    score_max: float = -math.inf
    score_sum: float = 0.0
    windows: int = 0
    best_frame_id: int = -1

    def add(self, window: _Window) -> None:
        # A NaN/inf window counts as 'off' and stays out of the statistics, so one bad
        # model output cannot turn score_mean into NaN for the whole event.
        if not math.isfinite(window.score):
            return
        self.score_sum += window.score
        self.windows += 1
        if window.score > self.score_max:
            self.score_max = window.score
            self.best_frame_id = window.frame_id

    @property
    def score_mean(self) -> float:
        return self.score_sum / self.windows if self.windows else 0.0


@dataclass
class _ActionState:
    """Hysteresis state of one action on one camera."""

    threshold: float
    run: list[_Window] = field(default_factory=list)  # consecutive 'on' windows, idle
    lows: list[_Window] = field(default_factory=list)  # consecutive 'off' windows, open
    open: _Occurrence | None = None
    cooldown_until: float = -math.inf


class EventTracker:
    """Turns one camera's per-window score vectors into start/end ActionEvents."""

    def __init__(
        self,
        camera: str,
        labels: Sequence[str],
        settings: EventSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not labels:
            raise ValueError(f"camera {camera!r}: the model has no labels to track")
        if len(set(labels)) != len(labels):
            raise ValueError(f"camera {camera!r}: duplicate labels in {list(labels)}")
        unknown = sorted((set(settings.thresholds) | settings.ignore) - set(labels))
        if unknown:
            raise ValueError(
                f"camera {camera!r}: thresholds/ignore name labels the model "
                f"does not have: {unknown}; known labels: {list(labels)}"
            )
        self.camera = camera
        self.labels: tuple[str, ...] = tuple(labels)
        self.settings = settings
        self._clock = clock
        self._states: dict[str, _ActionState] = {
            label: _ActionState(settings.threshold(label))
            for label in self.labels
            if label not in settings.ignore
        }

    @property
    def active(self) -> tuple[str, ...]:
        """Actions with an open event, in label order."""
        return tuple(a for a, s in self._states.items() if s.open is not None)

    def best_frame_id(self, action: str) -> int | None:
        """Frame id of the highest-scoring window of the open event, None if not open."""
        if action not in self.labels:
            raise ValueError(
                f"camera {self.camera!r}: unknown action {action!r}; "
                f"known labels: {list(self.labels)}"
            )
        state = self._states.get(action)
        return None if state is None or state.open is None else state.open.best_frame_id

    def update(
        self, scores: Sequence[float] | np.ndarray, frame_id: int, t: float | None = None
    ) -> list[ActionEvent]:
        """Feed one window's scores (label order); returns the records it completes.

        `t` is the window's capture time in epoch seconds (the clock when omitted).
        """
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        if values.shape[0] != len(self.labels):
            raise ValueError(
                f"camera {self.camera!r}: got {values.shape[0]} scores for "
                f"{len(self.labels)} labels; the model output does not match "
                f"its label list"
            )
        now = self._clock() if t is None else float(t)
        events: list[ActionEvent] = []
        for index, label in enumerate(self.labels):
            state = self._states.get(label)
            if state is None:
                continue
            event = self._step(label, state, _Window(float(values[index]), frame_id, now))
            if event is not None:
                events.append(event)
        return events

    def flush(self, t: float | None = None, reason: str = END_STOPPED) -> list[ActionEvent]:
        """End every open event at `t` saying `reason` (stream lost, end of stream,
        shutdown); resets pending runs, so windows before `t` never join a later start."""
        now = self._clock() if t is None else float(t)
        events: list[ActionEvent] = []
        for label, state in self._states.items():
            state.run.clear()
            if state.open is not None:
                events.append(self._close(label, state, state.open, now, reason))
        return events

    def _step(self, action: str, state: _ActionState, window: _Window) -> ActionEvent | None:
        on = math.isfinite(window.score) and window.score >= state.threshold
        if state.open is None:
            # Windows inside the cooldown do not count towards a start, so a new event
            # never starts (started_at) earlier than cooldown_s after the previous end.
            if not on or window.t < state.cooldown_until:
                state.run.clear()
                return None
            state.run.append(window)
            if len(state.run) < self.settings.start_windows:
                return None
            return self._open(action, state)
        if on:
            for dip in state.lows:  # a dip shorter than end_windows belongs to the event
                state.open.add(dip)
            state.lows.clear()
            state.open.add(window)
            return None
        state.lows.append(window)
        if len(state.lows) < self.settings.end_windows:
            return None
        return self._close(action, state, state.open, state.lows[0].t, END_SCORES_LOW)

    def _open(self, action: str, state: _ActionState) -> ActionEvent:
        occurrence = _Occurrence(id=uuid.uuid4().hex, started_at=state.run[0].t)
        for window in state.run:
            occurrence.add(window)
        state.run.clear()
        state.open = occurrence
        return self._record(action, occurrence, PHASE_START, None)

    def _close(
        self,
        action: str,
        state: _ActionState,
        occurrence: _Occurrence,
        ended_at: float,
        reason: str,
    ) -> ActionEvent:
        state.open = None
        state.lows.clear()
        state.cooldown_until = ended_at + self.settings.cooldown_s
        return self._record(action, occurrence, PHASE_END, ended_at, reason)

    def _record(
        self,
        action: str,
        occurrence: _Occurrence,
        phase: str,
        ended_at: float | None,
        reason: str | None = None,
    ) -> ActionEvent:
        return ActionEvent(
            id=occurrence.id,
            camera=self.camera,
            action=action,
            phase=phase,
            score_max=occurrence.score_max,
            score_mean=occurrence.score_mean,
            started_at=occurrence.started_at,
            ended_at=ended_at,
            frame_id=occurrence.best_frame_id,
            end_reason=reason,
        )
