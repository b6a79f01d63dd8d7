"""Tracks from per-frame person detections, on media time.

A small tracker rather than a library: norfair 2.3.0 (BSD-3) pins numpy < 2 (the
daemon runs numpy 2) and pulls scipy, rich and filterpy; its maintained fork
norfair-enough lifts the pin but still brings scipy and rich; and both count ages and
confirmations in frames, while here frames arrive at a varying rate (the gate skips
still frames), so every age must be seconds of media time. With a handful of people
per camera, greedy matching on box overlap is what the assignment needs.

Matching: each live track's box is moved on by its last velocity to the frame's time;
track-detection pairs are taken greedily by overlap (IoU with the moved or the last
box, whichever is larger), at least [people] match_iou. An unmatched detection opens a
tentative track; it is confirmed (gets an id) once detected confirm_hits times within
confirm_window_s, and dropped when unseen for confirm_window_s before that. A confirmed
track ends when unseen for lost_after_s.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.config import PeopleConfig
from daemon.people.person import Person, Track, iou


class Tracker:
    """Keeps the live tracks of one camera."""

    def __init__(self, people: PeopleConfig, keep_s: float) -> None:
        self._cfg = people
        self._keep_s = keep_s  # how much history each track keeps (the rules' windows)
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        """Live tracks, tentative ones included (track_id 0)."""
        return list(self._tracks)

    def update(self, persons: Sequence[Person], t_s: float) -> list[Track]:
        """Matches this frame's persons to the tracks; returns the confirmed tracks
        that ended (unseen for lost_after_s)."""
        matched = self._match(persons, t_s)
        for index, person in enumerate(persons):
            track = matched.get(index)
            if track is None:
                track = Track(0, person.box, person.keypoints, person.score, t_s, t_s)
                self._tracks.append(track)
            track.observe(person, t_s, self._keep_s)
            self._confirm(track, t_s)
        return self._expire(t_s)

    def close(self) -> list[Track]:
        """Ends every track; returns the confirmed ones."""
        ended = [t for t in self._tracks if t.confirmed]
        self._tracks.clear()
        return ended

    def _match(self, persons: Sequence[Person], t_s: float) -> dict[int, Track]:
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            moved = track.predicted_box(t_s)
            for pi, person in enumerate(persons):
                overlap = max(iou(moved, person.box), iou(track.box, person.box))
                if overlap >= self._cfg.match_iou and overlap > 0:
                    # Confirmed tracks first at equal overlap: a tentative twin loses.
                    pairs.append((overlap + (1e-6 if track.confirmed else 0.0), ti, pi))
        pairs.sort(reverse=True)
        used_tracks: set[int] = set()
        matched: dict[int, Track] = {}
        for _, ti, pi in pairs:
            if ti in used_tracks or pi in matched:
                continue
            used_tracks.add(ti)
            matched[pi] = self._tracks[ti]
        return matched

    def _confirm(self, track: Track, t_s: float) -> None:
        if track.confirmed:
            return
        window_s = self._cfg.confirm_window_s
        while track.hits_s and track.hits_s[0] < t_s - window_s:
            track.hits_s.popleft()
        if len(track.hits_s) >= self._cfg.confirm_hits:
            track.confirmed = True
            track.track_id = self._next_id
            self._next_id += 1
            track.hits_s.clear()

    def _expire(self, t_s: float) -> list[Track]:
        ended: list[Track] = []
        live: list[Track] = []
        for track in self._tracks:
            unseen_s = t_s - track.last_seen_s
            limit_s = self._cfg.lost_after_s if track.confirmed else self._cfg.confirm_window_s
            if unseen_s > limit_s:
                if track.confirmed:
                    ended.append(track)
            else:
                live.append(track)
        self._tracks = live
        return ended
