"""Shared-memory segments as plain files under /dev/shm (or any tmpfs).

We create and map the files ourselves instead of using multiprocessing.shared_memory:
before Python 3.13 every attach registers the segment with the resource tracker, which
unlinks it when *any* attaching process exits (gh-82300). Space is reserved with
posix_fallocate, because ftruncate reserves nothing and a full tmpfs then kills the
process with SIGBUS on first touch.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from daemon.ipc.errors import RingNotFound, ShmSpaceError

DEFAULT_SHM_DIR = "/dev/shm"
CREATING_SUFFIX = ".creating"   # a segment's name until its header is written
SEGMENT_PREFIX = "actiond-"
# actiond-<owner pid>-<random>-<name>[.suffix]: the pid lets a later run tell a dead
# run's leftovers from a live daemon's segments.
_NAME_RE = re.compile(r"^actiond-(?P<pid>\d+)-[0-9a-f]+-")
_RAISE_HINT = (
    "free space there, or raise the limit: `mount -o remount,size=<bytes> {dir}` on a host, "
    "`docker run --shm-size=<bytes>` in Docker, or point `shm_dir` at a larger tmpfs"
)


def new_run_id() -> str:
    """A name part unique to this run of the owner process."""
    return f"{os.getpid()}-{secrets.token_hex(3)}"


def segment_name(run_id: str, name: str) -> str:
    """The file name of segment `name` for the run `run_id`."""
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise ValueError(f"segment name {name!r}: use letters, digits, '_', '.', ':' or '-'")
    return f"{SEGMENT_PREFIX}{run_id}-{name}"


def check_free_space(shm_dir: str, nbytes: int) -> None:
    """Raise ShmSpaceError unless `shm_dir` has `nbytes` free."""
    st = os.statvfs(shm_dir)
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise ShmSpaceError(
            errno.ENOSPC,
            f"shared memory: need {nbytes} bytes in {shm_dir} but only {free} are free; "
            + _RAISE_HINT.format(dir=shm_dir),
        )


@dataclass
class Segment:
    """One mapped shared-memory file; the creator owns (and later unlinks) it."""

    path: Path
    fd: int
    mm: mmap.mmap
    owner: bool

    @classmethod
    def create(cls, shm_dir: str, file_name: str, nbytes: int) -> "Segment":
        """A new segment under a temporary name; publish() gives it its real name once
        its header is written, so nobody who looks for it by name sees it half made."""
        check_free_space(shm_dir, nbytes)
        path = Path(shm_dir) / (file_name + CREATING_SUFFIX)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EFBIG):
                raise ShmSpaceError(
                    exc.errno,
                    f"shared memory: could not reserve {nbytes} bytes in {shm_dir} "
                    f"({os.strerror(exc.errno)}); " + _RAISE_HINT.format(dir=shm_dir),
                ) from exc
            raise
        return cls(path, fd, mmap.mmap(fd, nbytes), owner=True)

    def publish(self) -> None:
        """Rename the initialised segment to its real name (an atomic rename)."""
        if self.path.name.endswith(CREATING_SUFFIX):
            final = self.path.with_name(self.path.name[: -len(CREATING_SUFFIX)])
            os.rename(self.path, final)
            self.path = final

    @classmethod
    def attach(cls, path: Path) -> "Segment":
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingNotFound(
                errno.ENOENT,
                f"no shared-memory segment {path}: the owner has not created it yet, "
                "or it has already shut down",
            ) from None
        size = os.fstat(fd).st_size
        return cls(path, fd, mmap.mmap(fd, size), owner=False)

    def close(self) -> None:
        """Unmap and close; raises BufferError while numpy views into it are alive."""
        if self.mm.closed:
            return
        self.mm.close()
        os.close(self.fd)

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(shm_dir: str = DEFAULT_SHM_DIR) -> list[str]:
    """Remove segments (and their FIFOs) left by actiond runs whose owner is dead."""
    removed = []
    try:
        entries = os.listdir(shm_dir)
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _NAME_RE.match(entry)
        if match and not pid_alive(int(match["pid"])):
            try:
                os.unlink(os.path.join(shm_dir, entry))
            except FileNotFoundError:
                continue  # another process cleaned it first
            removed.append(entry)
    return removed


def list_segments(shm_dir: str = DEFAULT_SHM_DIR, run_id: str = "") -> list[str]:
    """Names of actiond files in `shm_dir` (of one run if `run_id` is given)."""
    prefix = SEGMENT_PREFIX + (f"{run_id}-" if run_id else "")
    try:
        return sorted(e for e in os.listdir(shm_dir) if e.startswith(prefix))
    except FileNotFoundError:
        return []
