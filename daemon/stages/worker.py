"""The worker process: one stage of one camera (or a shared infer replica).

The supervisor spawns `worker_main(spec, stage class)` in a spawn-context process. The worker attaches
its rings and its stats block by path, runs its stage's step() until SIGTERM, and beats
its heartbeat in the stats block. A step is short (ring waits are bounded); the only long
waits (a camera reconnecting, a model loading) run inside `Heartbeat.blocking()`, during
which a helper thread keeps beating — SIGSTOP or a real hang stops both, so the
supervisor still sees a stale heartbeat.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from setproctitle import setproctitle, setthreadtitle

from daemon.config import Config
from daemon.exitcodes import ExitCode
from daemon.ipc import Producer, RingTimeout, SlotLoan
from daemon.ipc.stats import StatsBlock, histogram_fields
from daemon.logs import setup_logging

log = logging.getLogger(__name__)

STEP_WAIT_S = 0.25  # longest ring wait inside one step: bounds the heartbeat period
BEAT_PERIOD_S = 0.5  # helper thread's beat period during blocking sections

OPENED = "opened_monotonic_s"  # when open() returned: the stage is up, not just beating
COMMON_FIELDS = (
    "frames_in_total",
    "frames_out_total",
    "busy_seconds_total",
    "finished",
    OPENED,
    *histogram_fields("processing_seconds"),
)


ArgsT = TypeVar("ArgsT")
OpenedT = TypeVar("OpenedT")


@dataclass(frozen=True)
class WorkerSpec(Generic[ArgsT]):
    """Everything a worker process needs; picklable for the spawn context."""

    kind: str  # a stage kind of daemon.stages.registry
    name: str  # unique, e.g. "demo.source" or "infer.1"
    camera: str  # "" for workers shared by all cameras
    replica: int
    stats_path: str
    rings: dict[str, str]  # port -> ring path ("<port>:<camera>" for a shared
    # worker's per-camera outputs)
    config: Config
    args: ArgsT  # the stage's own arguments (its kind's dataclass)
    # port -> this worker's producer index on the port's ring (rings with several producers)
    slots: dict[str, int] = field(default_factory=dict)

    def slot(self, port: str) -> int:
        return self.slots.get(port, 0)

    def camera_rings(self, port: str) -> dict[str, str]:
        """camera -> ring path of a shared worker's per-camera output `port`."""
        prefix = f"{port}:"
        return {
            role[len(prefix) :]: path
            for role, path in self.rings.items()
            if role.startswith(prefix)
        }


class StageFatal(Exception):
    """An error a restart cannot fix (a missing file, a model that does not fit)."""


class Stage(Protocol):
    """What a stage implements; the worker loop drives it."""

    def open(self) -> None: ...

    def step(self, stop: threading.Event) -> bool:
        """Do one unit of work (bounded time). False: the stage has finished."""
        ...

    def close(self) -> None: ...


class Heartbeat:
    """Beats the stats block from the main loop, or from a thread during blocking calls."""

    def __init__(self, stats: StatsBlock) -> None:
        self._stats = stats
        self._blocking = threading.Event()
        self._stop = threading.Event()
        self._on_beat: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._stats.beat()
        self._thread.start()

    def beat(self) -> None:
        self._stats.beat()

    @contextmanager
    def blocking(self, on_beat: Callable[[], None] | None = None) -> Iterator[None]:
        """Beat from the helper thread while the body blocks; `on_beat` runs with each
        beat (e.g. to publish a reconnecting source's counters)."""
        self._on_beat = on_beat
        self._blocking.set()
        try:
            yield
        finally:
            self._blocking.clear()
            self._on_beat = None

    def _run(self) -> None:
        while not self._stop.wait(BEAT_PERIOD_S):
            if self._blocking.is_set():
                self._stats.beat()
                on_beat = self._on_beat
                if on_beat is not None:
                    on_beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * BEAT_PERIOD_S)


StageFactory = Callable[["WorkerSpec[Any]", StatsBlock, Heartbeat], Stage]


def run_stage(spec: WorkerSpec[Any], factory: StageFactory) -> int:
    """Worker body: attach, open, step until SIGTERM or the stage finishes, close."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C reaches the whole process group; the supervisor decides how to stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The supervisor's format (timestamps on a terminal, priorities for journald), and a
    # title that `ps` and `top` show instead of "python3 -c from multiprocessing.spawn".
    setup_logging(spec.config.daemon.log_level)
    setproctitle(process_title(spec))
    setthreadtitle(spec.name)  # `top` shows this 15-character name: "demo.source"
    stats = StatsBlock.attach(spec.stats_path)
    heartbeat = Heartbeat(stats)
    heartbeat.start()
    stage = factory(spec, stats, heartbeat)
    try:
        with heartbeat.blocking():
            stage.open()
        stats.set(OPENED, time.monotonic())
        parent = os.getppid()
        while not stop.is_set():
            heartbeat.beat()
            if os.getppid() != parent:
                # The supervisor was SIGKILLed: nobody will reap or restart us. Stop.
                log.error("%s: supervisor (pid %d) is gone; exiting", spec.name, parent)
                break
            if not stage.step(stop):
                log.info("%s: finished", spec.name)
                stats.set("finished", 1)
                break
    except StageFatal as exc:
        log.error("%s: %s", spec.name, exc)
        return ExitCode.BOOT
    finally:
        stage.close()
        heartbeat.stop()
        stats.close()
    return ExitCode.OK


def process_title(spec: WorkerSpec[Any]) -> str:
    """What `ps` shows for a worker: its stage, and its camera unless it serves them all."""
    if spec.camera:
        return f"actiond: {spec.kind} of camera {spec.camera} ({spec.name})"
    return f"actiond: {spec.kind} replica {spec.replica} for all cameras ({spec.name})"


def worker_main(spec: WorkerSpec[Any], factory: StageFactory) -> None:
    """Target of every worker process (spawn context: importable, picklable args).

    The stage class travels pickled by reference, so a spawned worker imports its own
    stage's module and what that needs, not every stage's: onnxruntime stays out of the
    source, motion and overlay workers (about 20 MiB each).
    """
    sys.exit(int(run_stage(spec, factory)))


def timed(stats: StatsBlock, started_s: float) -> None:
    """Account one processed item that started at `started_s` (perf_counter)."""
    elapsed = time.perf_counter() - started_s
    stats.observe("processing_seconds", elapsed)
    stats.add("busy_seconds_total", elapsed)
    stats.add("frames_out_total")


def opened(endpoint: OpenedT | None, what: str) -> OpenedT:
    """What a stage's open() set (a ring endpoint, the display outputs). run_stage calls
    step() only after open() returned, so only close() can meet one unset (open() failed
    part way); anything else finding it unset is a bug in the stage."""
    assert endpoint is not None, f"{what} used before the stage's open()"
    return endpoint


def loan_slot(producer: Producer, stop: threading.Event, heartbeat: Heartbeat) -> SlotLoan | None:
    """A slot to fill: retries a full `block` ring (beating) until it frees up or we stop.

    None if a drop policy discarded the frame (counted by the ring) or we are stopping.
    """
    while True:
        try:
            return producer.loan(timeout=STEP_WAIT_S)
        except RingTimeout:
            if stop.is_set():
                return None
            heartbeat.beat()
