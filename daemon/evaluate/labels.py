"""Hand labels of a clip for the person-centred actions (eval/labels/people/<clip>.json).

One JSON object per clip:
  clip            the file name in the clips directory
  fps, frames     the clip's rate and length (media time = frame / fps)
  people_present  false for clips with nobody in them (every event is a false alarm)
  people          [{person, description, visible: [[first_frame, end_frame), ...]}]
  events          [{action, person, start_s, end_s, note?}]: what a person would expect
  optional        the same shape: events a person might or might not expect; an event
                  matching one is neither a hit nor a false alarm, and it is not missed
  zones           cameras[].zones for the clip's zone scenario ([] = none)
  people_config   [people] keys for the zone scenario (e.g. loiter_s)
  uncertainty_s   how far the labelled start/end may be off (widens the match window)
A problem is a LabelError naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_UNCERTAINTY_S = 0.2


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class LabelledEvent:
    """One expected (or optional) event of one labelled person, in media seconds."""

    action: str
    person: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class LabelledPerson:
    """A person in the clip and the frame ranges [first, end) where they are visible."""

    person: int
    visible: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ClipLabels:
    """Everything labelled about one clip."""

    clip: str
    fps: float
    frames: int
    people_present: bool
    people: tuple[LabelledPerson, ...]
    events: tuple[LabelledEvent, ...]
    optional: tuple[LabelledEvent, ...]
    zones: tuple[Mapping[str, Any], ...]
    people_config: Mapping[str, Any]
    uncertainty_s: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def load_labels(directory: Path) -> list[ClipLabels]:
    """Every *.json label file in `directory`, sorted by name."""
    if not directory.is_dir():
        raise LabelError(f"{directory}: not a directory of label files")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise LabelError(f"{directory}: holds no *.json label files")
    return [load_label_file(path) for path in files]


def load_label_file(path: Path) -> ClipLabels:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: cannot read it as JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LabelError(f"{path}: must hold one JSON object")
    try:
        return _clip_labels(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(f"{path}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)


def _clip_labels(doc: Mapping[str, Any]) -> ClipLabels:
    fps, frames = _number(doc, "fps"), int(_number(doc, "frames"))
    if fps <= 0 or frames <= 0:
        raise ValueError(f"fps and frames must be > 0, got {fps} and {frames}")
    people = tuple(_person(p) for p in _list(doc, "people"))
    known = {p.person for p in people}
    events = tuple(_event(e, "events", known) for e in _list(doc, "events"))
    optional = tuple(_event(e, "optional", known) for e in _list(doc, "optional"))
    present = doc["people_present"]
    if not isinstance(present, bool):
        raise ValueError("people_present must be true or false")
    if not present and (people or events):
        raise ValueError("people_present is false but people or events are labelled")
    return ClipLabels(
        clip=str(doc["clip"]),
        fps=fps,
        frames=frames,
        people_present=present,
        people=people,
        events=events,
        optional=optional,
        zones=tuple(MappingProxyType(dict(z)) for z in _list(doc, "zones")),
        people_config=MappingProxyType(dict(doc.get("people_config", {}))),
        uncertainty_s=float(doc.get("uncertainty_s", DEFAULT_UNCERTAINTY_S)),
    )


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _list(doc: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list")
    return value


def _person(doc: Mapping[str, Any]) -> LabelledPerson:
    ranges = tuple((int(a), int(b)) for a, b in doc["visible"])
    if any(b <= a for a, b in ranges):
        raise ValueError(f"person {doc['person']}: a visible range [first, end) is empty")
    return LabelledPerson(person=int(doc["person"]), visible=ranges)


def _event(doc: Mapping[str, Any], key: str, people: set[int]) -> LabelledEvent:
    event = LabelledEvent(
        action=str(doc["action"]),
        person=int(doc["person"]),
        start_s=_number(doc, "start_s"),
        end_s=_number(doc, "end_s"),
    )
    if event.end_s < event.start_s:
        raise ValueError(f"{key}: {event.action} ends ({event.end_s}) before it starts")
    if event.person not in people:
        raise ValueError(f"{key}: {event.action} names person {event.person}, not in people")
    return event
