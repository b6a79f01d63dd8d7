"""Soak benchmark: one daemon for M minutes, watched for slow leaks and restarts.

The daemon runs the default config's shape (the bundled sample clip looping at real time
as camera "demo", Prometheus metrics on, MQTT off, MJPEG off) and is sampled every
`interval` seconds: RSS and open fds of every process, the entries in its shm dir, the
worker restarts it logged, worker pid changes, the events its overlays emitted and the
frames they drew. /metrics is scraped at each sample, as Prometheus would, so a leak in
the scrape path shows too. Growth is measured from the first sample after a warm-up
(first minutes: allocator arenas, model sessions and codec buffers settle) to the end.
Targets: every process's RSS grows by less than RSS_GROWTH_LIMIT, fds, shm entries,
restarts and pid changes do not grow at all, frames keep flowing in every interval,
every scrape answers, and the daemon stops cleanly with an empty shm dir. The exit status
is 0 when every target is met, 1 (FAILURE) otherwise; the JSON says which.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

from daemon.bench.procstats import (
    BenchDaemon,
    BenchError,
    Clip,
    Snapshot,
    count_restarts,
    find_clips,
    free_port,
)
from daemon.bench.report import print_report
from daemon.config import ASSETS_DIR
from daemon.exitcodes import ExitCode
from daemon.ipc.stats import PID
from daemon.progress import Progress

DEFAULT_INTERVAL_S = 10.0
MIN_INTERVAL_S = 1.0
WARMUP_MAX_S = 60.0
WARMUP_FRACTION = 0.2  # of the soak, for soaks shorter than five warm-ups
RSS_GROWTH_LIMIT = 1.05
SCRAPE_TIMEOUT_S = 5.0
MIB = 1024 * 1024


def soak_sections(model: str, metrics_port: int) -> dict[str, dict[str, object]]:
    sections: dict[str, dict[str, object]] = {
        "daemon": {"status_interval_s": 5.0},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "mqtt": {"enabled": False},
        "display": {"mjpeg_listen": ""},
    }
    if model:
        sections["inference"] = {"model": model}
    return sections


def demo_camera(clip: Clip) -> dict[str, object]:
    """The default config's camera: a clip looping at real time, latest frame wins."""
    return {
        "name": "demo",
        "source": str(clip.path),
        "realtime": True,
        "loop": True,
        "ring_policy": "drop_oldest",
    }


def scrape(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
        ) as resp:
            return resp.status == 200 and b"actiond_" in resp.read()
    except (urllib.error.URLError, OSError):
        return False


class SoakLog:
    """The samples of one soak and what is derived from them."""

    def __init__(self) -> None:
        self.samples: list[Snapshot] = []
        self.scrapes_ok = 0
        self.scrapes_failed = 0

    def add(self, sample: Snapshot, scraped: bool) -> None:
        self.samples.append(sample)
        self.scrapes_ok += scraped
        self.scrapes_failed += not scraped

    def baseline(self, warmup_s: float) -> Snapshot:
        """The first sample at or after the warm-up (the last one if the soak is shorter)."""
        start = self.samples[0].at_s
        return next((s for s in self.samples if s.at_s - start >= warmup_s), self.samples[-1])

    def pid_changes(self) -> int:
        changes = 0
        for before, after in pairwise(self.samples):
            for name, stats in after.workers.items():
                old = before.workers.get(name, {}).get(PID, 0)
                changes += bool(old) and stats.get(PID, 0) != old
        return changes

    def stalled_intervals(self) -> int:
        """Intervals in which some camera's overlay drew no frame."""
        stalled = 0
        for before, after in pairwise(self.samples):
            overlays = [n for n in after.workers if n.endswith(".overlay")]
            stalled += any(
                after.counter(n, "frames_out_total") <= before.counter(n, "frames_out_total")
                for n in overlays
            )
        return stalled


@dataclass(frozen=True)
class ProcessGrowth:
    """One process from the baseline to the end of the soak."""

    pid: int
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float
    rss_growth: float  # end / start
    fds_start: int
    fds_end: int
    fds_delta: int
    rss_mb_series: list[float | None]  # at each of the report's sample_times_s (null: not alive)


@dataclass(frozen=True)
class SoakReport:
    """The result of bench soak; `ok` holds one verdict per target."""

    minutes: float
    warmup_s: float
    samples: int
    baseline_at_s: float
    processes: dict[str, ProcessGrowth]
    shm_entries_start: int
    shm_entries_end: int
    events_total: int
    frames_drawn: int
    scrapes_ok: int
    rss_growth_max: float
    fds_delta: int
    shm_entries_delta: int
    restarts: int
    pid_changes: int
    stalled_intervals: int
    scrapes_failed: int
    rss_growth_limit: float
    ok: dict[str, bool]
    all_ok: bool
    exit_code: int
    leftovers: list[str]
    interval_s: float
    sample_times_s: list[float]


def process_growth(base: Snapshot, samples: list[Snapshot]) -> dict[str, ProcessGrowth]:
    end = samples[-1]
    out = {}
    for label, last in sorted(end.procs.items()):
        first = base.procs.get(label)
        if first is None:
            continue  # born after the baseline (a restart, counted elsewhere)
        peak = max(s.procs[label].rss_bytes for s in samples if label in s.procs)
        series = [
            round(s.procs[label].rss_bytes / MIB, 1) if label in s.procs else None for s in samples
        ]
        out[label] = ProcessGrowth(
            last.pid,
            round(first.rss_bytes / MIB, 1),
            round(last.rss_bytes / MIB, 1),
            round(peak / MIB, 1),
            round(last.rss_bytes / first.rss_bytes, 4),
            first.fds,
            last.fds,
            last.fds - first.fds,
            series,
        )
    return out


def summarise(
    log: SoakLog,
    warmup_s: float,
    interval_s: float,
    restarts: int,
    exit_code: int,
    leftovers: list[str],
) -> SoakReport:
    base, last, zero = log.baseline(warmup_s), log.samples[-1], log.samples[0].at_s
    procs = process_growth(base, log.samples)
    overlays = [n for n in last.workers if n.endswith(".overlay")]
    frames = int(sum(last.counter(n, "frames_out_total") for n in overlays))
    growth = max((p.rss_growth for p in procs.values()), default=1.0)
    shm_delta = last.shm_entries - base.shm_entries
    pid_changes, stalled = log.pid_changes(), log.stalled_intervals()
    ok = {
        "rss": growth < RSS_GROWTH_LIMIT,
        "fds": all(p.fds_delta <= 0 for p in procs.values()),
        "shm_entries": shm_delta <= 0,
        "restarts": restarts == 0 and pid_changes == 0,
        "frames_flowing": stalled == 0 and frames > 0,
        "metrics": log.scrapes_failed == 0,
        "clean_exit": exit_code == 0 and not leftovers,
    }
    return SoakReport(
        round((last.at_s - zero) / 60, 3),
        warmup_s,
        len(log.samples),
        round(base.at_s - zero, 1),
        procs,
        base.shm_entries,
        last.shm_entries,
        int(sum(last.counter(n, "events_total") for n in overlays)),
        frames,
        log.scrapes_ok,
        growth,
        sum(p.fds_delta for p in procs.values()),
        shm_delta,
        restarts,
        pid_changes,
        stalled,
        log.scrapes_failed,
        RSS_GROWTH_LIMIT,
        ok,
        all(ok.values()),
        exit_code,
        leftovers,
        round(interval_s, 2),
        [round(s.at_s - zero, 1) for s in log.samples],
    )


def soak(
    clip: Clip, seconds: float, interval_s: float, warmup_s: float, model: str, shown: Progress
) -> SoakReport:
    """Loop `clip` through one daemon for `seconds`, sampled every `interval_s`; `shown`
    redraws one line per sample with the time left."""
    port = free_port()
    log = SoakLog()
    with BenchDaemon(soak_sections(model, port), [demo_camera(clip)]) as daemon:
        shown.step(1, f"{clip.path.name}, {seconds / 60:g} min")
        shown.status("starting the daemon", left_s=seconds)
        daemon.start()
        daemon.wait_flowing()
        started = daemon.snapshot().at_s
        while True:
            scraped = scrape(port)
            log.add(daemon.snapshot(), scraped)
            elapsed = log.samples[-1].at_s - started
            if elapsed >= seconds:
                break
            shown.status(sample_line(log.samples[-1], elapsed), left_s=seconds - elapsed)
            daemon.hold(min(interval_s, seconds - elapsed))
        shown.status("stopping the daemon", left_s=0.0)
        exit_code, leftovers = daemon.stop()
        restarts = count_restarts(daemon.log_text())
    shown.finish(f"{len(log.samples)} samples")
    return summarise(log, warmup_s, interval_s, restarts, exit_code, leftovers)


def sample_line(sample: Snapshot, elapsed_s: float) -> str:
    rss = sum(p.rss_bytes for p in sample.procs.values()) / MIB
    fds = sum(p.fds for p in sample.procs.values())
    return (
        f"{elapsed_s:.0f} s: rss {rss:.1f} MiB in {len(sample.procs)} processes, "
        f"fds {fds}, shm entries {sample.shm_entries}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="how long to run (fractions allowed, e.g. 0.5)"
    )
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between samples"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=-1.0,
        help=f"seconds before the growth baseline (default: "
        f"{WARMUP_FRACTION:g} of the soak, at most {WARMUP_MAX_S:g})",
    )
    parser.add_argument(
        "--clip", type=Path, default=None, help="clip to loop (default: the bundled sample clip)"
    )
    parser.add_argument("--model", default="", help="ONNX model (default: the bundled one)")
    parser.add_argument("--json", action="store_true", help="print JSON only")


def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    if seconds < 2 * MIN_INTERVAL_S or args.interval < MIN_INTERVAL_S:
        print(
            f"actiond bench soak: need --minutes >= {2 * MIN_INTERVAL_S / 60:.3f} and "
            f"--interval >= {MIN_INTERVAL_S:g}",
            file=sys.stderr,
        )
        return ExitCode.CONFIG
    warmup_s = args.warmup if args.warmup >= 0 else min(WARMUP_MAX_S, WARMUP_FRACTION * seconds)
    # A short soak still needs a few samples after its warm-up to say anything.
    interval_s = min(args.interval, max(MIN_INTERVAL_S, (seconds - warmup_s) / 4))
    model = str(Path(args.model).resolve()) if args.model else ""
    try:  # a bad --clip or --model: the command line's fault
        if args.model and not Path(args.model).is_file():
            raise BenchError(f"--model {args.model}: no such file; pass an ONNX model file")
        clip = find_clips([args.clip or ASSETS_DIR])[0]
    except BenchError as exc:
        print(f"actiond bench soak: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    shown = Progress.on_terminal("bench soak", 0, quiet=args.json)
    try:
        result = soak(clip, seconds, interval_s, warmup_s, model, shown)
    except BenchError as exc:
        shown.close()
        print(f"actiond bench soak: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    fields = asdict(result)
    print_report(fields, args.json)
    failed = [target for target, ok in result.ok.items() if not ok]
    if failed:
        print(
            f"actiond bench soak: targets missed: {', '.join(failed)} (exit status "
            f"{result.exit_code}, shm leftovers {result.leftovers or 'none'})",
            file=sys.stderr,
        )
        return ExitCode.FAILURE
    return ExitCode.OK
