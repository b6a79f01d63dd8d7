"""What one run of `actiond bench load` measured, from two snapshots of the running daemon
(daemon.bench.procstats): per camera the frame rates and ring drops, per process CPU and
memory, the machine's other load; and the report as text."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from daemon.bench.procstats import Clip, Snapshot

CAMERA_RINGS = ("frames", "view", "results")
MIB = 1024 * 1024


@dataclass(frozen=True)
class CameraReport:
    """One camera over the measurement window."""

    clip: str
    native_fps: float
    source_fps: float
    overlay_fps: float
    overlay_ratio: float
    drops: dict[str, dict[str, int]]  # ring -> reason -> frames (reasons with none left out)
    drops_total: int


@dataclass(frozen=True)
class ProcessReport:
    """One process over the measurement window: CPU % of one core, RSS at the end."""

    pid: int
    cpu_pct: float
    rss_mb: float
    pss_mb: float  # shared pages divided among their sharers: these add up


@dataclass(frozen=True)
class LoadReport:
    """One run of bench load."""

    cameras: int
    replicas: int
    holds: bool
    hold_ratio: float
    seconds: float
    warmup_s: float
    per_camera: dict[str, CameraReport]
    shared_drops: dict[str, dict[str, int]]
    processes: dict[str, ProcessReport]
    totals: dict[str, float]
    machine: dict[str, float]
    restarts: int
    exit_code: int
    leftovers: list[str]
    stage_cpu_pct: dict[str, float] = field(default_factory=dict)  # by stage kind, all workers
    latency: dict[str, float | None] = field(default_factory=dict)  # capture -> event
    pipeline: str = "clip"
    stream: str = ""
    decode: str = "all"

    @property
    def drops_total(self) -> int:
        return sum(c.drops_total for c in self.per_camera.values()) + sum(
            sum(d.values()) for d in self.shared_drops.values()
        )


def ring_drops(first: Snapshot, last: Snapshot, ring: str) -> dict[str, int]:
    """Frames `ring` dropped between the snapshots, by reason (reasons with none left out)."""
    before = first.rings.get(ring)
    after = last.rings.get(ring)
    if after is None:
        return {}
    drops = {}
    for reason, count in after.drops.items():
        delta = count - (before.drops.get(reason, 0) if before else 0)
        if delta:
            drops[reason] = int(delta)
    return drops


def camera_report(name: str, clip: Clip, first: Snapshot, last: Snapshot) -> CameraReport:
    elapsed_s = last.at_s - first.at_s

    def fps(worker: str) -> float:
        count = last.counter(worker, "frames_out_total") - first.counter(worker, "frames_out_total")
        return round(count / elapsed_s, 2)

    drops = {ring: ring_drops(first, last, f"{name}.{ring}") for ring in CAMERA_RINGS}
    overlay_fps = fps(f"{name}.overlay")
    return CameraReport(
        clip.path.name,
        round(clip.fps, 2),
        fps(f"{name}.source"),
        overlay_fps,
        round(overlay_fps / clip.fps, 3),
        drops,
        sum(sum(d.values()) for d in drops.values()),
    )


def process_report(first: Snapshot, last: Snapshot) -> dict[str, ProcessReport]:
    elapsed_s = last.at_s - first.at_s
    out = {}
    for label, end in sorted(last.procs.items()):
        start = first.procs.get(label)
        # A process that started within the window (a restart) used all its CPU in it.
        used_s = end.cpu_s - start.cpu_s if start and start.pid == end.pid else end.cpu_s
        out[label] = ProcessReport(
            end.pid,
            round(100 * used_s / elapsed_s, 1),
            round(end.rss_bytes / MIB, 1),
            round(end.pss_bytes / MIB, 1),
        )
    return out


def totals_report(
    procs: dict[str, ProcessReport], per_camera: dict[str, CameraReport]
) -> dict[str, float]:
    """The daemon's processes together, and every camera's overlay frames/s together."""
    return {
        "cpu_pct": round(sum(p.cpu_pct for p in procs.values()), 1),
        "rss_mb": round(sum(p.rss_mb for p in procs.values()), 1),
        "pss_mb": round(sum(p.pss_mb for p in procs.values()), 1),
        "processes": len(procs),
        "overlay_fps": round(sum(c.overlay_fps for c in per_camera.values()), 2),
    }


def stage_cpu(procs: dict[str, ProcessReport], cameras: int) -> dict[str, float]:
    """CPU % (100 = one core) by stage kind: cam0.source + cam1.source -> source, detect.0
    -> detect; other processes (supervisor, helpers) under their own label."""
    names = {f"cam{i}" for i in range(cameras)}
    out: dict[str, float] = {}
    for label, p in procs.items():
        head, _, rest = label.partition(".")
        kind = rest if head in names and rest else head
        out[kind] = round(out.get(kind, 0.0) + p.cpu_pct, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def machine_report(first: Snapshot, last: Snapshot, daemon_cpu_pct: float) -> dict[str, float]:
    """What the whole machine did meanwhile: other load makes the numbers pessimistic."""
    cores = os.cpu_count() or 1
    busy = last.system_ticks[0] - first.system_ticks[0]
    total = max(last.system_ticks[1] - first.system_ticks[1], 1)
    system_pct = 100 * cores * busy / total
    return {
        "cores": cores,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "system_cpu_pct": round(system_pct, 1),
        "other_cpu_pct": round(max(system_pct - daemon_cpu_pct, 0.0), 1),
    }


def one_line(report: LoadReport) -> str:
    fps = ", ".join(f"{c.overlay_fps}/{c.native_fps}" for c in report.per_camera.values())
    return (
        f"{report.cameras} camera(s): {'HOLDS' if report.holds else 'does not hold'}"
        f" (overlay fps {fps}; drops {report.drops_total}; cpu {report.totals['cpu_pct']}"
        f" %; pss {report.totals['pss_mb']} MiB; other load "
        f"{report.machine['other_cpu_pct']} %; load average "
        f"{report.machine['loadavg_1m']}{_latency_text(report.latency)})"
    )


def _latency_text(latency: dict[str, float | None]) -> str:
    if not latency:
        return ""
    if not latency.get("events"):
        return "; no events, no latency"
    return (
        f"; {latency['events']:g} events, capture -> event p50 {latency['p50_s']} s, "
        f"p99 {latency['p99_s']} s"
    )


def drops_text(drops: dict[str, dict[str, int]]) -> str:
    """Drops by ring and reason as a person reads them: "0", or "3 (frames: drop_oldest
    2; results: drop_newest 1)" (rings without drops left out)."""
    total = sum(sum(d.values()) for d in drops.values())
    rings = [f"{ring}: {pairs_text(d)}" for ring, d in drops.items() if sum(d.values())]
    return f"{total} ({'; '.join(rings)})" if rings else str(total)


def pairs_text(values: Mapping[str, object]) -> str:
    """{"source": 12.5, "infer": 40.1} as "source 12.5, infer 40.1"."""
    return ", ".join(f"{key} {value}" for key, value in values.items()) or "none"


def machine_text(machine: Mapping[str, float]) -> str:
    return (
        f"{machine['cores']:g} cores, cpu {machine['system_cpu_pct']} % "
        f"({machine['other_cpu_pct']} % not the daemon's), load average "
        f"{machine['loadavg_1m']}"
    )


def render(report: LoadReport) -> str:
    """The human-readable report of one run."""
    lines = [one_line(report)]
    for name, cam in report.per_camera.items():
        lines.append(
            f"  {name} ({cam.clip}): source {cam.source_fps} fps, overlay "
            f"{cam.overlay_fps} fps of {cam.native_fps} native, drops "
            f"{drops_text(cam.drops)}"
        )
    lines.append(f"  cpu % by stage: {pairs_text(report.stage_cpu_pct)}")
    lines += [
        f"  {label}: cpu {p.cpu_pct} %, rss {p.rss_mb} MiB, pss {p.pss_mb} MiB"
        for label, p in report.processes.items()
    ]
    lines.append(
        f"  machine: {machine_text(report.machine)}; shared drops "
        f"{drops_text(report.shared_drops)}; "
        f"restarts {report.restarts}; exit status {report.exit_code}; "
        f"shm leftovers {report.leftovers or 'none'}"
    )
    return "\n".join(lines)
