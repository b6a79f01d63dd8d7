"""Tracks from per-frame person detections, on media time.

A small tracker rather than a library: norfair 2.3.0 (BSD-3) pins numpy < 2 (the
daemon runs numpy 2) and pulls scipy, rich and filterpy; its maintained fork
norfair-enough lifts the pin but still brings scipy and rich; and both count ages and
confirmations in frames, while here frames arrive at a varying rate (the gate skips
still frames), so every age must be seconds of media time. With a handful of people
per camera, greedy matching on box overlap is what the assignment needs.

Matching: each live track's box is moved on by its last velocity to the frame's time;
track-detection pairs are taken greedily by overlap (IoU with the moved or the last
box, whichever is larger), at least [people] match_iou, confirmed tracks first (a
matching cascade). A detection nested in one a confirmed track took (DUPLICATE_SHARE)
is dropped as the same person's second box. An unmatched detection opens a
tentative track; it is confirmed (gets an id) once detected confirm_hits times within
confirm_window_s, and dropped when unseen for confirm_window_s before that. A confirmed
track ends when unseen for lost_after_s.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.config import PeopleConfig
from daemon.people.person import Box, Person, Track, covered_share, iou

# Two boxes one of which lies this much inside the other (share of its area) are the
# same person: a duplicate box of the detector, not a second person standing there.
DUPLICATE_SHARE = 0.8


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
            if index in matched and matched[index] is None:
                continue  # a duplicate box
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

    def _match(self, persons: Sequence[Person], t_s: float) -> dict[int, Track | None]:
        """Detection index -> its track, or None for a duplicate to drop. Confirmed
        tracks choose first (a matching cascade); then detections lying mostly inside
        one a confirmed track took are dropped as the detector's second box on the
        same person (a tile edge; a person and their bicycle); tentative tracks take
        from what is left."""
        matched: dict[int, Track | None] = {}
        matched.update(self._greedy([t for t in self._tracks if t.confirmed], persons, t_s, {}))
        for index, person in enumerate(persons):
            if index not in matched and self._duplicate(person, matched, persons):
                matched[index] = None
        tentative = [t for t in self._tracks if not t.confirmed]
        matched.update(self._greedy(tentative, persons, t_s, matched))
        return matched

    def _greedy(
        self,
        tracks: list[Track],
        persons: Sequence[Person],
        t_s: float,
        taken: dict[int, Track | None],
    ) -> dict[int, Track | None]:
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(tracks):
            moved = track.predicted_box(t_s)
            for pi, person in enumerate(persons):
                overlap = max(iou(moved, person.box), iou(track.box, person.box))
                if pi not in taken and overlap >= self._cfg.match_iou and overlap > 0:
                    pairs.append((overlap, ti, pi))
        pairs.sort(reverse=True)
        used: set[int] = set()
        matched: dict[int, Track | None] = {}
        for _, ti, pi in pairs:
            if ti not in used and pi not in matched:
                used.add(ti)
                matched[pi] = tracks[ti]
        return matched

    @staticmethod
    def _duplicate(
        person: Person, matched: dict[int, Track | None], persons: Sequence[Person]
    ) -> bool:
        return any(
            track is not None and _nested(person.box, persons[i].box)
            for i, track in matched.items()
        )

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


def _nested(a: Box, b: Box) -> bool:
    """One box lies mostly (DUPLICATE_SHARE of its area) inside the other."""
    return max(covered_share(a, b), covered_share(b, a)) >= DUPLICATE_SHARE
