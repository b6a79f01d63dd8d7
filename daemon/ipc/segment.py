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
CREATING_SUFFIX = ".creating"  # a segment's name until its header is written
# actiond-<owner pid>-<random>-<name>[.suffix]: the run id (pid + random) keeps runs
# apart; whether a run is alive is its run lock's business (runlock.py), not the pid's.
SEGMENT_PREFIX = "actiond-"
MOUNTINFO = "/proc/self/mountinfo"


def new_run_id() -> str:
    """A name part unique to this run of the owner process."""
    return f"{os.getpid()}-{secrets.token_hex(3)}"


def segment_name(run_id: str, name: str) -> str:
    """The file name of segment `name` for the run `run_id`."""
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise ValueError(f"segment name {name!r}: use letters, digits, '_', '.', ':' or '-'")
    return f"{SEGMENT_PREFIX}{run_id}-{name}"


def raise_hint(shm_dir: str) -> str:
    """How to get more room in `shm_dir`: remount names the tmpfs that holds it, which is
    not shm_dir itself when shm_dir is a folder inside /dev/shm."""
    mount, fstype = mount_of(shm_dir)
    if fstype not in ("tmpfs", "?"):
        remount = f"mount a tmpfs of that size ({shm_dir} is on {fstype}, not a tmpfs), "
    elif mount == os.path.realpath(shm_dir):
        remount = f"`mount -o remount,size=<bytes> {mount}` on a host, "
    else:
        remount = (
            f"`mount -o remount,size=<bytes> {mount}` on a host ({mount} is the "
            f"mount that holds {shm_dir}), "
        )
    return (
        "free space there, or raise the limit: "
        + remount
        + "`docker run --shm-size=<bytes>` in Docker, or point `shm_dir` at a larger tmpfs"
    )


def mount_of(path: str) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding `path`: the longest mount point
    in /proc/self/mountinfo that contains it ("?" for the type without /proc)."""
    real = os.path.realpath(path)
    best, fstype = "", "?"
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        # <id> <parent> <major:minor> <root> <mount point> <options> ... - <type> ...
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = _unescape(parts[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # later lines stack over earlier ones
            best, fstype = point, rest.split()[0]
    if not best:
        best = real
        while not os.path.ismount(best):
            best = os.path.dirname(best)
    return best, fstype


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def check_free_space(shm_dir: str, nbytes: int) -> None:
    """Raise ShmSpaceError unless `shm_dir` has `nbytes` free."""
    st = os.statvfs(shm_dir)
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise ShmSpaceError(
            errno.ENOSPC,
            f"shared memory: need {nbytes} bytes in {shm_dir} but only {free} are free; "
            + raise_hint(shm_dir),
        )


@dataclass
class Segment:
    """One mapped shared-memory file; the creator owns (and later unlinks) it."""

    path: Path
    fd: int
    mm: mmap.mmap
    owner: bool

    @classmethod
    def create(cls, shm_dir: str, file_name: str, nbytes: int) -> Segment:
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
                    f"({os.strerror(exc.errno)}); " + raise_hint(shm_dir),
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
    def attach(cls, path: Path) -> Segment:
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


def list_segments(shm_dir: str = DEFAULT_SHM_DIR, run_id: str = "") -> list[str]:
    """Names of actiond files in `shm_dir` (of one run if `run_id` is given)."""
    prefix = SEGMENT_PREFIX + (f"{run_id}-" if run_id else "")
    try:
        return sorted(e for e in os.listdir(shm_dir) if e.startswith(prefix))
    except FileNotFoundError:
        return []
