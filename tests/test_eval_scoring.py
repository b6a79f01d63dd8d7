"""`actiond eval`'s scoring on constructed events (pure logic): one-to-one matching by
overlapping time, optional labels, precision/recall, false alarms per hour, ID switches;
and its label files' errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.evaluate.labels import (
    ClipLabels,
    LabelError,
    LabelledEvent,
    LabelledPerson,
    load_label_file,
    load_labels,
)
from daemon.evaluate.replay import ReplayError, join_records
from daemon.evaluate.scoring import (
    NO_TRACK,
    DetectedEvent,
    match_events,
    presence,
    score_clip,
    summarise,
)


def every(_action: str) -> bool:
    return True


def labels(
    events: tuple[LabelledEvent, ...] = (),
    optional: tuple[LabelledEvent, ...] = (),
    people: int = 1,
    clip: str = "c.mp4",
    frames: int = 600,
) -> ClipLabels:
    return ClipLabels(
        clip=clip,
        fps=10.0,
        frames=frames,
        people_present=people > 0,
        people=tuple(LabelledPerson(p, ((0, frames),)) for p in range(1, people + 1)),
        events=events,
        optional=optional,
        zones=(),
        people_config={},
        uncertainty_s=0.0,
    )


def walk(start_s: float, end_s: float, person: int = 1) -> LabelledEvent:
    return LabelledEvent("walking_left", person, start_s, end_s)


def seen(
    start_s: float, end_s: float, track: int = 1, action: str = "walking_left"
) -> DetectedEvent:
    return DetectedEvent(action, start_s, end_s, track)


def test_an_event_matches_an_overlapping_label_of_its_action_only() -> None:
    matches, left, missed = match_events(
        [seen(1.0, 2.0), seen(1.0, 2.0, action="waving"), seen(5.0, 6.0)], [walk(1.5, 3.0)], 0.0
    )
    assert matches == [(seen(1.0, 2.0), walk(1.5, 3.0))]
    assert left == [seen(1.0, 2.0, action="waving"), seen(5.0, 6.0)]
    assert missed == []


def test_matching_is_one_to_one_longest_overlap_first() -> None:
    # Two events over one label: one hit, the other a false alarm (a split event).
    matches, left, _ = match_events([seen(0.0, 1.0), seen(1.0, 4.0)], [walk(0.5, 4.0)], 0.0)
    assert matches == [(seen(1.0, 4.0), walk(0.5, 4.0))]
    assert left == [seen(0.0, 1.0)]
    # One long event over two labels: it takes one, the other is missed.
    matches, _, missed = match_events([seen(0.0, 10.0)], [walk(1.0, 2.0), walk(3.0, 8.0)], 0.0)
    assert matches == [(seen(0.0, 10.0), walk(3.0, 8.0))] and missed == [walk(1.0, 2.0)]


def test_the_uncertainty_widens_the_label() -> None:
    assert match_events([seen(3.2, 3.5)], [walk(1.0, 3.0)], 0.0)[0] == []
    assert len(match_events([seen(3.2, 3.5)], [walk(1.0, 3.0)], 0.3)[0]) == 1
    # An event with no end (a start only: start == end) inside the label still matches.
    assert len(match_events([seen(2.0, 2.0)], [walk(1.0, 3.0)], 0.0)[0]) == 1


def test_optional_labels_absorb_events_without_counting() -> None:
    clip = labels(events=(walk(1.0, 2.0),), optional=(LabelledEvent("waving", 1, 5.0, 6.0),))
    events = [seen(1.2, 1.8), seen(5.5, 7.0, action="waving"), seen(9.0, 9.5, action="waving")]
    score = score_clip(clip, events, every)
    assert [e for e, _ in score.matches] == [seen(1.2, 1.8)]
    assert [e for e, _ in score.dont_care] == [seen(5.5, 7.0, action="waving")]
    assert score.false_alarms == [seen(9.0, 9.5, action="waving")]
    assert score.missed == []


def test_actions_outside_the_scored_set_are_left_out() -> None:
    clip = labels(events=(walk(1.0, 2.0), LabelledEvent("in_zone", 1, 0.0, 9.0)))
    score = score_clip(clip, [seen(0.0, 9.0, action="in_zone")], lambda a: a != "in_zone")
    assert score.matches == [] and score.false_alarms == [] and score.missed == [walk(1.0, 2.0)]


def test_precision_recall_and_false_alarms_per_hour() -> None:
    busy = labels(events=(walk(1.0, 2.0), walk(5.0, 6.0), walk(8.0, 9.0)))
    busy_score = score_clip(busy, [seen(1.0, 2.0), seen(5.0, 6.0), seen(20.0, 21.0)], every)
    empty = labels(people=0, clip="empty.mp4", frames=360)  # 36 s of nobody
    empty_score = score_clip(empty, [seen(3.0, 4.0, track=7)], every)
    summary = summarise([busy_score, empty_score])
    counts = summary.actions["walking_left"]
    assert (counts.hits, counts.false_alarms, counts.missed) == (2, 2, 1)
    assert counts.precision == pytest.approx(0.5) and counts.recall == pytest.approx(2 / 3)
    assert (summary.empty_clips, summary.empty_events) == (1, 1)
    assert summary.false_alarms_per_hour == pytest.approx(100.0)  # 1 in 36 s
    doc = summary.to_json()
    assert doc["no_people"]["false_alarms_per_hour"] == pytest.approx(100.0)
    assert doc["actions"]["walking_left"]["recall"] == pytest.approx(2 / 3)


def test_no_events_and_no_labels_give_no_ratio() -> None:
    summary = summarise([score_clip(labels(), [], every)])
    assert summary.overall.precision is None and summary.overall.recall is None
    assert summary.false_alarms_per_hour is None


def test_id_switches_count_extra_track_ids_per_person_and_run() -> None:
    clip = labels(events=(walk(1.0, 2.0), walk(5.0, 6.0), walk(8.0, 9.0, person=2)), people=2)
    events = [seen(1.0, 2.0, track=3), seen(5.0, 6.0, track=4), seen(8.0, 9.0, track=5)]
    score = score_clip(clip, events, every)
    assert score.tracks_by_person() == {1: {3, 4}, 2: {5}}
    assert score.id_switches == 1
    again = score_clip(clip, events, every)
    again.run = "zones"  # a second daemon run numbers its tracks afresh: no switch between
    summary = summarise([score, again])
    assert (summary.id_switches, summary.people_tracked) == (2, 4)
    untracked = score_clip(clip, [seen(1.0, 2.0, track=NO_TRACK)], every)
    assert untracked.id_switches == 0 and untracked.tracks_by_person() == {}


def test_presence_compares_detections_with_the_labelled_frames() -> None:
    clip = ClipLabels(
        clip="p.mp4",
        fps=10.0,
        frames=10,
        people_present=True,
        people=(LabelledPerson(1, ((2, 5),)), LabelledPerson(2, ((4, 7),))),
        events=(),
        optional=(),
        zones=(),
        people_config={},
        uncertainty_s=0.0,
    )
    # Frames 2-6 have someone; 0, 1, 7 (analysed) do not; 8 and 9 were not analysed.
    detections = {0: 0, 1: 1, 2: 1, 3: 0, 4: 2, 5: 1, 6: 0, 7: 0}
    seen = presence(clip, detections)
    assert (seen.people_frames, seen.people_frames_detected) == (5, 3)
    assert (seen.empty_frames, seen.empty_frames_detected) == (3, 1)
    assert seen.to_json()["frame_recall"] == pytest.approx(0.6)
    score = score_clip(clip, [], every)
    score.presence = seen
    assert summarise([score, score]).presence.people_frames == 10


def test_records_join_into_events_by_id() -> None:
    records = [
        {"id": "a", "phase": "start", "action": "waving", "media_start_s": 1.0, "track_id": 2},
        {"id": "b", "phase": "start", "action": "in_zone", "media_start_s": 0.5, "zone": "door"},
        {"id": "a", "phase": "end", "action": "waving", "media_start_s": 1.0, "media_end_s": 3.0},
        {"id": "a", "phase": "end", "action": "waving", "media_start_s": 1.0, "media_end_s": 3.0},
    ]
    assert join_records(records) == [
        DetectedEvent("in_zone", 0.5, 0.5, NO_TRACK, "door"),
        DetectedEvent("waving", 1.0, 3.0, NO_TRACK),  # the end record carries no track id
    ]
    with pytest.raises(ReplayError, match="media_start_s"):
        join_records([{"id": "x", "phase": "start", "action": "waving", "media_start_s": None}])


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


GOOD = {
    "clip": "a.mp4",
    "fps": 10,
    "frames": 50,
    "people_present": True,
    "people": [{"person": 1, "visible": [[0, 50]]}],
    "events": [{"action": "waving", "person": 1, "start_s": 1.0, "end_s": 2.0}],
}


def test_a_label_file_loads(tmp_path: Path) -> None:
    clip = load_label_file(write(tmp_path / "a.json", GOOD))
    assert clip.duration_s == 5.0 and clip.events == (LabelledEvent("waving", 1, 1.0, 2.0),)
    assert clip.uncertainty_s == pytest.approx(0.2)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"fps": 0}, "fps and frames must be > 0"),
        ({"frames": "many"}, "frames must be a finite number"),
        ({"people_present": "yes"}, "people_present must be true or false"),
        ({"people_present": False}, "people_present is false but people"),
        ({"events": [{"action": "waving", "person": 2, "start_s": 1, "end_s": 2}]}, "person 2"),
        ({"events": [{"action": "waving", "person": 1, "start_s": 3, "end_s": 2}]}, "before it"),
        ({"events": [{"action": "waving", "person": 1, "end_s": 2}]}, "missing key 'start_s'"),
    ],
)
def test_a_bad_label_file_is_one_line_naming_it(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = write(tmp_path / "bad.json", {**GOOD, **change})
    with pytest.raises(LabelError, match=message) as info:
        load_label_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_labels_directory_must_hold_label_files(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="no \\*.json label files"):
        load_labels(tmp_path)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(LabelError, match="x.json: cannot read it as JSON"):
        load_labels(tmp_path)
