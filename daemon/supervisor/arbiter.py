"""The arbiter: spawns, reaps, kills and restarts worker processes on the asyncio loop.

Modelled on gunicorn's arbiter, one verb per duty. Worker exits are seen through each
process's sentinel fd (add_reader), so a crash is reaped at once, its ring slots are
reclaimed, and a restart is scheduled with backoff. A worker whose heartbeat goes stale
gets SIGTERM, then SIGKILL on the next tick, then the same path as a crash.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess

from daemon.exitcodes import ExitCode
from daemon.stages.worker import OPENED, worker_main
from daemon.supervisor.restart import CrashHistory, RestartPolicy
from daemon.supervisor.topology import Topology

log = logging.getLogger(__name__)

# Never fork the running event loop: spawn starts each worker from a fresh interpreter.
MP_CONTEXT = multiprocessing.get_context("spawn")


@dataclass
class WorkerState:
    """One worker slot of the topology and the process currently filling it."""

    name: str
    history: CrashHistory
    process: BaseProcess | None = None
    started_at: float = 0.0
    term_sent_at: float | None = None
    restart: asyncio.TimerHandle | None = None
    finished: bool = False
    failed: bool = False
    stop_reason: str = ""  # set while we stop it on purpose (e.g. "the reload")
    restarts_total: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process is not None


class Arbiter:
    """Keeps every worker of a topology running, or marks its camera failed."""

    def __init__(
        self,
        topology: Topology,
        policy: RestartPolicy,
        heartbeat_timeout_s: float,
        on_camera_failed: Callable[[str], None],
    ) -> None:
        self.topology = topology
        self.policy = policy
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._on_camera_failed = on_camera_failed
        self.workers: dict[str, WorkerState] = {}
        self.failed_cameras: set[str] = set()
        self.stopping = False

    # -- spawning -------------------------------------------------------------------

    def spawn_workers(self, names: list[str] | None = None) -> None:
        for name in names if names is not None else list(self.topology.workers):
            self.spawn_worker(name)

    def spawn_worker(self, name: str) -> None:
        state = self.workers.setdefault(name, WorkerState(name, CrashHistory(self.policy)))
        state.restart = None
        if self.stopping or state.failed or state.alive:
            return
        spec, kind = self.topology.workers[name], self.topology.kind_of(name)
        if kind.respawn is not None:
            # E.g. a restarted source continues the frame ids from its stats block.
            spec = replace(spec, args=kind.respawn(spec.args, self.topology.stats[name]))
        process = MP_CONTEXT.Process(
            target=worker_main, args=(spec, kind.factory), name=name, daemon=False
        )
        process.start()
        state.process, state.started_at, state.term_sent_at = process, time.monotonic(), None
        state.finished, state.stop_reason = False, ""
        asyncio.get_running_loop().add_reader(process.sentinel, self.reap_worker, name)
        log.debug("spawned %s (pid %d)", name, process.pid)

    # -- reaping ----------------------------------------------------------------------

    def reap_worker(self, name: str) -> None:
        """A worker's sentinel fired: collect its status and decide what comes next."""
        state = self.workers[name]
        process = state.process
        if process is None:
            return
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()
        code = process.exitcode if process.exitcode is not None else -1
        pid = process.pid
        process.close()
        state.process = None
        state.exits.append(code)
        self._reclaim(pid)
        stats = self.topology.stats.get(name)
        finished = code == 0 and stats is not None and stats.get("finished") == 1
        if state.stop_reason:
            log.info("%s (pid %s) stopped for %s (%s)", name, pid, state.stop_reason, _cause(code))
            state.stop_reason = ""
            return  # whoever stopped it starts it again
        if self.stopping or state.failed:
            return  # we stopped it on purpose
        if finished:
            state.finished = True
            log.info("%s finished", name)
            return
        self._handle_crash(state, code, pid)

    def _reclaim(self, pid: int | None) -> None:
        if pid is None:
            return
        freed = sum(ring.reclaim(pid) for ring in self.topology.rings.values())
        if freed:
            log.info("reclaimed %d ring slot(s) held by pid %d", freed, pid)

    def _handle_crash(self, state: WorkerState, code: int, pid: int | None) -> None:
        cause = _cause(code)
        camera = self.topology.workers[state.name].camera
        if code == ExitCode.BOOT:
            log.error("%s (pid %s) cannot start (%s): not restarting it", state.name, pid, cause)
            self.fail(camera or None, state.name)
            return
        now = time.monotonic()
        delay = state.history.record(now, now - state.started_at)
        if delay is None:
            log.error(
                "%s crashed %d times within %.0f s: giving up on it",
                state.name,
                len(state.history.times),
                self.policy.window_s,
            )
            self.fail(camera or None, state.name)
            return
        log.warning("%s (pid %s) died (%s); restarting in %.1f s", state.name, pid, cause, delay)
        state.restarts_total += 1
        state.restart = asyncio.get_running_loop().call_later(delay, self.spawn_worker, state.name)

    # -- failing ----------------------------------------------------------------------

    def fail(self, camera: str | None, worker: str) -> None:
        """Give up on a camera (or, for a shared worker, on every camera)."""
        self.workers[worker].failed = True
        cameras = (
            [camera] if camera else [c for c in self.cameras() if c not in self.failed_cameras]
        )
        for cam in cameras:
            if cam in self.failed_cameras:
                continue
            self.failed_cameras.add(cam)
            for name, spec in self.topology.workers.items():
                if spec.camera == cam:
                    self.workers[name].failed = True
                    self.kill_worker(name, signal.SIGTERM)
            self._on_camera_failed(cam)

    def cameras(self) -> list[str]:
        return sorted({w.camera for w in self.topology.workers.values() if w.camera})

    # -- killing ----------------------------------------------------------------------

    def kill_worker(self, name: str, sig: signal.Signals) -> None:
        state = self.workers.get(name)
        if state is None:
            return
        if state.restart is not None:
            state.restart.cancel()
            state.restart = None
        if state.process is not None and state.process.pid is not None:
            try:
                os.kill(state.process.pid, sig)
            except ProcessLookupError:
                return  # already dead; its sentinel will fire

    def kill_workers(self, names: list[str], sig: signal.Signals) -> None:
        for name in names:
            self.kill_worker(name, sig)

    def murder_stale_workers(self) -> None:
        """Heartbeat check, once per tick: TERM a stale worker, KILL it on the next tick."""
        now = time.monotonic()
        for name, state in self.workers.items():
            if state.process is None:
                continue
            if state.term_sent_at is not None:
                log.error("%s ignored SIGTERM: killing it", name)
                self.kill_worker(name, signal.SIGKILL)
                continue
            age = self.heartbeat_age_s(name, now)
            if age > self.heartbeat_timeout_s:
                log.error(
                    "%s (pid %s) has not beaten for %.1f s: terminating it",
                    name,
                    state.process.pid,
                    age,
                )
                state.term_sent_at = now
                self.kill_worker(name, signal.SIGTERM)

    def heartbeat_age_s(self, name: str, now: float | None = None) -> float:
        state, block = self.workers[name], self.topology.stats[name]
        beat = block.get("heartbeat_monotonic_s")
        return (time.monotonic() if now is None else now) - max(beat, state.started_at)

    async def stop_workers(self, names: list[str], timeout_s: float, reason: str = "") -> bool:
        """SIGTERM, wait up to timeout_s for the exits, then SIGKILL. True if all left.
        With a `reason` they are not restarted when they exit, and the log says why."""
        for name in names:
            state = self.workers.get(name)
            if reason and state is not None and state.alive:
                state.stop_reason = reason
        self.kill_workers(names, signal.SIGTERM)
        if await self.wait_gone(names, timeout_s):
            return True
        left = [n for n in names if self.workers.get(n) and self.workers[n].alive]
        log.warning("killing workers that did not stop in %.1f s: %s", timeout_s, ", ".join(left))
        self.kill_workers(left, signal.SIGKILL)
        return await self.wait_gone(left, timeout_s)

    async def restart_workers(self, names: list[str], timeout_s: float, reason: str) -> None:
        """Stop these workers on purpose and start them again from their current specs."""
        await self.stop_workers(names, timeout_s, reason)
        self.spawn_workers(names)

    def reconfigure(self, policy: RestartPolicy, heartbeat_timeout_s: float) -> None:
        """A reload's [daemon] restart policy and heartbeat timeout, from now on."""
        self.policy, self.heartbeat_timeout_s = policy, heartbeat_timeout_s
        for state in self.workers.values():
            state.history.policy = policy

    async def wait_gone(self, names: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while any(self.workers.get(n) and self.workers[n].alive for n in names):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)  # reaping happens in the sentinel callbacks
        return True

    # -- state --------------------------------------------------------------------------

    def all_fresh(self) -> bool:
        """Every live worker beat recently (the systemd watchdog condition)."""
        now = time.monotonic()
        live = [n for n, s in self.workers.items() if s.alive]
        return bool(live) and all(
            self.heartbeat_age_s(n, now) < self.heartbeat_timeout_s for n in live
        )

    def all_started(self) -> bool:
        """Every worker has opened its stage since it was spawned: a source that cannot
        open its file fails before this holds, so READY never precedes an exit 5."""
        return all(
            s.alive and self.topology.stats[n].get(OPENED) >= s.started_at
            for n, s in self.workers.items()
            if not (s.finished or s.failed)
        )

    def settled(self) -> bool:
        """Every camera's own workers have finished or failed, and none is running: the
        shared workers (infer) have nothing left to do."""
        own = [s for n, s in self.workers.items() if self.topology.workers[n].camera]
        return all((s.finished or s.failed) and not s.alive and s.restart is None for s in own)


def _cause(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
