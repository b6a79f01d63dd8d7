"""The stage-against-bare harness both `bench inference` cases share: start one stage's
real worker (worker_main, spawn context, rings made by the real Topology) and a process
that feeds its input ring, read every result out of the cameras' results rings as the
overlay would, and time them after a warm-up."""

from __future__ import annotations

import multiprocessing
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from daemon.exitcodes import ExitCode
from daemon.ipc import Lease
from daemon.ipc.wakeup import drain
from daemon.stages.worker import worker_main
from daemon.supervisor.topology import Topology

CTX = multiprocessing.get_context("spawn")
RESULT_TIMEOUT_S = 60.0
WARMUP_FRACTION = 0.15  # results not timed at the start of a stage run
BATCH_GAP_S = 0.0005  # results of one batch come out closer together than this
POLL_MS = 100  # results reader: how often to look whether the worker died
# Called with each result's lease before it is released (e.g. to read the record).
OnResult = Callable[[Lease], None]


@dataclass(frozen=True)
class StageRun:
    """What one stage run gave: every result's arrival time and the results rings' drops."""

    arrivals: list[float]
    dropped: int


def run_stage(
    topo: Topology,
    worker_name: str,
    stage: type[Any],
    feed: Callable[[Any], None],
    job: object,
    expected: int,
    on_result: OnResult | None = None,
) -> StageRun:
    """Runs `stage` as worker `worker_name` of the built `topo` while `feed(job)` fills its
    input ring in another process; returns once `expected` results came out (each handed
    to `on_result` first, if given). Raises RuntimeError if they did not, or if the worker
    did not exit cleanly."""
    procs: list[BaseProcess] = []
    try:
        worker = CTX.Process(
            target=worker_main, args=(topo.workers[worker_name], stage), name=worker_name
        )
        producer = CTX.Process(target=feed, args=(job,), name="bench-feed")
        procs = [worker, producer]
        for proc in procs:
            proc.start()
        arrivals = read_results(topo, expected, worker, on_result)
        producer.join(RESULT_TIMEOUT_S)
        worker.join(RESULT_TIMEOUT_S)
        if worker.exitcode != ExitCode.OK:
            raise RuntimeError(f"{worker_name} worker exited with {worker.exitcode}")
        rings = [topo.rings[f"{c.name}.results"] for c in topo.config.cameras]
        return StageRun(arrivals, sum(sum(r.stats().drops.values()) for r in rings))
    finally:
        for proc in procs:  # only after a failure are they still running
            if proc.is_alive():
                proc.kill()
                proc.join()


def read_results(
    topo: Topology, expected: int, worker: BaseProcess, on_result: OnResult | None = None
) -> list[float]:
    """Arrival times (perf_counter) of every result, read as the overlay would."""
    consumers = [topo.rings[f"{c.name}.results"].consumer("overlay") for c in topo.config.cameras]
    poller = select.poll()
    for consumer in consumers:
        poller.register(consumer.fileno(), select.POLLIN)
    arrivals: list[float] = []
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    try:
        while len(arrivals) < expected and time.monotonic() < deadline:
            if not poller.poll(POLL_MS) and not worker.is_alive():
                break
            for consumer in consumers:
                drain(consumer.fileno())  # wake-ups: every ring is looked at anyway
                while (lease := consumer.try_get()) is not None:
                    if on_result is not None:
                        on_result(lease)
                    lease.release()
                    arrivals.append(time.perf_counter())
                    deadline = time.monotonic() + RESULT_TIMEOUT_S
    finally:
        for consumer in consumers:
            consumer.close()
    if len(arrivals) < expected:
        raise RuntimeError(
            f"only {len(arrivals)} of {expected} results came out of the "
            f"results rings (worker exit code {worker.exitcode})"
        )
    return arrivals


def window_fps(arrivals: list[float]) -> float:
    """Results/s after the warm-up, over whole batches: the window opens at the last
    result of a batch, so no batch is half inside it."""
    times = np.asarray(arrivals)
    batch_ends = np.flatnonzero(np.diff(times) > BATCH_GAP_S)
    skip = int(len(times) * WARMUP_FRACTION)
    starts = batch_ends[batch_ends >= skip]
    start = int(starts[0]) if len(starts) else 0
    last = len(times) - 1
    if last <= start:
        raise RuntimeError("too few results to time: raise --clips")
    return (last - start) / float(times[last] - times[start])
