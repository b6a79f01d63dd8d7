"""EventTracker hysteresis on scripted score streams (pure logic, no I/O)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest

from daemon.events import (
    END_SCORES_LOW,
    END_STOPPED,
    END_STREAM_LOST,
    PHASE_END,
    PHASE_START,
    ActionEvent,
    EventSettings,
    EventTracker,
    event_actions,
    ignored_labels,
)

pytestmark = pytest.mark.timeout(10)

LABELS = ("idle", "walk", "wave")
WINDOW_S = 0.5  # one score window every half second in these scripts


def scores(walk: float = 0.0, wave: float = 0.0, idle: float = 0.0) -> list[float]:
    return [idle, walk, wave]


def run_script(
    tracker: EventTracker,
    script: Sequence[Sequence[float]],
    t0: float = 1000.0,
    first_frame: int = 0,
) -> list[tuple[int, ActionEvent]]:
    """Feed one window per entry; returns (window index, event) for every record."""
    out: list[tuple[int, ActionEvent]] = []
    for i, window in enumerate(script):
        for event in tracker.update(window, frame_id=first_frame + 10 * i, t=t0 + WINDOW_S * i):
            out.append((i, event))
    return out


def make(**kwargs: object) -> EventTracker:
    settings = EventSettings(**kwargs)  # type: ignore[arg-type]
    return EventTracker("cam0", LABELS, settings, clock=lambda: 0.0)


def walk_stream(values: Sequence[float]) -> list[list[float]]:
    return [scores(walk=v) for v in values]


def test_single_spike_does_not_start() -> None:
    tracker = make(start_windows=2)
    assert run_script(tracker, walk_stream([0.1, 0.9, 0.1, 0.1, 0.9, 0.2])) == []
    assert tracker.active == ()


def test_two_windows_start_with_first_window_time_and_stats() -> None:
    tracker = make(start_windows=2)
    records = run_script(tracker, walk_stream([0.1, 0.7, 0.9]))
    assert len(records) == 1
    index, event = records[0]
    assert index == 2
    assert event.phase == PHASE_START and event.action == "walk" and event.camera == "cam0"
    assert event.started_at == pytest.approx(1000.0 + WINDOW_S)  # the first 'on' window
    assert event.ended_at is None
    assert event.score_max == pytest.approx(0.9)
    assert event.score_mean == pytest.approx(0.8)
    assert event.frame_id == 20  # the window that scored 0.9
    assert tracker.active == ("walk",)
    assert tracker.best_frame_id("walk") == 20


def test_score_equal_to_threshold_counts() -> None:
    tracker = make(start_windows=2, default_threshold=0.6)
    assert [e.phase for _, e in run_script(tracker, walk_stream([0.6, 0.6]))] == [PHASE_START]


def test_short_dip_does_not_end_and_counts_in_stats() -> None:
    tracker = make(start_windows=2, end_windows=2)
    #                      0    1    2    3    4    5    6
    values = [0.8, 0.8, 0.2, 1.0, 0.1, 0.1, 0.1]
    records = run_script(tracker, walk_stream(values))
    assert [(i, e.phase) for i, e in records] == [(1, PHASE_START), (5, PHASE_END)]
    end = records[1][1]
    assert end.ended_at == pytest.approx(1000.0 + 4 * WINDOW_S)  # first window of the end run
    assert end.score_max == pytest.approx(1.0)
    # The short dip at window 2 belongs to the event; the trailing low run does not.
    assert end.score_mean == pytest.approx((0.8 + 0.8 + 0.2 + 1.0) / 4)
    assert end.frame_id == 30
    assert tracker.active == ()
    assert tracker.best_frame_id("walk") is None


def test_end_needs_end_windows_consecutive_lows() -> None:
    tracker = make(start_windows=1, end_windows=3)
    values = [0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1]
    records = run_script(tracker, walk_stream(values))
    assert [(i, e.phase) for i, e in records] == [(0, PHASE_START), (6, PHASE_END)]


def test_cooldown_suppresses_restart_then_allows_it() -> None:
    tracker = make(start_windows=2, end_windows=1, cooldown_s=2.0)
    # end at window 2 (t=1001.0): cooldown until t=1003.0, i.e. windows 3..5 do not count.
    values = [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9]
    records = run_script(tracker, walk_stream(values))
    phases = [(i, e.phase) for i, e in records]
    assert phases == [(1, PHASE_START), (2, PHASE_END), (7, PHASE_START)]
    first_end, restart = records[1][1], records[2][1]
    assert restart.started_at == pytest.approx(1000.0 + 6 * WINDOW_S)
    assert restart.started_at - first_end.ended_at >= 2.0  # type: ignore[operator]
    assert restart.id != first_end.id


def test_zero_cooldown_allows_immediate_restart() -> None:
    tracker = make(start_windows=1, end_windows=1, cooldown_s=0.0)
    records = run_script(tracker, walk_stream([0.9, 0.1, 0.9]))
    assert [(i, e.phase) for i, e in records] == [
        (0, PHASE_START),
        (1, PHASE_END),
        (2, PHASE_START),
    ]


def test_per_action_thresholds() -> None:
    tracker = make(start_windows=1, thresholds={"walk": 0.9, "wave": 0.3})
    assert run_script(tracker, [scores(walk=0.8, wave=0.2)]) == []
    records = run_script(tracker, [scores(walk=0.8, wave=0.35)], t0=2000.0)
    assert [e.action for _, e in records] == ["wave"]
    records = run_script(tracker, [scores(walk=0.95, wave=0.35)], t0=3000.0)
    assert [e.action for _, e in records] == ["walk"]
    assert tracker.active == ("walk", "wave")


def test_ignored_labels_never_make_events() -> None:
    tracker = make(start_windows=1, ignore=frozenset({"idle"}))
    assert run_script(tracker, [scores(idle=1.0)] * 5) == []
    with_ignore_off = make(start_windows=1)
    assert [e.action for _, e in run_script(with_ignore_off, [scores(idle=1.0)])] == ["idle"]


def test_ids_unique_and_shared_by_start_and_end() -> None:
    tracker = make(start_windows=1, end_windows=1, cooldown_s=0.0)
    values = [0.9, 0.1] * 200
    records = [e for _, e in run_script(tracker, walk_stream(values))]
    starts = [e for e in records if e.phase == PHASE_START]
    ends = [e for e in records if e.phase == PHASE_END]
    assert len(starts) == len(ends) == 200
    assert len({e.id for e in starts}) == 200
    assert [e.id for e in starts] == [e.id for e in ends]
    assert all(e.id and isinstance(e.id, str) for e in records)


def test_two_actions_are_independent() -> None:
    tracker = make(start_windows=2, end_windows=2, cooldown_s=0.0)
    script = [
        scores(walk=0.9),  # 0
        scores(walk=0.9, wave=0.9),  # 1 walk starts
        scores(walk=0.1, wave=0.9),  # 2 wave starts
        scores(walk=0.1, wave=0.9),  # 3 walk ends
        scores(walk=0.1, wave=0.1),  # 4
        scores(walk=0.1, wave=0.1),  # 5 wave ends
    ]
    records = run_script(tracker, script)
    assert [(i, e.action, e.phase) for i, e in records] == [
        (1, "walk", PHASE_START),
        (2, "wave", PHASE_START),
        (3, "walk", PHASE_END),
        (5, "wave", PHASE_END),
    ]
    walk_ids = {e.id for _, e in records if e.action == "walk"}
    wave_ids = {e.id for _, e in records if e.action == "wave"}
    assert len(walk_ids) == len(wave_ids) == 1 and walk_ids != wave_ids


def test_flush_ends_open_events() -> None:
    tracker = make(start_windows=2)
    run_script(tracker, [scores(walk=0.9, wave=0.7)] * 3 + [scores(walk=0.9, wave=0.8)])
    assert tracker.active == ("walk", "wave")
    starts = {e.action: e for e in tracker.flush(t=1000.0)}
    assert tracker.active == ()
    assert set(starts) == {"walk", "wave"}
    assert all(e.phase == PHASE_END and e.ended_at == 1000.0 for e in starts.values())
    assert starts["wave"].score_max == pytest.approx(0.8)
    assert starts["wave"].score_mean == pytest.approx((0.7 * 3 + 0.8) / 4)
    assert tracker.flush(t=1001.0) == []


def test_every_end_says_why() -> None:
    tracker = make(start_windows=1, end_windows=1, cooldown_s=0.0)
    (_, start), (_, low) = run_script(tracker, walk_stream([0.9, 0.1]))
    assert start.end_reason is None and start.to_json_dict()["end_reason"] is None
    assert low.end_reason == END_SCORES_LOW
    assert low.to_json_dict()["end_reason"] == "scores_low"
    run_script(tracker, walk_stream([0.9]), t0=1010.0)
    (lost,) = tracker.flush(t=1011.0, reason=END_STREAM_LOST)
    assert lost.end_reason == "stream_lost" and lost.ended_at == 1011.0
    run_script(tracker, walk_stream([0.9]), t0=1020.0)
    (stopped,) = tracker.flush(t=1021.0)
    assert stopped.end_reason == END_STOPPED


def test_background_labels_are_not_actions() -> None:
    labels = ("idle", "walk_left", "gesture", "background")
    assert ignored_labels(labels, ()) == ("idle", "background")
    assert event_actions(labels, ()) == ("walk_left", "gesture")
    # An explicit [events] ignore replaces the background list: idle becomes an action.
    assert event_actions(labels, ("gesture",)) == ("idle", "walk_left", "background")


def test_flush_discards_pending_start_run() -> None:
    tracker = make(start_windows=2, cooldown_s=0.0)
    run_script(tracker, walk_stream([0.9]))
    assert tracker.flush(t=1000.2) == []
    assert run_script(tracker, walk_stream([0.9]), t0=1000.5) == []


def test_nan_scores_count_as_off_and_stay_out_of_stats() -> None:
    tracker = make(start_windows=2, end_windows=2)
    values = [0.8, 1.0, math.nan, 0.6, math.nan, math.nan]
    records = run_script(tracker, walk_stream(values))
    assert [(i, e.phase) for i, e in records] == [(1, PHASE_START), (5, PHASE_END)]
    assert records[1][1].score_mean == pytest.approx((0.8 + 1.0 + 0.6) / 3)


def test_numpy_scores_and_clock_default() -> None:
    now = [50.0]
    tracker = EventTracker("cam1", LABELS, EventSettings(start_windows=1), clock=lambda: now[0])
    (event,) = tracker.update(np.array([0.0, 0.95, 0.0], dtype=np.float32), frame_id=7)
    assert event.started_at == 50.0 and event.frame_id == 7
    assert event.score_max == pytest.approx(0.95, abs=1e-6)
    now[0] = 60.0
    (end,) = tracker.flush()
    assert end.ended_at == 60.0


def test_to_json_dict_is_json_without_snapshot() -> None:
    tracker = make(start_windows=1, end_windows=1)
    run_script(tracker, walk_stream([0.9]), t0=1_700_000_000.25)
    (end,) = run_script(tracker, walk_stream([0.1]), t0=1_700_000_001.5)
    event = end[1].with_snapshot(b"\xff\xd8jpeg")
    assert event.snapshot == b"\xff\xd8jpeg"
    doc = json.loads(json.dumps(event.to_json_dict()))
    assert doc["id"] == event.id and doc["phase"] == "end" and doc["action"] == "walk"
    assert doc["started_at"] == "2023-11-14T22:13:20.250+00:00"
    assert doc["started_at_epoch"] == 1_700_000_000.25
    assert doc["ended_at"] == "2023-11-14T22:13:21.500+00:00"
    assert doc["duration_s"] == pytest.approx(1.25)
    assert doc["has_snapshot"] is True
    assert "snapshot" not in doc


def test_record_durations_are_whole_milliseconds() -> None:
    tracker = make(start_windows=1, end_windows=1)
    run_script(tracker, walk_stream([0.9]), t0=1_700_000_000.1)
    (end,) = run_script(tracker, walk_stream([0.1]), t0=1_700_000_001.3)
    assert end[1].ended_at - end[1].started_at != 1.2  # float noise: 1.2000000476837158
    assert end[1].to_json_dict()["duration_s"] == 1.2


def test_start_record_json_has_null_end() -> None:
    tracker = make(start_windows=1)
    ((_, start),) = run_script(tracker, walk_stream([0.9]))
    doc = start.to_json_dict()
    assert doc["ended_at"] is None and doc["ended_at_epoch"] is None
    assert doc["duration_s"] is None and doc["has_snapshot"] is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start_windows": 0}, "start_windows"),
        ({"end_windows": 0}, "end_windows"),
        ({"cooldown_s": -1.0}, "cooldown_s"),
        ({"thresholds": {"walk": math.nan}}, "walk"),
    ],
)
def test_settings_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_are_immutable_copies() -> None:
    source = {"walk": 0.7}
    settings = EventSettings(thresholds=source)
    source["walk"] = 0.1
    assert settings.threshold("walk") == 0.7
    assert settings.threshold("wave") == 0.6
    with pytest.raises(TypeError):
        settings.thresholds["walk"] = 0.2  # type: ignore[index]


def test_tracker_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="jump"):
        EventTracker("cam0", LABELS, EventSettings(thresholds={"jump": 0.5}))
    with pytest.raises(ValueError, match="duplicate"):
        EventTracker("cam0", ("a", "a"), EventSettings())
    tracker = make()
    with pytest.raises(ValueError, match="2 scores for 3 labels"):
        tracker.update([0.1, 0.2], frame_id=0, t=0.0)
    with pytest.raises(ValueError, match="unknown action"):
        tracker.best_frame_id("jump")
