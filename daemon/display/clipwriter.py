"""The event clips' encoder: one thread per overlay worker writes WebM (VP8) files, so
encoding never stalls the frame loop (each file: webm_writer.py, PyAV and libvpx).

Commands go through one queue: open a clip (with its pre-roll frames), a frame for some
open clips, close a clip (keep it: move it from the `.part` directory into place; or delete it). Each
frame held counts 1 against `max_frames` (the memory the queue holds), however many slots
it fills (its copies, bounded by the caller): a frame that finds the queue full is refused
(the caller counts it) while opens and closes always get in, so no clip is left open. Outcomes come
back through `take_outcomes()`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np

from daemon.display.clipstore import part_path
from daemon.display.webm_writer import WRITE_ERRORS, WebmWriter

CLOSE_WAIT_S = 10.0  # a stopping worker waits this long for the queued frames

# Outcomes of a clip
DONE, WRITE_FAILED, EMPTY, DISCARDED = "done", "write_failed", "empty", "discarded"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    clip_id: str
    result: str  # DONE, WRITE_FAILED, EMPTY or DISCARDED
    path: Path
    frames: int  # its length in frames of its frame rate (a repeated frame counts each time)
    size_bytes: int


@dataclass
class _Open:
    path: Path  # the final name; written as part_path(path)
    writer: WebmWriter | None
    failed: bool = False

    @property
    def frames(self) -> int:
        return self.writer.slots if self.writer is not None else 0


@dataclass(frozen=True)
class _OpenCmd:
    clip_id: str
    path: Path
    frames: list[np.ndarray]


@dataclass(frozen=True)
class _FrameCmd:
    clip_ids: tuple[str, ...]
    frame: np.ndarray
    copies: int


@dataclass(frozen=True)
class _CloseCmd:
    clip_id: str
    keep: bool


_Command = _OpenCmd | _FrameCmd | _CloseCmd | None  # None: stop


@dataclass
class _Queue:
    items: deque[_Command] = field(default_factory=deque)
    frames: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)


class ClipEncoder:
    """The encoder thread and its queue; close() finishes what was queued."""

    def __init__(
        self, fps: float, max_frames: int, after_clip: Callable[[Outcome], None] | None = None
    ) -> None:
        self._fps, self._max_frames = fps, max_frames
        self._after_clip = after_clip  # run on the encoder thread (retention)
        self._queue = _Queue()
        self._open: dict[str, _Open] = {}
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stopped = False  # the thread ended on the stop command (not on an error)
        self._died = False  # it ended on an error instead (logged once)
        self._thread = threading.Thread(target=self._run, name="clip-encoder", daemon=True)
        self._thread.start()

    # -- the frame loop's side -------------------------------------------------------

    def open(self, clip_id: str, path: Path, pre_roll: Sequence[np.ndarray]) -> None:
        self._put(_OpenCmd(clip_id, path, list(pre_roll)), frames=0)

    def frame(self, clip_ids: tuple[str, ...], frame: np.ndarray, copies: int = 1) -> bool:
        """Queue `frame` (`copies` times: slots of the clips' frame rate it stands for)
        for these clips; False when the queue is full (the frame is not in them)."""
        return self._put(_FrameCmd(clip_ids, frame, copies), frames=1)

    def close_clip(self, clip_id: str, keep: bool) -> None:
        self._put(_CloseCmd(clip_id, keep), frames=0)

    def take_outcomes(self) -> list[Outcome]:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    @property
    def queued_frames(self) -> int:
        return self._queue.frames

    @property
    def died(self) -> bool:
        """The thread ended on an error (already logged), not on the stop command."""
        return self._died

    def close(self) -> bool:
        """Stop after the queued commands; False if the thread did not finish within
        CLOSE_WAIT_S (what it was writing is removed at the next start) or had died."""
        self._put(None, frames=0)
        self._thread.join(CLOSE_WAIT_S)
        if self._thread.is_alive():
            return False
        if self._stopped:
            return True
        self._instead_of_thread(None)  # it died after that command was queued
        return False

    def _put(self, command: _Command, frames: int) -> bool:
        if not self._thread.is_alive() and not self._stopped:
            return self._instead_of_thread(command)
        q = self._queue
        with q.cond:
            if frames and q.frames + frames > self._max_frames:
                return False
            q.items.append(command)
            q.frames += frames
            q.cond.notify()
        return True

    def _instead_of_thread(self, command: _Command) -> bool:
        """The thread died of an error no writer raises (its traceback is on stderr): the
        caller's thread fails every clip in its place, queued commands first, so that each
        clip still gets its outcome (WRITE_FAILED) when it is closed. Frames are refused."""
        if not self._died:
            self._died = True
            log.error("clip encoder: its thread ended on an error; every clip now fails")
        with self._queue.cond:
            queued, self._queue.frames = list(self._queue.items), 0
            self._queue.items.clear()
        for earlier in queued:
            if earlier is not None:
                self._fail_instead(earlier)
        if command is not None:
            return self._fail_instead(command)
        for clip_id in list(self._open):  # stopping: the clips still open fail too
            self._fail_instead(_CloseCmd(clip_id, keep=False))
        return True

    def _fail_instead(self, command: _OpenCmd | _FrameCmd | _CloseCmd) -> bool:
        if isinstance(command, _FrameCmd):
            return False
        if isinstance(command, _OpenCmd):
            self._open[command.clip_id] = _Open(command.path, None, failed=True)
        else:
            if (clip := self._open.get(command.clip_id)) is not None:
                clip.failed = True
            self._close(command.clip_id, command.keep)
        return True

    # -- the encoder thread ----------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            with q.cond:
                while not q.items:
                    q.cond.wait()
                command = q.items.popleft()
            if command is None:
                for clip_id in list(self._open):
                    self._close(clip_id, keep=True)
                self._stopped = True
                return
            try:
                self._do(command)
            finally:
                if isinstance(command, _FrameCmd):
                    with q.cond:
                        q.frames -= 1

    def _do(self, command: _OpenCmd | _FrameCmd | _CloseCmd) -> None:
        if isinstance(command, _CloseCmd):
            self._close(command.clip_id, command.keep)
        elif isinstance(command, _OpenCmd):
            try:
                self._start(command.clip_id, command.path, command.frames)
            except WRITE_ERRORS as exc:
                self._fail(command.clip_id, exc)
        else:
            for clip_id in command.clip_ids:  # one clip's error fails that clip alone
                try:
                    self._write(clip_id, command.frame, command.copies)
                except WRITE_ERRORS as exc:
                    self._fail(clip_id, exc)

    def _fail(self, clip_id: str, exc: BaseException) -> None:
        """The clip fails (its close reports WRITE_FAILED); the thread goes on."""
        log.warning("clip %s: %s", clip_id, exc)
        if clip_id in self._open:
            self._open[clip_id].failed = True

    def _start(self, clip_id: str, path: Path, frames: list[np.ndarray]) -> None:
        """Open the clip's writer (sized by its first frame; with no frame yet, by the
        first that comes) and write its pre-roll (a frame repeated for a gap is encoded
        once). A clip that cannot be opened stays listed as failed, so its close reports
        WRITE_FAILED."""
        self._open[clip_id] = clip = _Open(path, None)
        if not frames:
            return
        part = part_path(path)
        height, width = frames[0].shape[:2]
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("clip %s: cannot make %s: %s", clip_id, part.parent, exc)
            clip.failed = True
            return
        try:
            clip.writer = WebmWriter(part, self._fps, (width, height))
        except WRITE_ERRORS as exc:
            log.warning("clip %s: cannot open %s: %s", clip_id, part, exc)
            clip.failed = True
            return
        for _, same in groupby(frames, key=id):
            run = list(same)
            self._write(clip_id, run[0], len(run))

    def _write(self, clip_id: str, frame: np.ndarray, copies: int) -> None:
        clip = self._open.get(clip_id)
        if clip is None or clip.failed:
            return
        if clip.writer is None:  # opened with no pre-roll: the first frame sizes it
            self._start(clip_id, clip.path, [frame] * copies)
        elif copies > 0:
            clip.writer.write(frame, copies)

    def _close(self, clip_id: str, keep: bool) -> None:
        clip = self._open.pop(clip_id, None)
        if clip is None:
            return
        if clip.writer is not None:
            try:
                clip.writer.close()
            except WRITE_ERRORS as exc:
                log.warning("clip %s: could not finish %s: %s", clip_id, clip.path.name, exc)
                clip.failed = True
        part = part_path(clip.path)
        size = _size(part)
        if clip.failed or (clip.frames and size == 0):
            result = WRITE_FAILED
        elif not clip.frames:
            result = EMPTY
        else:
            result = DONE if keep else DISCARDED
        if result == DONE:
            try:
                os.replace(part, clip.path)
            except OSError as exc:
                log.warning("clip %s: could not move %s into place: %s", clip_id, part, exc)
                result = WRITE_FAILED
        if result != DONE:
            _discard(part)
        outcome = Outcome(clip_id, result, clip.path, clip.frames, size)
        with self._lock:
            self._outcomes.append(outcome)
        if self._after_clip is not None:
            self._after_clip(outcome)


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return  # never written
    except OSError as exc:  # e.g. its directory could not be made
        log.warning("clip: could not remove %s: %s", path, exc)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # not there (never opened), or its directory could not be made
        return 0
