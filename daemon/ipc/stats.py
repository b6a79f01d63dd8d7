"""Worker stats blocks: named float64 counters and gauges in shared memory.

One writer (the worker) and any number of readers (the supervisor's heartbeat check and
the Prometheus collector at scrape time). Each field is one aligned 8-byte word, so a
reader never sees a torn value and no lock is needed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daemon.ipc.errors import RingError
from daemon.ipc.segment import DEFAULT_SHM_DIR, Segment, new_run_id, segment_name

_MAGIC = 0x6163_7469_6F6E_7331  # "actions1"
_NAMES_OFF_BYTES = 16
_VALUES_OFF_BYTES = 8192
HEARTBEAT = "heartbeat_monotonic_s"
PID = "pid"
# Upper bounds of latency histogram buckets (Prometheus-style cumulative "le" buckets).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def histogram_fields(prefix: str) -> list[str]:
    """Stats fields of a histogram: one per bucket, then sum and count."""
    return [f"{prefix}_bucket_{i}" for i in range(len(LATENCY_BUCKETS_S))] + [
        f"{prefix}_sum",
        f"{prefix}_count",
    ]


class StatsBlock:
    """Named float64 fields shared between one worker and its supervisor."""

    def __init__(self, segment: Segment) -> None:
        self._seg = segment
        head = np.ndarray((2,), np.int64, buffer=segment.mm)
        if int(head[0]) != _MAGIC:
            del head
            segment.close()  # ours to close: the caller never gets the block
            raise RingError(f"{segment.path} is not an actiond stats block")
        raw = bytes(segment.mm[_NAMES_OFF_BYTES : _NAMES_OFF_BYTES + int(head[1])])
        del head
        self.fields: tuple[str, ...] = tuple(json.loads(raw))
        self._index = {name: i for i, name in enumerate(self.fields)}
        self._values = np.ndarray(
            (len(self.fields),), np.float64, buffer=segment.mm, offset=_VALUES_OFF_BYTES
        )

    @classmethod
    def create(
        cls,
        name: str,
        fields: Sequence[str],
        run_id: str | None = None,
        shm_dir: str = DEFAULT_SHM_DIR,
    ) -> StatsBlock:
        names = list(dict.fromkeys([HEARTBEAT, PID, *fields]))
        raw = json.dumps(names).encode()
        if _NAMES_OFF_BYTES + len(raw) > _VALUES_OFF_BYTES:
            raise ValueError("too many stats fields for one block")
        size = _VALUES_OFF_BYTES + 8 * len(names)
        seg = Segment.create(shm_dir, segment_name(run_id or new_run_id(), name), size)
        seg.mm[_NAMES_OFF_BYTES : _NAMES_OFF_BYTES + len(raw)] = raw
        head = np.ndarray((2,), np.int64, buffer=seg.mm)
        head[1] = len(raw)
        head[0] = _MAGIC
        del head
        seg.publish()
        return cls(seg)

    @classmethod
    def attach(cls, path: str | Path) -> StatsBlock:
        return cls(Segment.attach(Path(path)))

    @property
    def path(self) -> Path:
        return self._seg.path

    def set(self, name: str, value: float) -> None:
        self._values[self._index[name]] = value

    def add(self, name: str, delta: float = 1.0) -> None:
        self._values[self._index[name]] += delta

    def observe(self, prefix: str, seconds: float, count: int = 1) -> None:
        """Record `count` latencies of `seconds` each into the histogram fields made by
        histogram_fields()."""
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self._values[self._index[f"{prefix}_bucket_{i}"]] += count
        self._values[self._index[f"{prefix}_sum"]] += seconds * count
        self._values[self._index[f"{prefix}_count"]] += count

    def get(self, name: str) -> float:
        return float(self._values[self._index[name]])

    def snapshot(self) -> dict[str, float]:
        return dict(zip(self.fields, self._values.tolist()))

    def beat(self) -> None:
        """Mark this worker alive now (monotonic clock, shared by all processes)."""
        self._values[self._index[HEARTBEAT]] = time.monotonic()
        self._values[self._index[PID]] = os.getpid()

    def heartbeat_age_s(self) -> float:
        """Seconds since the last beat (inf if the worker never beat)."""
        last = self.get(HEARTBEAT)
        return float("inf") if last == 0 else time.monotonic() - last

    def reset(self) -> None:
        self._values[:] = 0.0

    def close(self, unlink: bool = False) -> None:
        del self._values
        self._seg.close()
        if unlink:
            self._seg.unlink()
