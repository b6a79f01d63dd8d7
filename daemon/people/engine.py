"""PeopleEngine: one camera's detections -> tracks -> actions -> start/end events.

Per frame (media time t_s): the tracker matches the persons to tracks; for every
confirmed track seen in this frame, the zones say where it stands (the middle of its
box's bottom edge) and the rules and skeleton classifiers say which actions hold; the
hysteresis turns those into start/end records. Where a person stands decides what is
reported: in an exclude zone, nothing; on a camera with include zones, only inside one
of them (the events carry that zone's name); elsewhere everything, with zone "".
`in_zone` starts when a person enters an include zone and ends when they leave it;
`loitering` starts after loiter_s in one zone.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.config import PEOPLE_ACTIONS, CameraConfig, PeopleConfig
from daemon.people.body import anchor
from daemon.people.hysteresis import Hysteresis, Key
from daemon.people.person import (
    END_STOPPED,
    END_TRACK_LOST,
    PeopleUpdate,
    Person,
    PersonEvent,
    Track,
)
from daemon.people.rules import body_actions, history_span_s
from daemon.people.skeleton import SkeletonClassifier, load_classifier
from daemon.people.tracker import Tracker
from daemon.people.zones import Zones

ZONE_ACTIONS = ("in_zone", "loitering")
HISTORY_MARGIN_S = 0.5  # kept beyond the longest window, for late samples


class PeopleEngine:
    """Tracks and person-centred actions of one camera (module docstring)."""

    def __init__(
        self,
        camera: CameraConfig,
        people: PeopleConfig,
        frame_size: tuple[int, int],
        classifiers: Sequence[SkeletonClassifier] | None = None,
    ) -> None:
        self._cfg = people
        self._classifiers = list(
            [load_classifier(c) for c in people.classifiers] if classifiers is None else classifiers
        )
        clash = set(PEOPLE_ACTIONS) & {a for c in self._classifiers for a in c.actions}
        if clash:
            raise ValueError(f"skeleton classifier labels {sorted(clash)} are rule actions")
        spans = [history_span_s(people)] + [c.contract.span_s for c in self._classifiers]
        self._tracker = Tracker(people, max(spans) + HISTORY_MARGIN_S)
        self._zones = Zones(camera.zones, frame_size)
        self._frame_height = frame_size[1]
        self._hysteresis = Hysteresis(
            {"lying": people.lying_s, "loitering": people.loiter_s},
            people.start_s,
            people.end_s,
            people.cooldown_s,
        )
        self._rule_actions = frozenset(people.actions)

    @property
    def actions(self) -> tuple[str, ...]:
        """Every action name this engine can emit (rules first, then classifier labels)."""
        extra = [a for c in self._classifiers for a in c.actions]
        return (*self._cfg.actions, *dict.fromkeys(extra))

    @property
    def zones(self) -> Zones:
        return self._zones

    def update(self, persons: Sequence[Person], t_s: float) -> PeopleUpdate:
        """One analysed frame at media time t_s."""
        events: list[PersonEvent] = []
        for track in self._tracker.update(persons, t_s):
            events += self._hysteresis.end_track(
                track.track_id, track.box, track.last_seen_s, END_TRACK_LOST
            )
        tracks = self._tracker.tracks
        for track in tracks:
            if track.confirmed and track.last_seen_s == t_s:
                on = self._holding(track)
                events += self._hysteresis.step(track.track_id, on, track.box, t_s)
        return PeopleUpdate(tracks, events)

    def close(self, t_s: float) -> list[PersonEvent]:
        """Ends every open event at t_s (end of stream, shutdown) and every track."""
        events: list[PersonEvent] = []
        for track in self._tracker.close():
            events += self._hysteresis.end_track(track.track_id, track.box, t_s, END_STOPPED)
        return events

    def _holding(self, track: Track) -> dict[Key, float]:
        """(action, zone) -> score for every action that holds for the track now."""
        where = anchor(track.box)
        if self._zones.excluded(where):
            return {}
        zones = self._zones.include_zones(where)
        if self._zones.has_include and not zones:
            return {}
        history = list(track.history)
        on: dict[Key, float] = {}
        for zone in zones:
            for action in ZONE_ACTIONS:
                on[(action, zone)] = track.score
        zone = zones[0] if zones else ""
        for action in body_actions(history, self._cfg, self._frame_height):
            on[(action, zone)] = track.score
        on = {key: s for key, s in on.items() if key[0] in self._rule_actions}
        for classifier in self._classifiers:
            for label, score in classifier.scores(history).items():
                on[(label, zone)] = score
        return on
