"""Which runs are alive: the run lock, and the clean-up of files left by dead runs.

A run (one supervisor) creates `actiond-<run id>-run.lock` in its shm_dir before any
segment and holds an exclusive flock on it for its whole life. The kernel drops the lock
when the holder dies, however it dies, and a flock is seen from every PID namespace that
shares the tmpfs: two containers sharing /dev/shm tell a live run from a dead one by it,
where a pid means nothing across namespaces (pid 4242 here is another process, or none,
over there). The fd is close-on-exec, so spawned workers do not hold the lock: a
supervisor SIGKILLed while its workers wind down is already dead to the next start.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from pathlib import Path

from daemon.ipc.segment import DEFAULT_SHM_DIR, pid_alive, segment_name

LOCK_NAME = "run.lock"
# Files of a run that has no lock file (made by an actiond before the run lock, or by a
# bench that made rings without one) are removed only when their pid is dead here and
# they are this old: the pid alone is no proof across PID namespaces.
STALE_GRACE_S = 60.0
LOCK_WAIT_S = 2.0  # a cleaner holds a run's lock only while it unlinks a few files
LOCK_POLL_S = 0.01
# actiond-<owner pid>-<random hex>-<name>[.suffix]
_NAME_RE = re.compile(r"^actiond-(?P<run>(?P<pid>\d+)-[0-9a-f]+)-")


class RunLock:
    """The lock that says "run `run_id` is alive"; release() at a clean stop."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, shm_dir: str, run_id: str) -> RunLock:
        """Create and lock the run's lock file. OSError(EBUSY) if another process holds it
        (a run id used twice)."""
        path = Path(shm_dir) / segment_name(run_id, LOCK_NAME)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                locked = _try_lock(fd)
                if locked and _same_file(fd, path):
                    os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking
                    return cls(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            # Either a cleaner holds it (for a moment), or it unlinked the file between
            # our open and our lock: the inode we locked is gone, so make a new one.
            if not locked and time.monotonic() >= deadline:
                raise OSError(
                    errno.EBUSY, f"run lock {path} is held by another process (a run id used twice)"
                )
            if not locked:
                time.sleep(LOCK_POLL_S)

    def release(self) -> None:
        """Unlink the lock file, then drop the lock. Idempotent."""
        if self._fd < 0:
            return
        self.path.unlink(missing_ok=True)  # still held: no cleaner can be in between
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open at `fd` (a cleaner may have unlinked it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def clean_stale(shm_dir: str = DEFAULT_SHM_DIR, grace_s: float = STALE_GRACE_S) -> list[str]:
    """Remove the files (segments, FIFOs, sockets) of actiond runs that are dead; returns
    their names.

    A run with a lock file is dead when its lock can be taken: its files are removed while
    we hold it, the lock file last, so a run is never half-removed under a live owner. A run
    without a lock file is dead when its pid does not exist here and its newest file is
    older than `grace_s` (see STALE_GRACE_S). Files of other users are left alone.
    """
    try:
        entries = os.listdir(shm_dir)
    except FileNotFoundError:
        return []
    runs: dict[str, list[str]] = {}
    for entry in entries:
        match = _NAME_RE.match(entry)
        if match:
            runs.setdefault(match["run"], []).append(entry)
    removed: list[str] = []
    for run_id, names in runs.items():
        lock_name = segment_name(run_id, LOCK_NAME)
        if lock_name in names:
            names.remove(lock_name)
            removed += _remove_if_unlocked(shm_dir, names, lock_name)
        elif _abandoned(shm_dir, run_id, names, grace_s):
            removed += _unlink_all(shm_dir, names)
    return removed


def _remove_if_unlocked(shm_dir: str, names: list[str], lock_name: str) -> list[str]:
    path = Path(shm_dir) / lock_name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return []  # removed meanwhile by another cleaner, or another user's run
    try:
        if not _try_lock(fd) or not _same_file(fd, path):
            return []  # alive (or a new lock file under that name: alive too)
        return _unlink_all(shm_dir, [*names, lock_name])
    finally:
        os.close(fd)


def _abandoned(shm_dir: str, run_id: str, names: list[str], grace_s: float) -> bool:
    if pid_alive(int(run_id.split("-", 1)[0])):
        return False
    newest = 0.0
    for name in names:
        try:
            st = os.lstat(os.path.join(shm_dir, name))
        except FileNotFoundError:
            continue
        newest = max(newest, st.st_mtime, st.st_ctime)
    return time.time() - newest >= grace_s


def _unlink_all(shm_dir: str, names: list[str]) -> list[str]:
    removed = []
    for name in names:
        try:
            os.unlink(os.path.join(shm_dir, name))
        except FileNotFoundError:
            continue  # another process cleaned it first
        except PermissionError:
            continue  # another user's file in a sticky /dev/shm: not ours to remove
        removed.append(name)
    return removed
