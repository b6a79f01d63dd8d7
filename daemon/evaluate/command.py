"""`actiond eval --clips DIR --labels DIR [--pipeline person|clip] [--json]`.

Runs every labelled clip through a real daemon (see replay.py) and scores its events
(scoring.py): per action precision and recall, false alarms per hour on the clips
without people, track ID switches. A clip whose label file has zones runs twice: once
plain (every action but the zone ones is scored), once with its zones (only in_zone and
loitering are scored). Progress goes to stderr on a terminal; --json prints one JSON
document and nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from daemon.evaluate.labels import ClipLabels, LabelError, load_labels
from daemon.evaluate.replay import (
    BaseConfig,
    ReplayError,
    ReplayPlan,
    Scenario,
    load_base_config,
    replay,
)
from daemon.evaluate.scoring import (
    ClipScore,
    DetectedEvent,
    Summary,
    presence,
    score_clip,
    summarise,
)
from daemon.exitcodes import ExitCode
from daemon.people.engine import ZONE_ACTIONS
from daemon.progress import Progress

DEFAULT_CONFIG = Path("config.toml")
PIPELINES = ("person", "clip")
# The demo clip model's labels, named as the person actions they stand for, so the clip
# pipeline is scored against the same labels.
CLIP_ACTIONS = MappingProxyType(
    {
        "walk_left": "walking_left",
        "walk_right": "walking_right",
        "walk_towards": "walking_towards",
        "walk_away": "walking_away",
        "gesture": "gesturing",
    }
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=Path, required=True, help="directory of the clips")
    parser.add_argument(
        "--labels", type=Path, required=True, help="directory of <clip>.json label files"
    )
    parser.add_argument("--pipeline", choices=PIPELINES, default="person")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="base config ([people], [events], [inference], the first camera's settings); "
        "default ./config.toml when it exists, else the daemon's defaults",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=None, help="per daemon run (default from the clip)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    try:
        labels = load_labels(args.labels)
        clips = [_clip_path(args.clips, lab) for lab in labels]
        base = _base_config(args.config)
        plan = ReplayPlan(base, args.pipeline, args.timeout_s)
    except (LabelError, ReplayError) as exc:
        print(f"actiond eval: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    runs = [
        (lab, clip, *s)
        for lab, clip in zip(labels, clips, strict=True)
        for s in scenarios(lab, args.pipeline)
    ]
    shown = Progress.on_terminal("eval", len(runs), quiet=args.json)
    scores = []
    for index, (label, clip, scenario, scored) in enumerate(runs, 1):
        shown.step(index, f"{label.clip} ({scenario.name})")
        shown.status("replaying through the daemon")
        try:
            replayed = replay(plan, clip, scenario, label.duration_s)
        except ReplayError as exc:
            shown.close()
            print(f"actiond eval: {clip.name} ({scenario.name}): {exc}", file=sys.stderr)
            return ExitCode.FAILURE
        score = score_clip(label, _named(replayed.events, args.pipeline), scored)
        score.run = scenario.name
        if scenario.name == "plain" and args.pipeline == "person":  # frames: any run
            score.presence = presence(label, replayed.detections)
        scores.append(score)
        shown.finish(_clip_line(score))
    summary = summarise(scores)
    if args.json:
        print(json.dumps(report_json(args, scores, summary), indent=1))
    else:
        print(report_text(summary))
    return ExitCode.OK


def _clip_path(directory: Path, label: ClipLabels) -> Path:
    if not directory.is_dir():
        raise LabelError(f"--clips {directory}: not a directory (the clips to evaluate)")
    path = directory / label.clip
    if not path.is_file():
        raise LabelError(f"{path}: the clip of {label.clip!r}'s labels is not there")
    return path


def _base_config(path: Path | None) -> BaseConfig:
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return load_base_config(path)


def scenarios(label: ClipLabels, pipeline: str) -> list[tuple[Scenario, Callable[[str], bool]]]:
    """The runs of one clip and the actions each one scores."""
    runs: list[tuple[Scenario, Callable[[str], bool]]] = [
        (Scenario("plain"), lambda action: action not in ZONE_ACTIONS)
    ]
    if label.zones and pipeline == "person":
        zones = Scenario("zones", label.zones, label.people_config)
        runs.append((zones, lambda action: action in ZONE_ACTIONS))
    return runs


def _named(events: Sequence[DetectedEvent], pipeline: str) -> list[DetectedEvent]:
    """Clip-model events under the person action they stand for."""
    if pipeline != "clip":
        return list(events)
    return [
        DetectedEvent(CLIP_ACTIONS.get(e.action, e.action), e.start_s, e.end_s, e.track_id, e.zone)
        for e in events
    ]


def _clip_line(score: ClipScore) -> str:
    return (
        f"{len(score.matches)} hit, {len(score.false_alarms)} false alarm, "
        f"{len(score.missed)} missed, {len(score.dont_care)} don't care"
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_text(summary: Summary) -> str:
    """The table a person reads."""
    head = f"{'action':<16}{'labels':>7}{'events':>7}{'hits':>6}{'false':>6}"
    lines = [head + f"{'missed':>7}{'dont_care':>10}{'precision':>10}{'recall':>8}"]
    rows = sorted(summary.actions.items()) + [("all", summary.overall)]
    for name, c in rows:
        lines.append(
            f"{name:<16}{c.labels:>7}{c.events:>7}{c.hits:>6}{c.false_alarms:>6}"
            f"{c.missed:>7}{c.dont_care:>10}{_ratio(c.precision):>10}{_ratio(c.recall):>8}"
        )
    per_hour = summary.false_alarms_per_hour
    lines.append(
        f"clips without people: {summary.empty_clips}, {summary.empty_hours * 3600:.1f} s of "
        f"media, {summary.empty_events} event(s)"
        + ("" if per_hour is None else f" = {per_hour:.1f} false alarms per hour")
    )
    seen = summary.presence
    if seen.people_frames or seen.empty_frames:  # a pipeline that detects people
        lines.append(
            f"people detected in {seen.people_frames_detected} of {seen.people_frames} "
            f"analysed frames with people, in {seen.empty_frames_detected} of "
            f"{seen.empty_frames} without"
        )
    lines.append(
        f"track ID switches: {summary.id_switches} "
        f"({summary.people_tracked} labelled person-runs with matched events)"
    )
    return "\n".join(lines)


def report_json(
    args: argparse.Namespace, scores: Sequence[ClipScore], summary: Summary
) -> dict[str, Any]:
    return {
        "pipeline": args.pipeline,
        "clips": [_clip_json(s) for s in scores],
        **summary.to_json(),
    }


def _clip_json(score: ClipScore) -> dict[str, Any]:
    def event(e: DetectedEvent) -> dict[str, Any]:
        return {"action": e.action, "start_s": e.start_s, "end_s": e.end_s, "track_id": e.track_id}

    return {
        "clip": score.clip,
        "run": score.run,
        "people_present": score.people_present,
        "hits": [{**event(e), "person": lab.person} for e, lab in score.matches],
        "dont_care": [{**event(e), "person": lab.person} for e, lab in score.dont_care],
        "false_alarms": [event(e) for e in score.false_alarms],
        "missed": [
            {"action": m.action, "person": m.person, "start_s": m.start_s, "end_s": m.end_s}
            for m in score.missed
        ],
        "id_switches": score.id_switches,
        "people_seen": score.presence.to_json(),
    }
