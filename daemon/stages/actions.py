"""What a camera's events can be called, by the graph it runs: the clip model's labels
for a graph whose results the configured model makes (`Graph.result` None), the people
engine's actions (the [people] rules plus every skeleton classifier's labels) for one
whose results feed the people engine. Boot, check-config, the events metric and Home
Assistant discovery ask here, per camera."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.config import PEOPLE_ACTIONS, CameraConfig, Config, PeopleConfig
from daemon.people import SkeletonModelError, load_classifier
from daemon.stages.records import feeds_people
from daemon.stages.registry import graph_for


def runs_clip_model(config: Config, cam: CameraConfig) -> bool:
    """Whether this camera's graph runs the configured clip model (its results are the
    model's: the graph declares no result of its own)."""
    return graph_for(cam).result is None


def runs_people(config: Config, cam: CameraConfig) -> bool:
    """Whether this camera's results go to the people engine."""
    make = graph_for(cam).result
    return make is not None and feeds_people(make(config))


def clip_model_needed(config: Config) -> bool:
    """Whether any enabled camera runs the clip model (boot loads it only then)."""
    return any(runs_clip_model(config, c) for c in config.cameras if c.enabled)


def person_actions(people: PeopleConfig) -> tuple[str, ...]:
    """The people engine's action names: the [people] rules, then each skeleton
    classifier's labels (not ignored). Opens every classifier, as the overlay will:
    ValueError with one line if one is unfit or a label is a rule's name."""
    try:
        labels = [a for cfg in people.classifiers for a in load_classifier(cfg).actions]
    except SkeletonModelError as exc:
        raise ValueError(str(exc)) from exc
    clash = sorted(set(PEOPLE_ACTIONS) & set(labels))
    if clash:
        raise ValueError(f"skeleton classifier labels {clash} are rule actions")
    return (*people.actions, *dict.fromkeys(labels))


def camera_actions(
    config: Config, cam: CameraConfig, clip_actions: Sequence[str], people_actions: Sequence[str]
) -> tuple[str, ...]:
    """What this camera's events can be called: `people_actions` on a graph feeding the
    people engine, else `clip_actions` (of the clip model's labels)."""
    return tuple(people_actions if runs_people(config, cam) else clip_actions)
