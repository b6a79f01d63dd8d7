"""Where event clips live on disk, and their retention.

Clips are `<state_dir>/clips/<camera>/<event id>.webm`, written as
`<state_dir>/clips/<camera>/.part/<event id>.webm` and renamed into place when complete
(an atomic rename on one filesystem; FFmpeg picks the container by the file's extension,
so the file being written must end in .webm, and a directory keeps it out of the way of
anything listing `*.webm`). Retention runs over the whole clips directory (every camera):
clips older than max_age_s go first, then the oldest until the total is within
max_total_bytes. A clip being written counts towards the total but is never deleted by
retention (its worker removes leftovers of its own camera at start).
Several overlay workers run retention: one at a time (an flock on `.retention.lock` in
the clips directory), so each sees what the one before deleted and none deletes more
than the limits ask. Whichever runs it, the clips it deletes are counted for their own
camera: a tally file `.deleted` in that camera's directory, which the camera's overlay
reads (deleted_count) for actiond_clips_deleted_total{camera}.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLIPS_DIR = "clips"
CLIP_SUFFIX = ".webm"
PART_DIR = ".part"
BYTES_PER_MB = 1024 * 1024
SECONDS_PER_DAY = 86400.0
RETENTION_AGE, RETENTION_SIZE = "age", "size"
LOCK_NAME = ".retention.lock"  # in the clips directory: one retention run at a time
TALLY_NAME = ".deleted"  # in a camera's directory: its clips retention deleted, ever

log = logging.getLogger(__name__)


def clips_root(state_dir: str | Path) -> Path:
    return Path(state_dir) / CLIPS_DIR


def clip_name(camera: str, event_id: str) -> str:
    """The clip's name in event records: `<camera>/<event id>.webm`, relative to the
    clips directory."""
    return f"{camera}/{event_id}{CLIP_SUFFIX}"


def free_mb(path: Path) -> float:
    """Free space (for an unprivileged writer) on the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / BYTES_PER_MB


def part_path(path: Path) -> Path:
    """Where clip `path` is written until it is complete."""
    return path.parent / PART_DIR / path.name


def remove_partials(camera_dir: Path) -> int:
    """Delete clips left half-written in one camera's directory by a worker that died
    while writing; returns how many."""
    removed = 0
    for path in (camera_dir / PART_DIR).glob(f"*{CLIP_SUFFIX}"):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed


@dataclass(frozen=True)
class _Clip:
    path: Path
    mtime_s: float
    size_bytes: int
    partial: bool


def _scan(root: Path) -> list[_Clip]:
    clips = []
    camera_dirs = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    for folder in [*camera_dirs, *(d / PART_DIR for d in camera_dirs)]:
        for path in folder.glob(f"*{CLIP_SUFFIX}"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # removed meanwhile (another worker's retention, a rename)
            clips.append(_Clip(path, st.st_mtime, st.st_size, folder.name == PART_DIR))
    return clips


def enforce_retention(
    root: Path, max_age_s: float, max_total_bytes: float, now_s: float | None = None
) -> list[tuple[Path, str]]:
    """Delete clips beyond the age limit, then the oldest beyond the size limit, one run
    at a time over `root`, and add each to its camera's tally; returns (path, reason)
    for each clip deleted (reason RETENTION_AGE or RETENTION_SIZE)."""
    root.mkdir(parents=True, exist_ok=True)
    with _retention_lock(root):
        deleted = _delete_beyond(root, max_age_s, max_total_bytes, now_s)
        for camera, count in Counter(path.parent.name for path, _ in deleted).items():
            _add_to_tally(root / camera, count)
    return deleted


def deleted_count(camera_dir: Path) -> int:
    """How many of this camera's clips retention deleted (its tally; 0 before any)."""
    try:
        return int((camera_dir / TALLY_NAME).read_text(encoding="ascii"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        log.warning("clip retention: cannot read %s: %s", camera_dir / TALLY_NAME, exc)
        return 0


@contextmanager
def _retention_lock(root: Path) -> Iterator[None]:
    with open(root / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _add_to_tally(camera_dir: Path, count: int) -> None:
    """Under the retention lock; replaced whole, so a reader never sees half of it."""
    tally, part = camera_dir / TALLY_NAME, camera_dir / f"{TALLY_NAME}.tmp"
    try:
        part.write_text(str(deleted_count(camera_dir) + count), encoding="ascii")
        os.replace(part, tally)
    except OSError as exc:
        log.warning("clip retention: cannot count %d deleted clip(s) in %s: %s", count, tally, exc)


def _delete_beyond(
    root: Path, max_age_s: float, max_total_bytes: float, now_s: float | None
) -> list[tuple[Path, str]]:
    now_s = time.time() if now_s is None else now_s
    clips = sorted(_scan(root), key=lambda c: c.mtime_s)
    total = sum(c.size_bytes for c in clips)
    deleted: list[tuple[Path, str]] = []
    for clip in clips:
        if clip.partial:
            continue
        if now_s - clip.mtime_s > max_age_s:
            reason = RETENTION_AGE
        elif total > max_total_bytes:
            reason = RETENTION_SIZE
        else:
            continue
        try:
            clip.path.unlink()
        except FileNotFoundError:
            pass  # gone meanwhile (removed by hand): it no longer counts either way
        else:
            deleted.append((clip.path, reason))
        total -= clip.size_bytes
    if deleted:
        log.info("clip retention: deleted %d clip(s) under %s", len(deleted), root)
    return deleted
