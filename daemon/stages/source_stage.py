"""Source stage: decode one camera into its frames ring."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from daemon.ipc import Producer, attach_producer
from daemon.ipc.stats import StatsBlock
from daemon.stages.capture import FrameSource, SourceError
from daemon.stages.worker import Heartbeat, StageFatal, WorkerSpec, loan_slot, timed

log = logging.getLogger(__name__)

# stream_up: 1 while frames flow, 0 before the first and while a live stream is lost
# (read by the overlay to end open events and by the supervisor for camera availability).
SOURCE_FIELDS = ("reconnects_total", "stalls_total", "source_fps", "last_frame_id",
                 "stream_up")


class SourceStage:
    """Reads frames from a FrameSource and puts them into the camera's frames ring."""

    def __init__(self, spec: WorkerSpec, stats: StatsBlock, heartbeat: Heartbeat) -> None:
        self._spec, self._stats, self._heartbeat = spec, stats, heartbeat
        self._cam = next(c for c in spec.config.cameras if c.name == spec.camera)
        self._source = FrameSource(self._cam, str(spec.extra["source"]))
        self._out: Producer | None = None
        self._frame_id = int(spec.extra.get("first_frame_id", 0))

    def open(self) -> None:
        self._stats.set("stream_up", 0)   # a restarted worker has no stream yet
        self._out = attach_producer(self._spec.rings["out"])
        try:
            self._source.open()
        except SourceError as exc:
            # A missing or undecodable file is not fixed by restarting.
            raise StageFatal(f"camera {self._cam.name}: {exc}") from exc

    def step(self, stop: threading.Event) -> bool:
        try:
            with self._heartbeat.blocking(on_beat=self._update_counters):
                item = self._source.read(stop)
        except SourceError as exc:
            # A crop outside the frame, a looped file gone when reopened: a restart reads
            # the same source with the same config, so it cannot help.
            raise StageFatal(f"camera {self._cam.name}: {exc}") from exc
        self._update_counters()
        if item is None:
            return stop.is_set()   # end of a finite file: the stage has finished
        frame, ts_ns = item
        self._stats.set("stream_up", 1)
        self._stats.add("frames_in_total")
        started = time.perf_counter()
        self._out.check_frame(frame)
        frame_id, self._frame_id = self._frame_id, self._frame_id + 1
        loan = loan_slot(self._out, stop, self._heartbeat)
        if loan is None:
            return True  # dropped by the ring's policy (counted there) or stopping
        with loan:
            np.copyto(loan.array, frame)
            loan.publish(frame_id, ts_ns, self._cam.name)
        self._stats.set("last_frame_id", frame_id)
        timed(self._stats, started)
        return True

    def _update_counters(self) -> None:
        self._stats.set("reconnects_total", self._source.reconnects_total)
        self._stats.set("stalls_total", self._source.stalls_total)
        self._stats.set("source_fps", self._source.native_fps)
        if self._source.is_live and not self._source.connected:
            self._stats.set("stream_up", 0)

    def close(self) -> None:
        self._source.close()
        if self._out is not None:
            self._out.close()
