"""Event clips in the overlay worker: a short in-memory pre-roll of the drawn frames, and
a WebM clip per event from pre_roll_s before its start to post_roll_s after its end, at
most max_clip_s long ([clips]; files and retention: display.clipstore; encoding on a
thread: display.clipwriter).

Times are the frames' capture times (media time for a replayed file), the clock the
events run on: a record comes once its result is in, after the frame it belongs to was
shown, so the pre-roll keeps PRE_ROLL_SLACK_S more than pre_roll_s to still hold the
frames before a start reported late. Frames are kept at clips.fps, scaled down to
clips.max_width first, so memory is bounded by (pre_roll_s + PRE_ROLL_SLACK_S + the
encoder's QUEUE_S) x fps x one small frame, which check-config bounds
(config.clips_rules.check_clip_memory). A clip's frames are placed on its own frame-rate
grid: a camera slower than clips.fps repeats a frame rather than shortening the clip.

Each event record gets `clip` (`<camera>/<event id>.webm`) while a clip is recorded for
it, else `clip: null` and `clip_missing` saying why; every clip not recorded and every
frame a clip missed is counted as a loss of the overlay stage (CLIP_LOSSES).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from daemon.config import CameraConfig, ClipsConfig
from daemon.config.clips_rules import PRE_ROLL_SLACK_S, QUEUE_S, clip_frame_size
from daemon.display import clipstore
from daemon.display.clipwriter import DONE, WRITE_FAILED, ClipEncoder, Outcome
from daemon.ipc.stats import StatsBlock
from daemon.stages.kinds import FRAME, RECORDING, Loss

# Why a record has no clip (its clip_missing); those marked as losses are counted.
MISSING_DISABLED = "disabled"  # clips.enabled = false
MISSING_NOT_RECORDED = "not_recorded"  # its start came before this worker ran
LOST_DISK_LOW = Loss(RECORDING, "disk_low")  # less than clips.min_free_mb free: not started
LOST_TOO_MANY = Loss(RECORDING, "too_many_open")  # MAX_OPEN_CLIPS were being recorded
LOST_WRITE_FAILED = Loss(RECORDING, "write_failed")  # the encoder could not write it
LOST_CUT_DISK_LOW = Loss(RECORDING, "cut_disk_low")  # closed early: the disk ran low
LOST_QUEUE_FULL = Loss(FRAME, "clip_queue_full")  # a frame the encoder had no room for
CLIP_LOSSES = (LOST_DISK_LOW, LOST_TOO_MANY, LOST_WRITE_FAILED, LOST_CUT_DISK_LOW, LOST_QUEUE_FULL)
CLIP_FIELDS = ("clips_total", "clips_deleted_total")
MAX_OPEN_CLIPS = 8  # per camera: overlapping events each get a clip, up to this many
DISK_CHECK_S = 1.0  # free space is checked at most this often while clips are open
MAX_REPEATS = 50  # a frame repeated for a gap in the stream fills at most this many slots
OUTCOMES_KEPT = 256  # clips remembered for their events' end records
IDLE_GRACE_S = 1.0  # with no frames, an ended event's clip waits post_roll_s + this
TALLY_READ_S = 5.0  # how often the camera's count of clips deleted by retention is read

log = logging.getLogger(__name__)


@dataclass
class _Clip:
    t0_s: float  # capture time of the clip's first slot
    slot: int  # the last slot written
    end_s: float | None = None  # capture time of the event's end
    ended_mono_s: float = 0.0  # time.monotonic() when the end record came
    dropped: int = 0  # frames the encoder's queue had no room for


class EventClips:
    """One camera's pre-roll and open clips; fields() for each record, show() per frame."""

    def __init__(
        self, cam: CameraConfig, cfg: ClipsConfig, state_dir: str, stats: StatsBlock
    ) -> None:
        self._camera, self._cfg, self._stats = cam.name, cfg, stats
        self._period_s = 1.0 / cfg.fps
        self._size = clip_frame_size(cam.width, cam.height, cfg.max_width)
        self._root = clipstore.clips_root(state_dir)
        self._dir = self._root / cam.name
        self._dir.mkdir(parents=True, exist_ok=True)
        if removed := clipstore.remove_partials(self._dir):
            log.info("camera %s: removed %d half-written clip(s)", cam.name, removed)
        # This camera's clips deleted by retention, whichever overlay ran it: its tally
        # as last read (clips_deleted_total counts from here) and when.
        self._deleted_seen = clipstore.deleted_count(self._dir)
        self._tally_read_s = 0.0
        self._retain()
        self._pre: deque[tuple[float, np.ndarray]] = deque()
        self._open: dict[str, _Clip] = {}
        self._done: OrderedDict[str, str] = OrderedDict()  # id -> "" or why it failed
        self._next_s = -math.inf
        self._last_s: float | None = None
        self._disk_checked_s = 0.0
        frames = max(1, round(QUEUE_S * cfg.fps))
        self._encoder = ClipEncoder(cfg.fps, frames, after_clip=self._after_clip)

    # -- records ---------------------------------------------------------------------

    def fields(self, event_id: str, phase: str, t_s: float) -> dict[str, Any]:
        """The record's clip fields; a start (at capture time t_s) opens the event's clip
        from pre_roll_s before it; an end (at t_s) closes it post_roll_s after."""
        name = clipstore.clip_name(self._camera, event_id)
        if phase == "end":
            return self._end(event_id, name, t_s)
        if event_id in self._open:
            return {"clip": name}
        missing = self._refusal()
        if missing is not None:
            self._stats.add(missing.field)
            return {"clip": None, "clip_missing": missing.reason}
        pre = [(t, f) for t, f in self._pre if t >= t_s - self._cfg.pre_roll_s]
        t0 = pre[0][0] if pre else (self._last_s or t_s)
        frames = self._on_grid(t0, pre)
        self._encoder.open(event_id, self._dir / f"{event_id}{clipstore.CLIP_SUFFIX}", frames)
        self._open[event_id] = _Clip(t0, len(frames) - 1)
        return {"clip": name}

    def _end(self, event_id: str, name: str, t_s: float) -> dict[str, Any]:
        clip = self._open.get(event_id)
        if clip is not None:
            clip.end_s, clip.ended_mono_s = t_s, time.monotonic()
            return {"clip": name}
        if event_id not in self._done:
            return {"clip": None, "clip_missing": MISSING_NOT_RECORDED}
        failed = self._done[event_id]
        return {"clip": None, "clip_missing": failed} if failed else {"clip": name}

    def _refusal(self) -> Loss | None:
        if len(self._open) >= MAX_OPEN_CLIPS:
            return LOST_TOO_MANY
        if clipstore.free_mb(self._dir) < self._cfg.min_free_mb:
            log.warning(
                "camera %s: not recording a clip: %s has less than clips.min_free_mb = %g MB free",
                self._camera,
                self._dir,
                self._cfg.min_free_mb,
            )
            return LOST_DISK_LOW
        return None

    # -- frames ----------------------------------------------------------------------

    def show(self, image: np.ndarray, capture_ns: int) -> None:
        """Keep the drawn frame (at clips.fps) and feed it to the open clips."""
        t_s = capture_ns / 1e9
        self._last_s = t_s
        self._collect()
        if t_s < self._next_s:
            return
        self._next_s = max(self._next_s + self._period_s, t_s - self._period_s / 2)
        small = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._pre.append((t_s, small))
        while self._pre and self._pre[0][0] < t_s - self._cfg.pre_roll_s - PRE_ROLL_SLACK_S:
            self._pre.popleft()
        if self._open:
            self._feed(t_s, small)

    def _feed(self, t_s: float, small: np.ndarray) -> None:
        """Queue the frame for the open clips, repeated over the slots since each clip's
        last one (a gap in the stream). A frame the encoder has no room for is one frame
        lost per clip; the clip's slot stays, so its next frame fills the gap and the clip
        still plays in real time."""
        by_copies: dict[int, list[tuple[str, int]]] = {}
        for event_id, clip in self._open.items():
            if clip.end_s is not None and t_s > clip.end_s + self._cfg.post_roll_s + self._period_s:
                continue  # after a gap (a lost stream): past its post-roll, closed below
            slot = int((t_s - clip.t0_s) / self._period_s + 0.5)
            copies = min(slot - clip.slot, MAX_REPEATS)
            if copies > 0:
                by_copies.setdefault(copies, []).append((event_id, slot))
        for copies, clips in by_copies.items():
            queued = self._encoder.frame(tuple(event_id for event_id, _ in clips), small, copies)
            if not queued:
                self._stats.add(LOST_QUEUE_FULL.field, len(clips))
            for event_id, slot in clips:
                if queued:
                    self._open[event_id].slot = slot
                else:
                    self._open[event_id].dropped += 1
        self._close_due(t_s)

    def _close_due(self, t_s: float) -> None:
        low = False
        if t_s - self._disk_checked_s >= DISK_CHECK_S or t_s < self._disk_checked_s:
            self._disk_checked_s = t_s
            low = clipstore.free_mb(self._dir) < self._cfg.min_free_mb
        for event_id, clip in list(self._open.items()):
            ended = clip.end_s is not None and t_s >= clip.end_s + self._cfg.post_roll_s
            if ended or t_s - clip.t0_s >= self._cfg.max_clip_s:
                self._finish(event_id, keep=True)
            elif low:  # kept as far as it got
                log.warning("camera %s: clip of %s cut short: disk low", self._camera, event_id)
                self._stats.add(LOST_CUT_DISK_LOW.field)
                self._finish(event_id, keep=True)

    def idle(self) -> None:
        """No frame came within a step (a lost stream): finish the clips of ended events
        whose post-roll would be over by now, rather than wait for frames to resume."""
        self._collect()
        due_s = time.monotonic() - self._cfg.post_roll_s - IDLE_GRACE_S
        for event_id, clip in list(self._open.items()):
            if clip.end_s is not None and clip.ended_mono_s < due_s:
                self._finish(event_id, keep=True)

    def _finish(self, event_id: str, keep: bool) -> None:
        clip = self._open.pop(event_id)
        self._encoder.close_clip(event_id, keep)
        log.info(
            "camera %s: clip of event %s closed: %.1f s, %d frames dropped (encoder behind)",
            self._camera,
            event_id,
            (clip.slot + 1) * self._period_s,
            clip.dropped,
        )
        self._remember(event_id, "")

    def _on_grid(self, t0_s: float, pre: list[tuple[float, np.ndarray]]) -> list[np.ndarray]:
        """The pre-roll on the clip's frame-rate grid (a gap repeats the frame before)."""
        out: list[np.ndarray] = []
        for t_s, frame in pre:
            slot = int((t_s - t0_s) / self._period_s + 0.5)
            out += [frame] * max(1, min(slot - len(out) + 1, MAX_REPEATS))
        return out

    # -- outcomes and retention --------------------------------------------------------

    def _collect(self) -> None:
        for outcome in self._encoder.take_outcomes():
            if outcome.result == DONE:
                self._stats.add("clips_total")
                log.info(
                    "camera %s: clip %s: %d frames, %d bytes",
                    self._camera,
                    outcome.path.name,
                    outcome.frames,
                    outcome.size_bytes,
                )
            elif outcome.result == WRITE_FAILED:
                self._stats.add(LOST_WRITE_FAILED.field)
                self._remember(outcome.clip_id, LOST_WRITE_FAILED.reason)
        self._read_tally(force=False)

    def _read_tally(self, force: bool) -> None:
        """Count this camera's clips deleted by retention since the last read."""
        now_s = time.monotonic()
        if not force and now_s - self._tally_read_s < TALLY_READ_S:
            return
        self._tally_read_s = now_s
        count = clipstore.deleted_count(self._dir)
        if count > self._deleted_seen:
            self._stats.add("clips_deleted_total", count - self._deleted_seen)
        self._deleted_seen = count

    def _remember(self, event_id: str, failed: str) -> None:
        self._done[event_id] = failed
        self._done.move_to_end(event_id)
        while len(self._done) > OUTCOMES_KEPT:
            self._done.popitem(last=False)

    def _after_clip(self, outcome: Outcome) -> None:  # on the encoder thread
        if outcome.result == DONE:
            self._retain()

    def _retain(self) -> None:
        """Retention over every camera's clips; each camera's overlay counts its own."""
        try:
            clipstore.enforce_retention(
                self._root,
                self._cfg.max_age_days * clipstore.SECONDS_PER_DAY,
                self._cfg.max_total_mb * clipstore.BYTES_PER_MB,
                time.time(),
            )
        except OSError as exc:  # e.g. the lock file cannot be made
            log.warning("camera %s: clip retention failed: %s", self._camera, exc)

    def close(self) -> None:
        """Finish every open clip (the stream ended or the worker stops) and the encoder."""
        for event_id in list(self._open):
            self._finish(event_id, keep=True)
        if not self._encoder.close() and not self._encoder.died:  # a death is logged
            log.warning("camera %s: the clip encoder did not finish in time", self._camera)
        self._collect()
        self._read_tally(force=True)
