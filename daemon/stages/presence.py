"""A person present, for a clip camera that requires one (cameras[].require_person).

The graph "clip_with_people" (daemon/stages/registry.py) sends the camera's frames also
to a gate, which passes the moved ones (at analyse_fps; still scenes at keepalive_fps)
to the shared person detector; its results reach the overlay's `people` port. A window
of the clip model may START an event only when a person was found in an analysed frame
within `hold_s` of the window's capture time (media time); events already open end by
the usual hysteresis. The hold spans the gap between two analysed frames of a still
scene, so a person standing still keeps the camera's events allowed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from daemon.config import Config
from daemon.ipc import Consumer, attach_consumer
from daemon.stages import records
from daemon.stages.kinds import InPort

HOLD_ANALYSED_FRAMES = 1.5  # frames of the slower analysis rate a sighting counts for
SIGHTINGS_KEPT = 256  # capture times of the latest analysed frames with people
# The overlay's input for them: a side input, fed only by graph clip_with_people.
PEOPLE_PORT = InPort("people", follows=False, optional=True)


def hold_s(config: Config, analyse_fps: float) -> float:
    """How far (media seconds) from a sighting a window counts as 'a person present'."""
    slowest_fps = min(analyse_fps, config.perception.keepalive_fps)
    return HOLD_ANALYSED_FRAMES / slowest_fps


class Presence:
    """Reads the camera's person detections; says which clip scores may start events."""

    def __init__(
        self, ring_path: str, config: Config, analyse_fps: float, stage: str, labels: Sequence[str]
    ) -> None:
        self._labels = tuple(labels)
        self._record = records.result_record(records.person_result(config))
        self._in: Consumer | None = attach_consumer(ring_path, stage)
        self._hold_ns = int(hold_s(config, analyse_fps) * 1e9)
        self._seen_ns: list[int] = []  # sorted capture times of frames with people
        self.analysed_total = 0
        self.with_people_total = 0

    def collect(self) -> None:
        """Take every detections record waiting in the ring."""
        if self._in is None:
            return
        while (lease := self._in.try_get()) is not None:
            with lease:
                result = records.read_result(self._record, lease.array)
                people, ts_ns = records.detection_count(result), lease.meta.timestamp_ns
            self.analysed_total += 1
            if people > 0:
                self.with_people_total += 1
                bisect.insort(self._seen_ns, ts_ns)
                del self._seen_ns[:-SIGHTINGS_KEPT]

    def present(self, capture_ns: int) -> bool:
        """Whether a person was found within the hold of this capture time."""
        i = bisect.bisect_left(self._seen_ns, capture_ns - self._hold_ns)
        return i < len(self._seen_ns) and self._seen_ns[i] <= capture_ns + self._hold_ns

    def gate(self, scores: np.ndarray, capture_ns: int, active: Sequence[str]) -> np.ndarray:
        """`scores` (one per label) with every label that has no open event set to 0
        when nobody is present: no event starts, open ones go on."""
        if self.present(capture_ns):
            return scores
        gated = np.array(scores, dtype=np.float64, copy=True)
        for index, label in enumerate(self._labels):
            if label not in active:
                gated[index] = 0.0
        return gated

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
