"""Start/end hysteresis per (track, action, zone), on media time.

Not daemon/events.py's EventTracker: that one counts windows of one camera-wide score
vector per label; here each person's actions are separate occurrences, and analysis
frames come at a varying rate (the gate skips still frames), so holds are seconds.

- start: the action holds on every sample for `hold_s` (per action: [people] start_s,
  lying_s for lying, loiter_s for loitering); the start record's t_s is its first sample;
- end: off on every sample for end_s (shorter pauses belong to the occurrence); the end
  record's t_s is the first off sample;
- cooldown: after an end, the same (track, action, zone) cannot start for cooldown_s.
A track that is not seen gives no samples: its actions neither start nor end until it
is seen again or is lost (end_track).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.people.person import END_ACTION_OVER, PHASE_END, PHASE_START, Box, PersonEvent

Key = tuple[str, str]  # (action, zone)
# Media times are floats (frame index / rate): a hold of exactly start_s or end_s must
# count as held (24.2 - 23.8 is 0.3999999999999986 s), so durations get this slack.
TIME_SLACK_S = 1e-6


@dataclass
class _State:
    run_since_s: float | None = None  # first sample of the current 'on' run (idle)
    open: bool = False
    off_since_s: float | None = None  # first 'off' sample while open
    cooldown_until_s: float = -math.inf
    score: float = 0.0  # the highest score of the open occurrence


class Hysteresis:
    """The action states of every track of one camera."""

    def __init__(self, hold_s: Mapping[str, float], default_hold_s: float, end_s: float,
                 cooldown_s: float) -> None:  # fmt: skip
        self._hold_s = dict(hold_s)
        self._default_hold_s = default_hold_s
        self._end_s = end_s
        self._cooldown_s = cooldown_s
        self._states: dict[int, dict[Key, _State]] = {}

    def open_actions(self, track_id: int) -> list[Key]:
        """The (action, zone) pairs with an open occurrence for the track."""
        return [key for key, st in self._states.get(track_id, {}).items() if st.open]

    def step(self, track_id: int, on: Mapping[Key, float], box: Box, t_s: float) -> list[PersonEvent]:  # fmt: skip
        """One sample of a track: `on` maps each (action, zone) holding now to its score;
        every other known key is off."""
        states = self._states.setdefault(track_id, {})
        for key in on:
            states.setdefault(key, _State())
        events: list[PersonEvent] = []
        for key, st in list(states.items()):
            score = on.get(key)
            event = self._on(key, st, score, t_s) if score is not None else self._off(key, st, t_s)
            if event is not None:
                events.append(_record(event, track_id, key, box, st.score))
            if not st.open and st.run_since_s is None and st.cooldown_until_s <= t_s:
                del states[key]  # idle and cool: nothing to remember
        return events

    def end_track(self, track_id: int, box: Box, t_s: float, reason: str) -> list[PersonEvent]:
        """Ends every open occurrence of a track at t_s and forgets the track."""
        states = self._states.pop(track_id, {})
        return [
            _record((PHASE_END, t_s, reason), track_id, key, box, st.score)
            for key, st in states.items()
            if st.open
        ]

    def tracks(self) -> list[int]:
        return list(self._states)

    def _on(self, key: Key, st: _State, score: float, t_s: float) -> tuple[str, float, str] | None:  # fmt: skip
        if st.open:
            st.off_since_s = None
            st.score = max(st.score, score)
            return None
        if t_s < st.cooldown_until_s:
            st.run_since_s = None
            return None
        if st.run_since_s is None:
            st.run_since_s, st.score = t_s, score
        st.score = max(st.score, score)
        if t_s - st.run_since_s + TIME_SLACK_S < self._hold_s.get(key[0], self._default_hold_s):
            return None
        st.open, started_s, st.run_since_s = True, st.run_since_s, None
        return (PHASE_START, started_s, "")

    def _off(self, key: Key, st: _State, t_s: float) -> tuple[str, float, str] | None:
        if not st.open:
            st.run_since_s = None
            return None
        if st.off_since_s is None:
            st.off_since_s = t_s
        if t_s - st.off_since_s + TIME_SLACK_S < self._end_s:
            return None
        ended_s = st.off_since_s
        st.open, st.off_since_s = False, None
        st.cooldown_until_s = ended_s + self._cooldown_s
        return (PHASE_END, ended_s, END_ACTION_OVER)


def _record(
    event: tuple[str, float, str], track_id: int, key: Key, box: Box, score: float
) -> PersonEvent:
    phase, t_s, reason = event
    action, zone = key
    return PersonEvent(phase, action, track_id, zone, box, score, t_s, reason)
