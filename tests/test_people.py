"""The people engine on constructed keypoint tracks: tracker, rules, zones, hysteresis,
all on media time. (The bundled clips hold no fall: falls are tested only here.)"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable

import numpy as np
import pytest
from people_tracks import FRAME_SIZE, L_WRIST, R_WRIST, TORSO, Pose, frames, person, seen_from_above

from daemon.config import CameraConfig, PeopleConfig, ZoneConfig
from daemon.people import (
    END_ACTION_OVER,
    END_STOPPED,
    END_TRACK_LOST,
    PHASE_END,
    PHASE_START,
    PeopleEngine,
    Person,
    PersonEvent,
)
from daemon.people.hysteresis import Hysteresis

pytestmark = pytest.mark.timeout(30)

CAMERA = CameraConfig(name="cam", source="test:bars")
HEIGHT_PX = 200.0
UNIT_PX = TORSO * HEIGHT_PX  # one body unit of the figure


def run(
    poses: Callable[[float], list[Pose]],
    duration_s: float,
    fps: float = 10.0,
    people: PeopleConfig | None = None,
    camera: CameraConfig = CAMERA,
) -> list[PersonEvent]:
    engine = PeopleEngine(camera, people or PeopleConfig(), FRAME_SIZE, classifiers=[])
    events: list[PersonEvent] = []
    t = 0.0
    for t, persons in frames(poses, duration_s, fps):
        events += engine.update(persons, t).events
    return events + engine.close(t)


def starts(events: Iterable[PersonEvent]) -> list[tuple[str, int]]:
    return [(e.action, e.track_id) for e in events if e.phase == PHASE_START]


def standing(t: float) -> list[Pose]:
    return [Pose()]


def test_a_still_person_makes_no_event_and_one_track() -> None:
    engine = PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[])
    events: list[PersonEvent] = []
    for t, persons in frames(standing, 10.0):
        update = engine.update(persons, t)
        events += update.events
    assert events == []
    assert [(tr.track_id, tr.confirmed) for tr in update.tracks] == [(1, True)]


def test_confirmation_needs_hits_within_the_window() -> None:
    engine = PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[])
    one = [person(Pose())]
    # Seen once a second: never 3 times within confirm_window_s (1 s), never an id.
    for t in range(5):
        update = engine.update(one if t % 1 == 0 else [], float(t))
        assert all(not tr.confirmed and tr.track_id == 0 for tr in update.tracks)
    # Three sightings 0.2 s apart: confirmed as the first track.
    for t in (10.0, 10.2, 10.4):
        update = engine.update(one, t)
    assert [tr.track_id for tr in update.tracks if tr.confirmed] == [1]


def test_two_people_keep_their_ids_and_a_returning_person_gets_a_new_one() -> None:
    def two(t: float) -> list[Pose]:
        if 4.0 <= t < 7.0:  # the right one is hidden for 3 s (> lost_after_s)
            return [Pose(x=100 + 20 * t)]
        return [Pose(x=100 + 20 * t), Pose(x=540 - 20 * t)]

    engine = PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[])
    ids_by_side: dict[str, set[int]] = {"left": set(), "right": set()}
    for t, persons in frames(two, 9.0):
        for tr in engine.update(persons, t).tracks:
            if tr.confirmed and tr.last_seen_s == t:
                side = "left" if (tr.box[0] + tr.box[2]) / 2 < 320 else "right"
                ids_by_side[side].add(tr.track_id)
    assert ids_by_side["left"] == {1}
    assert ids_by_side["right"] == {2, 3}  # lost at 4 s, a new track after it returns


def test_a_second_box_on_the_same_person_is_not_a_second_person() -> None:
    engine = PeopleEngine(CAMERA, PeopleConfig(), FRAME_SIZE, classifiers=[])
    for t, persons in frames(walker(1.0), 3.0):
        # From 1 s on the detector also boxes the person with what they ride or carry:
        # a larger box holding the person's box.
        if t >= 1.0:
            x1, y1, x2, y2 = persons[0].box
            persons.append(Person((x1 - 20, y1, x2 + 20, y2 + 30), 0.5, persons[0].keypoints))
        update = engine.update(persons, t)
    assert [(tr.track_id, tr.confirmed) for tr in update.tracks] == [(1, True)]


def walker(speed_units_s: float) -> Callable[[float], list[Pose]]:
    return lambda t: [Pose(x=100 + speed_units_s * UNIT_PX * t)]


def test_walking_right_and_left() -> None:
    right = run(walker(2.0), 4.0)
    assert starts(right) == [("walking_right", 1)]
    start = next(e for e in right if e.phase == PHASE_START)
    # It began when the window first covered enough of the walk, well before 1 s.
    assert start.t_s < 1.0
    assert starts(run(walker(-2.0), 4.0)) == [("walking_left", 1)]
    assert starts(run(walker(0.3), 4.0)) == []  # swaying, not walking


def test_walking_towards_and_away_seen_from_above() -> None:
    # 1.2 m/s between 3 and 6 m from a camera 2.5 m up: the whole body in view.
    away = run(lambda t: [seen_from_above(3.0 + 1.2 * t)], 2.5)
    assert starts(away) == [("walking_away", 1)]
    assert starts(run(lambda t: [seen_from_above(6.0 - 1.2 * t)], 2.5)) == [("walking_towards", 1)]


def test_walking_away_into_the_room_from_the_bottom_edge() -> None:
    # Entering under the camera at 1 m/s: the feet are below the frame's bottom edge (the
    # box is cut there) until 0.5 s; the body shrinks and rises in the frame.
    def entering(t: float) -> list[Pose]:
        return [seen_from_above(1.3 + 1.0 * t)]

    for t in (0.0, 0.4):
        cut = person(entering(t)[0])
        assert cut.box[3] == FRAME_SIZE[1] and cut.keypoints[15:, 2].max() == 0.0
    events = run(entering, 1.5)
    assert starts(events) == [("walking_away", 1)]
    # Judged while the box was cut: a window clear of the edge only begins at 0.5 s.
    assert next(e.t_s for e in events if e.phase == PHASE_START) < 0.5
    # Leaving the same way: towards the camera and out through the bottom edge.
    assert starts(run(lambda t: [seen_from_above(2.8 - 1.0 * t)], 1.5)) == [("walking_towards", 1)]


def test_a_shoulder_coming_into_view_is_not_a_step_sideways() -> None:
    # Close to the camera, back to it, drifting right at half walk_speed: the pose model
    # finds the right shoulder and the hips only from 0.5 s. One shoulder alone is no
    # middle of the body (it lies half a shoulder width off): no walking_right.
    def appearing(t: float) -> list[Pose]:
        unseen = frozenset({6, 11, 12} if t < 0.5 else ())
        return [close_up(x=200.0 + 0.5 * 150.0 * t, facing=False, unseen=unseen)]

    assert starts(run(appearing, 2.0)) == []


def test_a_hold_of_exactly_start_s_counts_on_float_media_times() -> None:
    # Frames 119..121 at 5 fps: 24.2 - 23.8 is 0.3999999999999986 s, short of start_s.
    hysteresis = Hysteresis({}, 0.4, 1.0, 5.0)
    on = {("walking_away", ""): 0.9}
    box = (0.0, 0.0, 10.0, 10.0)
    events = [e for i in (119, 120, 121) for e in hysteresis.step(1, on, box, i / 5)]
    assert [(e.phase, e.t_s) for e in events] == [(PHASE_START, 23.8)]
    ends = [e for i in (122, 123, 124, 125, 126, 127) for e in hysteresis.step(1, {}, box, i / 5)]
    assert [(e.phase, e.t_s) for e in ends] == [(PHASE_END, 24.4)]  # off for end_s


def close_up(**changes: object) -> Pose:
    """A person near a camera at chest height: head, shoulders (y 150) and hips (y 300)
    in view, the knees and feet below the frame's bottom edge."""
    return dataclasses.replace(Pose(y=550.0, height=500.0), **changes)  # type: ignore[arg-type]


def test_a_head_tilting_or_a_body_leaning_or_turning_in_place_is_not_walking() -> None:
    def tilting(t: float) -> list[Pose]:  # nods and turns the head, +-0.04 heights
        nod = 0.04 * math.sin(2 * math.pi * t)
        return [close_up(moved={i: (nod, abs(nod)) for i in range(5)})]

    def leaning(t: float) -> list[Pose]:  # bends towards the camera over 1.5 s
        drop = 0.12 * min(t, 1.5) / 1.5  # heights the head and shoulders drop
        spread = drop / 3  # the shoulders come nearer: wider
        upper = {i: (0.0, drop) for i in range(5)} | {5: (spread, drop), 6: (-spread, drop)}
        return [close_up(moved=upper)]

    def turning(t: float) -> list[Pose]:  # turns sideways at 3 m: the shoulders narrow
        return [dataclasses.replace(seen_from_above(3.0), width=1.0 - 0.6 * min(t, 1.0))]

    for still in (tilting, leaning, turning):
        assert starts(run(still, 4.0)) == [], still.__name__


def test_standing_up_or_sitting_down_close_up_is_not_walking() -> None:
    # The body rises a quarter of its height in 1 s at one size, later sits again.
    def standing_up(t: float) -> list[Pose]:
        return [close_up(y=550.0 - 125.0 * min(t, 1.0) + 125.0 * min(max(t - 2.0, 0.0), 1.0))]

    assert person(standing_up(0.0)[0]).box[3] == FRAME_SIZE[1]
    assert starts(run(standing_up, 3.5)) == []


def test_walking_across_at_the_bottom_edge_is_left_or_right_only() -> None:
    # Feet below the frame, crossing at 2 body units per second at one distance.
    events = run(lambda t: [close_up(x=60.0 + 2.0 * 150.0 * t)], 1.5)
    assert starts(events) == [("walking_right", 1)]


def test_hand_raised_needs_to_hold_start_s() -> None:
    def raised(until_s: float) -> Callable[[float], list[Pose]]:
        return lambda t: [Pose(wrists={R_WRIST: (0.0, -0.5)} if 1.0 <= t < until_s else {})]

    events = run(raised(3.0), 5.0)
    assert starts(events) == [("hand_raised", 1)]
    start, end = (e for e in events if e.action == "hand_raised")
    assert start.t_s == pytest.approx(1.0)
    assert (end.phase, end.end_reason, end.t_s) == (PHASE_END, END_ACTION_OVER, pytest.approx(3.0))
    assert starts(run(raised(1.2), 5.0)) == []  # a flick of 0.2 s < start_s


def test_waving() -> None:
    def wave(t: float) -> list[Pose]:
        swing = 0.12 * math.sin(2 * math.pi * 1.0 * t) if t >= 1.0 else 0.0
        return [Pose(wrists={R_WRIST: (swing, -0.55)})]

    assert {a for a, _ in starts(run(wave, 5.0))} == {"hand_raised", "waving"}


def test_gesturing_in_front_of_the_body() -> None:
    def hands(moving: bool, facing: bool = True) -> Callable[[float], list[Pose]]:
        def poses(t: float) -> list[Pose]:
            phase = 2 * math.pi * 0.8 * t if moving else 0.0
            dx, dy = 0.04 * math.cos(phase), 0.04 * math.sin(phase)
            wrists = {L_WRIST: (-0.12 + dx, -0.15 + dy), R_WRIST: (0.12, -0.15)}
            return [Pose(wrists=wrists, facing=facing)]

        return poses

    assert starts(run(hands(True), 4.0)) == [("gesturing", 1)]
    assert starts(run(hands(False), 4.0)) == []
    # Seen from behind, hands in front of the body are hidden: the pose model's wrists
    # there are guesses, and nobody is gesturing at the camera.
    assert starts(run(hands(True, facing=False), 4.0)) == []


def fall_at(t_fall_s: float, duration_s: float = 0.4) -> Callable[[float], list[Pose]]:
    def poses(t: float) -> list[Pose]:
        k = min(max((t - t_fall_s) / duration_s, 0.0), 1.0)
        return [Pose(tilt_deg=90.0 * k)]

    return poses


def test_fall_then_lying() -> None:
    people = dataclasses.replace(PeopleConfig(), lying_s=3.0)
    events = run(fall_at(2.0), 8.0, people=people)
    assert starts(events) == [("fall", 1), ("lying", 1)]
    fall, lying = (e for e in events if e.phase == PHASE_START)
    assert 2.0 <= fall.t_s <= 2.5
    assert lying.t_s == pytest.approx(fall.t_s, abs=0.2)  # lying from the same moment


def test_lying_down_slowly_is_not_a_fall() -> None:
    people = dataclasses.replace(PeopleConfig(), lying_s=3.0)
    assert starts(run(fall_at(2.0, duration_s=6.0), 14.0, people=people)) == [("lying", 1)]


def test_zones_entered_left_loitering_and_exclude() -> None:
    right_half = ZoneConfig("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))
    camera = dataclasses.replace(CAMERA, zones=(right_half,))
    people = dataclasses.replace(PeopleConfig(), loiter_s=3.0, actions=("in_zone", "loitering"))

    def visit(t: float) -> list[Pose]:  # walks in at ~1 s, stays to 6 s, walks out
        x = 260 + 120 * t if t < 1.0 else 380 if t < 6.0 else 380 - 120 * (t - 6.0)
        return [Pose(x=x)]

    events = run(visit, 9.0, people=people, camera=camera)
    by = {(e.action, e.phase): e for e in events}
    assert set(by) == {
        ("in_zone", PHASE_START),
        ("in_zone", PHASE_END),
        ("loitering", PHASE_START),
        ("loitering", PHASE_END),
    }
    assert all(e.zone == "right" for e in events)
    assert by[("in_zone", PHASE_START)].t_s == pytest.approx(0.4, abs=0.15)  # x crosses 320
    assert by[("in_zone", PHASE_END)].t_s == pytest.approx(6.6, abs=0.15)
    assert by[("in_zone", PHASE_END)].end_reason == END_ACTION_OVER

    exclude = dataclasses.replace(right_half, name="tv", kind="exclude")
    excluded = dataclasses.replace(CAMERA, zones=(exclude,))
    # On the TV, walking and with a hand up: nothing at all is reported.
    on_tv = run(
        lambda t: [Pose(x=400 + 100 * t, wrists={R_WRIST: (0, -0.5)})], 2.0, camera=excluded
    )
    assert on_tv == []


def test_include_zone_limits_other_actions_to_it() -> None:
    left_half = ZoneConfig("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    camera = dataclasses.replace(CAMERA, zones=(left_half,))
    people = dataclasses.replace(PeopleConfig(), actions=("hand_raised",))
    raised = {R_WRIST: (0.0, -0.5)}
    inside = run(lambda t: [Pose(x=100, wrists=raised)], 3.0, people=people, camera=camera)
    assert [(e.action, e.zone) for e in inside if e.phase == PHASE_START] == [
        ("hand_raised", "left")
    ]
    outside = run(lambda t: [Pose(x=500, wrists=raised)], 3.0, people=people, camera=camera)
    assert outside == []


def test_cooldown_and_end_reasons() -> None:
    people = dataclasses.replace(PeopleConfig(), cooldown_s=5.0, actions=("hand_raised",))

    def flicker(t: float) -> list[Pose]:  # raised 0-2 s, down 2-4 s, raised 4-12 s
        return [Pose(wrists={R_WRIST: (0, -0.5)} if not 2.0 <= t < 4.0 else {})]

    events = run(flicker, 12.0, people=people)
    assert [(e.phase, round(e.t_s, 1), e.end_reason) for e in events] == [
        (PHASE_START, 0.2, ""),  # the track is confirmed at its third sighting
        (PHASE_END, 2.0, END_ACTION_OVER),
        (PHASE_START, 7.0, ""),  # 2.0 + cooldown_s: no earlier
        (PHASE_END, 11.9, END_STOPPED),
    ]
    engine = PeopleEngine(CAMERA, people, FRAME_SIZE, classifiers=[])
    for t, persons in frames(flicker, 1.0):
        engine.update(persons, t)
    lost = engine.update([], 5.0).events  # unseen 4.1 s > lost_after_s
    assert [(e.action, e.end_reason, e.t_s) for e in lost] == [
        ("hand_raised", END_TRACK_LOST, pytest.approx(0.9))
    ]


@pytest.mark.parametrize("fps", [5.0, 10.0, 25.0])
def test_the_same_track_gives_the_same_events_at_any_analysis_rate(fps: float) -> None:
    def story(t: float) -> list[Pose]:
        wrists = {R_WRIST: (0.0, -0.5)} if 2.0 <= t < 5.0 else {}
        return [Pose(x=100 + (2 * UNIT_PX * (t - 6.0) if t > 6.0 else 0.0), wrists=wrists)]

    events = run(story, 10.0, fps=fps)
    assert [(e.action, e.phase) for e in events] == [
        ("hand_raised", PHASE_START),
        ("hand_raised", PHASE_END),
        ("walking_right", PHASE_START),
        ("walking_right", PHASE_END),
    ]
    times = [e.t_s for e in events]
    assert times[:2] == [pytest.approx(2.0, abs=0.21), pytest.approx(5.0, abs=0.21)]
    assert times[2] == pytest.approx(6.4, abs=0.5)


def test_person_rejects_a_wrong_keypoint_shape() -> None:
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        Person(box=(0, 0, 1, 1), score=0.9, keypoints=np.zeros((16, 3)))


def test_actions_lists_the_configured_rules() -> None:
    people = dataclasses.replace(PeopleConfig(), actions=("fall", "waving"))
    assert PeopleEngine(CAMERA, people, FRAME_SIZE, classifiers=[]).actions == ("fall", "waving")
