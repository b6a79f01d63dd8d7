"""Event-level scoring of a daemon's events against hand labels (pure logic).

Matching, per clip and per action: an event matches a labelled event of the same action
when their time intervals overlap (the label's interval widened by the clip's
uncertainty_s at both ends); each label takes at most one event and each event at most
one label, pairs taken in order of the longest overlap first. An event left over that
overlaps an optional label of its action is "don't care" (neither a hit nor a false
alarm); any other is a false alarm. A label left over is missed.

Track ID switches: the events matched to one labelled person (required or optional
labels) should all carry one track id; each extra id is a switch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.evaluate.labels import ClipLabels, LabelledEvent

SECONDS_PER_HOUR = 3600.0
NO_TRACK = -1  # an event that carries no track id (clip-model events)


@dataclass(frozen=True)
class DetectedEvent:
    """One event the daemon made (its start and end records joined), in media seconds."""

    action: str
    start_s: float
    end_s: float
    track_id: int = NO_TRACK
    zone: str = ""


@dataclass
class Presence:
    """Analysed frames with and without labelled people, and those with a detection."""

    people_frames: int = 0
    people_frames_detected: int = 0
    empty_frames: int = 0
    empty_frames_detected: int = 0

    def add(self, other: Presence) -> None:
        self.people_frames += other.people_frames
        self.people_frames_detected += other.people_frames_detected
        self.empty_frames += other.empty_frames
        self.empty_frames_detected += other.empty_frames_detected

    def to_json(self) -> dict[str, Any]:
        p, e = self.people_frames, self.empty_frames
        return {
            "frames_with_people": p,
            "detected_in_them": self.people_frames_detected,
            "frame_recall": self.people_frames_detected / p if p else None,
            "frames_without_people": e,
            "detected_in_them_falsely": self.empty_frames_detected,
        }


def presence(labels: ClipLabels, detections: Mapping[int, int]) -> Presence:
    """Compare the people detected per analysed frame (frame index -> detections) with
    the frames the labels say someone is visible in."""
    visible = {f for person in labels.people for a, b in person.visible for f in range(a, b)}
    counts = Presence()
    for frame, found in detections.items():
        if frame in visible:
            counts.people_frames += 1
            counts.people_frames_detected += found > 0
        else:
            counts.empty_frames += 1
            counts.empty_frames_detected += found > 0
    return counts


@dataclass
class ClipScore:
    """The outcome of matching one clip's events to its labels."""

    clip: str
    duration_s: float
    people_present: bool
    run: str = "plain"  # the clip's scenario (a zone scenario is a run of its own)
    matches: list[tuple[DetectedEvent, LabelledEvent]] = field(default_factory=list)
    dont_care: list[tuple[DetectedEvent, LabelledEvent]] = field(default_factory=list)
    false_alarms: list[DetectedEvent] = field(default_factory=list)
    missed: list[LabelledEvent] = field(default_factory=list)
    presence: Presence = field(default_factory=Presence)

    def tracks_by_person(self) -> dict[int, set[int]]:
        """Track ids of the events matched to each labelled person."""
        tracks: dict[int, set[int]] = {}
        for event, label in self.matches + self.dont_care:
            if event.track_id != NO_TRACK:
                tracks.setdefault(label.person, set()).add(event.track_id)
        return tracks

    @property
    def id_switches(self) -> int:
        return sum(len(ids) - 1 for ids in self.tracks_by_person().values() if ids)


def _overlap_s(event: DetectedEvent, label: LabelledEvent, slack_s: float) -> float | None:
    """Seconds the intervals share (0.0 when they only touch); None when they do not meet."""
    start = max(event.start_s, label.start_s - slack_s)
    end = min(event.end_s, label.end_s + slack_s)
    return end - start if end >= start else None


def match_events(
    events: Sequence[DetectedEvent], labels: Sequence[LabelledEvent], slack_s: float
) -> tuple[list[tuple[DetectedEvent, LabelledEvent]], list[DetectedEvent], list[LabelledEvent]]:
    """One-to-one matches of events to labels of the same action, longest overlap first:
    (matches, events left over, labels left over)."""
    pairs = []
    for i, event in enumerate(events):
        for j, label in enumerate(labels):
            if event.action != label.action:
                continue
            overlap = _overlap_s(event, label, slack_s)
            if overlap is not None:
                gap = abs(event.start_s - label.start_s)
                pairs.append((-overlap, gap, i, j))
    pairs.sort()
    used_events: set[int] = set()
    used_labels: set[int] = set()
    matches = []
    for _, _, i, j in pairs:
        if i not in used_events and j not in used_labels:
            used_events.add(i)
            used_labels.add(j)
            matches.append((events[i], labels[j]))
    left_events = [e for i, e in enumerate(events) if i not in used_events]
    left_labels = [lab for j, lab in enumerate(labels) if j not in used_labels]
    return matches, left_events, left_labels


def score_clip(
    labels: ClipLabels, events: Iterable[DetectedEvent], scored: Callable[[str], bool]
) -> ClipScore:
    """Match the clip's events to its labels, for the actions `scored` accepts."""
    mine = [e for e in events if scored(e.action)]
    required = [lab for lab in labels.events if scored(lab.action)]
    optional = [lab for lab in labels.optional if scored(lab.action)]
    slack = labels.uncertainty_s
    matches, left, missed = match_events(mine, required, slack)
    score = ClipScore(labels.clip, labels.duration_s, labels.people_present)
    score.matches, score.missed = matches, missed
    for event in left:
        near = next((o for o in optional if _matches_optional(event, o, slack)), None)
        if near is None:
            score.false_alarms.append(event)
        else:
            score.dont_care.append((event, near))
    return score


def _matches_optional(event: DetectedEvent, label: LabelledEvent, slack_s: float) -> bool:
    return event.action == label.action and _overlap_s(event, label, slack_s) is not None


@dataclass
class ActionCounts:
    """Hits, false alarms, misses and don't-cares of one action over all clips."""

    hits: int = 0
    false_alarms: int = 0
    missed: int = 0
    dont_care: int = 0

    @property
    def labels(self) -> int:
        return self.hits + self.missed

    @property
    def events(self) -> int:
        return self.hits + self.false_alarms + self.dont_care

    @property
    def precision(self) -> float | None:
        judged = self.hits + self.false_alarms
        return self.hits / judged if judged else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.labels if self.labels else None

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "events": self.events,
            "hits": self.hits,
            "false_alarms": self.false_alarms,
            "missed": self.missed,
            "dont_care": self.dont_care,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass
class Summary:
    """Scores over every clip: per action, all actions, and the no-people clips."""

    actions: dict[str, ActionCounts]
    overall: ActionCounts
    empty_clips: int  # clips without people
    empty_hours: float  # their media time
    empty_events: int  # events on them (every one a false alarm)
    # Per daemon run (a zone scenario is a second run, with its own track ids).
    id_switches: int
    people_tracked: int  # labelled persons with at least one matched event, per run
    presence: Presence

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.empty_events / self.empty_hours if self.empty_hours > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": {name: c.to_json() for name, c in sorted(self.actions.items())},
            "overall": self.overall.to_json(),
            "no_people": {
                "clips": self.empty_clips,
                "media_hours": self.empty_hours,
                "events": self.empty_events,
                "false_alarms_per_hour": self.false_alarms_per_hour,
            },
            "id_switches": self.id_switches,
            "people_tracked": self.people_tracked,
            "people_seen": self.presence.to_json(),
        }


def summarise(scores: Sequence[ClipScore]) -> Summary:
    """Add up clip scores (a clip may appear more than once: one score per run)."""
    actions: dict[str, ActionCounts] = {}

    def counts(action: str) -> ActionCounts:
        return actions.setdefault(action, ActionCounts())

    for score in scores:
        for event, _ in score.matches:
            counts(event.action).hits += 1
        for event, _ in score.dont_care:
            counts(event.action).dont_care += 1
        for event in score.false_alarms:
            counts(event.action).false_alarms += 1
        for label in score.missed:
            counts(label.action).missed += 1
    overall = ActionCounts()
    for c in actions.values():
        overall.hits += c.hits
        overall.false_alarms += c.false_alarms
        overall.missed += c.missed
        overall.dont_care += c.dont_care
    empty = {s.clip: s for s in scores if not s.people_present}
    seen = Presence()
    for score in scores:
        seen.add(score.presence)
    return Summary(
        actions=actions,
        overall=overall,
        empty_clips=len(empty),
        empty_hours=sum(s.duration_s for s in empty.values()) / SECONDS_PER_HOUR,
        empty_events=sum(len(s.false_alarms) for s in scores if not s.people_present),
        id_switches=sum(s.id_switches for s in scores),
        people_tracked=sum(len(s.tracks_by_person()) for s in scores),
        presence=seen,
    )
