"""The supervisor's lifecycle: boot, the tick loop, signals, reload, staged shutdown.

Signal handlers only set events (loop.add_signal_handler); the work happens in the main
coroutine. Shutdown is a sequence of bounded stages whose budgets sum to less than the
systemd unit's TimeoutStopSec, so systemd never has to SIGKILL us mid-cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from daemon.config import ConfigError
from daemon.exitcodes import ExitCode
from daemon.ipc import RunLock, clean_stale, new_run_id
from daemon.ipc.segment import segment_name
from daemon.outputs.metrics import MetricsSnapshot, snapshot_on_loop
from daemon.stages.contract import ModelError
from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.availability import camera_availability
from daemon.supervisor.boot import Boot
from daemon.supervisor.metrics_view import metrics_snapshot
from daemon.supervisor.outputs import Outputs, OutputsError, open_outputs
from daemon.supervisor.reload import ALL_KINDS, ReloadPlan, kept_value, plan_reload
from daemon.supervisor.restart import RestartPolicy
from daemon.supervisor.status import RateMeter, camera_stats, status_line
from daemon.supervisor.topology import Topology
from daemon.systemd import SystemdNotifier

log = logging.getLogger(__name__)

TICK_S = 1.0
# Shutdown stages (seconds). Their sum must stay below the unit's TimeoutStopSec (30 s).
SOURCE_STOP_S = 3.0  # sources stop reading
DRAIN_S = 3.0  # frames already in the rings reach the end
WORKER_STOP_S = 4.0  # SIGTERM to the rest, then SIGKILL
KILL_WAIT_S = 2.0  # reaping after SIGKILL
OUTPUTS_STOP_S = 6.0  # events drained, metrics endpoint, MQTT offline + flush
SHUTDOWN_BUDGET_S = SOURCE_STOP_S + DRAIN_S + OUTPUTS_STOP_S + WORKER_STOP_S + KILL_WAIT_S


class Supervisor:
    """Owns the topology and the arbiter for one run of the daemon."""

    def __init__(self, boot: Boot, reloader: Callable[[Path], Boot] | None = None) -> None:
        self.boot = boot
        self._reloader = reloader
        self.run_id = new_run_id()
        shm_dir = Path(boot.config.daemon.shm_dir)
        self.events_socket = shm_dir / segment_name(self.run_id, "events.sock")
        self.topology = self._new_topology(boot)
        self.arbiter = Arbiter(
            self.topology,
            RestartPolicy.from_config(boot.config.daemon),
            boot.config.daemon.heartbeat_timeout_s,
            self._camera_failed,
        )
        # Unset NOTIFY_SOCKET so workers cannot inherit it: only the main PID notifies.
        self.notifier = SystemdNotifier(unset_environment=True)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._ready = False
        self._last_status_s = 0.0
        self._meter = RateMeter()
        self.outputs = AsyncExitStack()  # events, MQTT, metrics: closed LIFO at shutdown
        self._open: Outputs | None = None

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or until every camera finished or failed."""
        loop = asyncio.get_running_loop()
        # First: a SIGTERM while the rings are made or the outputs open stops the run
        # cleanly below instead of killing it with its segments left in shm_dir.
        for sig, handler in (
            (signal.SIGTERM, self.handle_term),
            (signal.SIGINT, self.handle_int),
            (signal.SIGHUP, self.handle_hup),
        ):
            loop.add_signal_handler(sig, handler)
        # Held for the whole run: the kernel drops it when we die, so a start in any PID
        # namespace sharing shm_dir can tell our files from a dead run's.
        run_lock = RunLock.acquire(self.boot.config.daemon.shm_dir, self.run_id)
        removed = clean_stale(self.boot.config.daemon.shm_dir)
        if removed:
            log.info("removed %d shared-memory segment(s) left by a dead run", len(removed))
        try:
            self.topology.build()
            # Scrapes build their snapshot on this loop: no thread reads a topology the
            # loop is changing.
            snapshot = snapshot_on_loop(loop, self._metrics_snapshot)
            self._open = await open_outputs(
                self.outputs, self.boot, self.events_socket, snapshot, self.run_id
            )
            if not self._stop.is_set():  # no worker to start and stop again
                self.arbiter.spawn_workers()
                await self._main_loop()
            return await self.shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.outputs.aclose()  # idempotent: already closed after a clean stop
            self.topology.close()
            self.notifier.close()
            run_lock.release()  # last: our files are gone

    # -- signals: handlers only set events ------------------------------------------

    def handle_term(self) -> None:
        log.info("SIGTERM: shutting down")
        self._stop.set()

    def handle_int(self) -> None:
        log.info("SIGINT: shutting down")
        self._stop.set()

    def handle_hup(self) -> None:
        log.info("SIGHUP: reloading %s", self.boot.config_path)
        self._reload.set()

    # -- the tick loop ----------------------------------------------------------------

    async def _main_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), TICK_S)
            except TimeoutError:
                pass  # a tick passed without a stop request: do the periodic duties
            if self._reload.is_set():
                self._reload.clear()
                await self.reload()
            self.tick()
            if self.arbiter.settled():
                log.info("%s", self._settled_reason())
                break

    def tick(self) -> None:
        self.arbiter.murder_stale_workers()
        if self._open is not None:
            for camera, up in camera_availability(self.topology, self.arbiter).items():
                self._open.set_camera_available(camera, up)
        alive = set(self.arbiter.cameras()) - self.arbiter.failed_cameras
        if not self._ready and alive and self.arbiter.all_started() and not self.arbiter.settled():
            self._ready = True
            log.info("pipeline running: %d workers", len(self.arbiter.workers))
            self.notifier.ready("running")
        if self._ready and self.arbiter.all_fresh():
            self.notifier.watchdog()  # only when every heartbeat is fresh
        now = time.monotonic()
        if now - self._last_status_s >= self.boot.config.daemon.status_interval_s:
            self._last_status_s = now
            line = status_line(self.topology, self.arbiter, self._meter)
            log.info("%s", line)
            self.notifier.status(line)
            if self._open is not None:
                self._open.publish_stats(
                    {
                        "status": line,
                        "failed_cameras": sorted(self.arbiter.failed_cameras),
                        "cameras": camera_stats(self.topology, self.arbiter),
                    }
                )

    def _settled_reason(self) -> str:
        failed = sorted(self.arbiter.failed_cameras)
        if not failed:
            return "every camera's source has ended (end of file): stopping"
        if set(failed) >= set(self.arbiter.cameras()):
            return f"every camera has failed ({', '.join(failed)}): stopping"
        return f"every camera has ended or failed (failed: {', '.join(failed)}): stopping"

    def _new_topology(self, boot: Boot) -> Topology:
        return Topology(
            boot.config,
            self.run_id,
            boot.model_path,
            boot.facts,
            str(self.events_socket),
            boot.result_spec,
        )

    def _metrics_snapshot(self) -> MetricsSnapshot:
        """Built on the loop at scrape time (see snapshot_on_loop)."""
        sinks = self._open.sink_views() if self._open is not None else []
        intake = self._open.intake if self._open is not None else None
        return metrics_snapshot(self.arbiter, self.boot.providers, sinks, intake)

    def _camera_failed(self, camera: str) -> None:
        running = [c for c in self.arbiter.cameras() if c not in self.arbiter.failed_cameras]
        if running:
            log.error("camera %s is marked failed; still running: %s", camera, ", ".join(running))
        else:
            log.error("camera %s is marked failed; no camera is left running", camera)

    # -- reload -------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: apply every changed section (see reload.SECTION_EFFECTS); the event
        socket stays open throughout, so no event is lost while outputs are re-opened."""
        if self._reloader is None:
            return
        try:
            new = self._reloader(self.boot.config_path)
        except (ConfigError, ModelError) as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        plan = plan_reload(self.boot, new)
        for key in plan.kept:
            log.warning(
                "reload: %s changed, which takes effect only when the daemon is "
                "restarted (systemctl restart actiond); still using %s",
                key,
                kept_value(self.boot, key),
            )
        if plan.empty:
            log.info("reload: nothing else changed in %s", self.boot.config_path)
            return
        self.notifier.reloading()
        try:
            if self._open is not None:
                await self._open.reconfigure(plan.boot, plan.sinks, plan.metrics)
        except OutputsError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            self.notifier.ready("reload failed")
            return
        log.info("reload: %s changed: %s", ", ".join(plan.changed), plan.effects())
        await self._apply_to_workers(plan)
        self.boot = plan.boot
        if plan.live:
            daemon = plan.boot.config.daemon
            logging.getLogger().setLevel(daemon.log_level.upper())
            self.arbiter.reconfigure(RestartPolicy.from_config(daemon), daemon.heartbeat_timeout_s)
        self.notifier.ready("reloaded")

    async def _apply_to_workers(self, plan: ReloadPlan) -> None:
        config = plan.boot.config
        if plan.rebuild:
            await self.arbiter.stop_workers(list(self.arbiter.workers), WORKER_STOP_S, "the reload")
            self.topology.close()
            self.topology = self._new_topology(plan.boot)
            self.topology.build()
            self.arbiter.topology = self.topology
            self.arbiter.workers.clear()
            self.arbiter.failed_cameras.clear()
            self.arbiter.spawn_workers()
            return
        # Every spec gets the new config (a worker restarted later runs with it too).
        restart = {
            name for camera in plan.cameras for name in self.topology.respec_camera(camera, config)
        }
        self.topology.respec(config)
        for name, spec in self.topology.workers.items():
            if ALL_KINDS in plan.worker_kinds or spec.kind in plan.worker_kinds:
                restart.add(name)
        if restart:
            await self.arbiter.restart_workers(sorted(restart), WORKER_STOP_S, "the reload")

    # -- shutdown -----------------------------------------------------------------------

    async def shutdown(self) -> int:
        """Bounded stages: sources, drain, workers, outputs. Returns the exit code."""
        self.notifier.stopping()
        arbiter = self.arbiter
        arbiter.stopping = True
        names = list(self.topology.workers)
        # The origins (sources) stop first, so what they already sent drains through.
        sources = [n for n in names if self.topology.kind_of(n).origin]
        await arbiter.stop_workers(sources, SOURCE_STOP_S)
        await self._drain(DRAIN_S)
        # Workers before outputs: a stopping overlay sends the end of open events.
        rest = [n for n in names if n not in sources]
        if not await arbiter.stop_workers(rest, WORKER_STOP_S):
            await arbiter.wait_gone(rest, KILL_WAIT_S)
        try:
            await asyncio.wait_for(self.outputs.aclose(), OUTPUTS_STOP_S)
        except TimeoutError:
            log.warning("outputs did not close within %.0f s", OUTPUTS_STOP_S)
        cameras = set(arbiter.cameras())
        if cameras and cameras <= arbiter.failed_cameras:
            return ExitCode.ALL_CAMERAS_FAILED
        return ExitCode.OK

    async def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(r.stats().occupancy == 0 for r in self.topology.rings.values()):
                return
            await asyncio.sleep(0.05)
