"""Transport benchmark: frames from one process to another through our ring and others.

In one run, a producer process (this one) hands `frames` frames of `shape` (uint8) to a
consumer process. Like a stream of new frames, each leg sends from a cycle of source
frames that spans STREAM_LLC_MULTIPLE times the last-level cache (sysfs, else
FALLBACK_LLC_BYTES), so no leg reads its frames from the cache. The legs:
  (a) our ring, one copy in: Producer.put(), the consumer reads the zero-copy lease;
  (b) our ring, zero-copy both ways: loan() + publish() without filling, the consumer
      reads only the metadata; this measures hand-offs per second (at least
      MIN_ZERO_COPY_HOPS of them, so that a short run still times something);
  (c) multiprocessing.Queue (spawn context) of the ndarray (pickled both ways);
  (d) the `arrayqueues` package (the bench extra; null, with a line saying so, when it
      is not installed);
  (e) single-core np.copyto, the physical reference for (a), twice: `memcpy_stream_fps`
      copies the same cycle of sources into destinations that span as much, so every
      copy reads and writes memory as (a) does (the ratio ring_copy_vs_memcpy uses it);
      `memcpy_cached_fps` copies one frame into one array over and over, which a 1080p
      frame (6.2 MB) lets run from a 32 MB L3 cache: cache bandwidth, not a stream's,
      kept for comparison with older reports (which also sent one cached frame).
Rings use policy block (lossless: the consumer checks that every frame arrived, in
order). Each leg first sends WARMUP_FRAMES frames (first touches of shared pages, queue
start-up); throughput is then `frames` over the consumer's receipt time from the last
warm-up frame to the last frame. The hop latency is measured in (a) on those frames,
from just before put() (so it includes the copy in) to the consumer's receipt, on
time.monotonic_ns(), which is system-wide.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import queue
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import ModuleType
from typing import Any

import numpy as np

from daemon.bench.extras import MissingExtra, require
from daemon.bench.memcpy_ref import (
    STREAM_LLC_MULTIPLE,
    last_level_cache_bytes,
    memcpy_cached_fps,
    memcpy_stream_fps,
    stream_frames,
)
from daemon.bench.report import print_report
from daemon.exitcodes import ExitCode
from daemon.ipc import (
    DEFAULT_SHM_DIR,
    FrameRing,
    FrameSpec,
    Policy,
    RingSpec,
    ShmSpaceError,
    attach_consumer,
    attach_producer,
    new_run_id,
)
from daemon.ipc.segment import check_free_space

RING_CAPACITY = 6
MIN_ZERO_COPY_HOPS = 5000
MIN_FRAMES = 10
DEFAULT_FRAMES = 1000
DEFAULT_SHAPE = (1080, 1920, 3)
GET_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
WARMUP_FRAMES = 2 * RING_CAPACITY
SPAWN = multiprocessing.get_context("spawn")
# arrayqueues builds its shared array and queues from the default context, whose locks
# refuse to travel to a spawn child; it is meant to be used with fork, so its consumer
# is forked (this process runs no asyncio loop and, at that point, no threads).
FORK = multiprocessing.get_context("fork")

Progress = Callable[[str], None]
# (every frame arrived in order, receipt ns of the last warm-up frame and of the last
# frame, hop latencies ns of the measured frames)
Result = tuple[bool, int, int, np.ndarray]


def _ring_consumer(path: str, total: int, ready: Event, conn: Connection) -> None:
    """Take `total` frames, touching only the metadata; report order, times, latency."""
    received = np.zeros(total, np.int64)
    latencies = np.zeros(total, np.int64)
    in_order = True
    with attach_consumer(path, "main") as consumer:
        ready.set()
        for i in range(total):
            lease = consumer.get(GET_TIMEOUT_S)
            if lease is None:
                in_order = False
                break
            with lease:
                meta = lease.meta
            received[i] = time.monotonic_ns()
            latencies[i] = received[i] - meta.timestamp_ns
            in_order &= meta.frame_id == i
    result: Result = (
        in_order,
        int(received[WARMUP_FRAMES - 1]),
        int(received[-1]),
        latencies[WARMUP_FRAMES:],
    )
    conn.send(result)
    conn.close()


def _queue_consumer(q: Any, total: int, ready: Event, conn: Connection) -> None:
    """Take `total` arrays from a queue-like object (get(timeout=...))."""
    ready.set()
    complete, warm_ns = True, 0
    for i in range(total):
        try:
            q.get(timeout=GET_TIMEOUT_S)
        except queue.Empty:
            complete = False
            break
        if i == WARMUP_FRAMES - 1:
            warm_ns = time.monotonic_ns()
    result: Result = (complete, warm_ns, time.monotonic_ns(), np.zeros(0, np.int64))
    conn.send(result)
    conn.close()


def _wait_started(ready: Event, proc: BaseProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.wait(0.05):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"benchmark consumer did not start (exit {proc.exitcode})")


def _run_pair(
    ctx: Any, target: Callable[..., None], handle: Any, frames: int, send: Callable[[int], None]
) -> tuple[float, np.ndarray]:
    """Start the consumer, send warm-up + `frames` frames; (frames/s, latencies ns)."""
    total = WARMUP_FRAMES + frames
    ready = ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    proc: BaseProcess = ctx.Process(target=target, args=(handle, total, ready, child), daemon=True)
    proc.start()
    child.close()
    try:
        _wait_started(ready, proc)
        for i in range(total):
            send(i)
        if not parent.poll(GET_TIMEOUT_S):
            raise RuntimeError("benchmark consumer did not report; it stalled or died")
        complete, warm_ns, end_ns, latencies = parent.recv()
        proc.join(GET_TIMEOUT_S)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    if not complete:
        raise RuntimeError(f"{target.__name__}: frames were lost or reordered")
    return frames / ((end_ns - warm_ns) / 1e9), latencies


def _ring_leg(stream: list[np.ndarray], frames: int, zero_copy: bool) -> tuple[float, np.ndarray]:
    frame = stream[0]
    spec = RingSpec(FrameSpec(frame.shape, frame.dtype.str), RING_CAPACITY, Policy.BLOCK)
    ring = FrameRing.create("bench-zc" if zero_copy else "bench-copy", spec, new_run_id())
    try:
        with attach_producer(ring.path) as producer:

            def put(i: int) -> None:
                producer.put(stream[i % len(stream)], i, time.monotonic_ns(), timeout=GET_TIMEOUT_S)

            def hand_off(i: int) -> None:
                loan = producer.loan(GET_TIMEOUT_S)
                if loan is None:
                    raise RuntimeError("a block ring returned no slot")
                loan.publish(i)

            return _run_pair(
                SPAWN, _ring_consumer, str(ring.path), frames, hand_off if zero_copy else put
            )
    finally:
        ring.close()


def _mp_queue_fps(stream: list[np.ndarray], frames: int) -> float:
    q = SPAWN.Queue(maxsize=RING_CAPACITY)
    try:
        fps, _ = _run_pair(
            SPAWN,
            _queue_consumer,
            q,
            frames,
            lambda i: q.put(stream[i % len(stream)], timeout=GET_TIMEOUT_S),
        )
    finally:
        q.close()
        q.join_thread()
    return fps


def _import_arrayqueues(say: Progress) -> ModuleType | None:
    try:
        module = require("arrayqueues", "the arrayqueues leg of `actiond bench transport`")
    except MissingExtra as exc:
        say(f"{exc}; that leg is skipped (arrayqueues_fps: null)")
        return None
    if not hasattr(np, "product"):
        # arrayqueues 1.4 calls np.product, removed in numpy 2.0; np.prod is the same.
        np.product = np.prod  # type: ignore[attr-defined]
    return module


def _arrayqueues_fps(stream: list[np.ndarray], frames: int, say: Progress) -> float | None:
    module = _import_arrayqueues(say)
    if module is None:
        return None
    slots_mb = stream[0].nbytes * (RING_CAPACITY + 1) / 1e6
    q = module.ArrayQueue(max_mbytes=slots_mb)

    def put(i: int) -> None:
        deadline = time.monotonic() + GET_TIMEOUT_S
        while True:
            try:
                q.put(stream[i % len(stream)])
                return
            except queue.Full:  # its only back-pressure: retry until a slot is read
                if time.monotonic() > deadline:
                    raise RuntimeError("arrayqueues stayed full; its consumer stalled") from None

    fps, _ = _run_pair(FORK, _queue_consumer, q, frames, put)
    return fps


def _ratio(a: float, b: float | None) -> float | None:
    return None if not b else round(a / b, 3)


def run_transport_bench(
    frames: int, shape: tuple[int, ...], progress: Progress | None = None
) -> dict[str, Any]:
    """Run every leg once and return the JSON-ready result (see the module docstring)."""
    say = progress or (lambda _msg: None)
    spec = RingSpec(FrameSpec(shape), RING_CAPACITY, Policy.BLOCK)
    check_free_space(DEFAULT_SHM_DIR, spec.total_bytes)  # before allocating anything big
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    hops = max(frames, MIN_ZERO_COPY_HOPS)
    llc_bytes = last_level_cache_bytes()
    stream = stream_frames(frame, llc_bytes)
    say(
        f"sending from {len(stream)} source frames of {shape} ({STREAM_LLC_MULTIPLE} x "
        f"the {llc_bytes >> 20} MiB last-level cache)"
    )
    say(f"memcpy: {frames} copies, one cached buffer ...")
    memcpy_cached = memcpy_cached_fps(frame, frames)
    say(f"memcpy: {frames} copies, streaming ...")
    memcpy = memcpy_stream_fps(stream, frames)
    say(f"ring, one copy: {frames} frames ...")
    ring_copy, latencies_ns = _ring_leg(stream, frames, zero_copy=False)
    say(f"ring, zero copy: {hops} hand-offs ...")
    zero_copy, _ = _ring_leg(stream, hops, zero_copy=True)
    say(f"arrayqueues: {frames} frames ...")
    arrayqueues = _arrayqueues_fps(stream, frames, say)  # forks: before any queue thread runs
    say(f"multiprocessing.Queue: {frames} frames ...")
    mp_queue = _mp_queue_fps(stream, frames)
    return {
        "ring_copy_fps": round(ring_copy, 1),
        "ring_zero_copy_hops_per_s": round(zero_copy, 1),
        "mp_queue_fps": round(mp_queue, 1),
        "arrayqueues_fps": None if arrayqueues is None else round(arrayqueues, 1),
        "memcpy_stream_fps": round(memcpy, 1),
        "memcpy_cached_fps": round(memcpy_cached, 1),
        "stream_frames": len(stream),
        "stream_bytes": len(stream) * frame.nbytes,
        "llc_bytes": llc_bytes,
        "ring_hop_latency_ms": _hop_latency_ms(latencies_ns),
        "ring_copy_vs_memcpy": _ratio(ring_copy, memcpy),
        "ring_copy_vs_memcpy_cached": _ratio(ring_copy, memcpy_cached),
        "ring_copy_vs_mp_queue": _ratio(ring_copy, mp_queue),
        "ring_copy_vs_arrayqueues": _ratio(ring_copy, arrayqueues),
        "shape": list(shape),
        "frames": frames,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
    }


def _hop_latency_ms(latencies_ns: np.ndarray) -> dict[str, float]:
    """The median and 99th percentile of the ring's hand-off latencies, in ms."""
    latencies_ms = latencies_ns / 1e6
    return {
        "p50": round(float(np.percentile(latencies_ms, 50)), 3),
        "p99": round(float(np.percentile(latencies_ms, 99)), 3),
    }


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: use integers like 1080,1920,3") from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"shape {text!r}: every dimension must be > 0")
    return shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help=f"frames per leg (default {DEFAULT_FRAMES}, at least {MIN_FRAMES})",
    )
    parser.add_argument(
        "--shape",
        type=_shape,
        default=DEFAULT_SHAPE,
        help="uint8 frame shape, comma-separated (default 1080,1920,3)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")


def run(args: argparse.Namespace) -> int:
    if args.frames < MIN_FRAMES:
        print(f"actiond bench transport: --frames must be at least {MIN_FRAMES}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        result = run_transport_bench(
            args.frames,
            args.shape,
            lambda msg: print(f"bench transport: {msg}", file=sys.stderr, flush=True),
        )
    except ShmSpaceError as exc:
        print(f"actiond bench transport: {exc}", file=sys.stderr)
        return ExitCode.SHM
    except MemoryError:
        print(
            f"actiond bench transport: not enough memory for frames of shape {args.shape}; "
            "choose a smaller --shape",
            file=sys.stderr,
        )
        return ExitCode.CONFIG
    print_report(result, args.json)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """`actiond bench transport` as a stand-alone entry point."""
    parser = argparse.ArgumentParser(
        prog="actiond bench transport", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
