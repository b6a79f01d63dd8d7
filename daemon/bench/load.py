"""Load benchmark: how many real-time cameras one daemon holds on this machine.

N cameras play sample clips (cycled) paced at their native frame rate, as live cameras
would (realtime, loop, ring_policy drop_oldest), through one daemon (metrics, MQTT and
MJPEG off). After a warm-up, for `seconds`, it measures per camera the frame rate at the
source and at the overlay against the clip's native rate and the frames dropped (by ring
and reason), and per process the CPU use (100 = one core) and RSS. A run holds when
every camera reaches HOLD_RATIO of its native rate at the overlay, no ring drops a frame
(the shared clips ring included: a dropped clip is an inference window lost) and no
worker restarts. --sweep (or --max-cameras M) runs N = 1, 2, ... until a run does not
hold and reports the largest N that held.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

from daemon.bench.load_args import DEFAULT_MAX_CAMERAS, argument_problem
from daemon.bench.load_args import add_arguments as add_arguments  # `bench load`'s options
from daemon.bench.load_report import (
    CameraReport,
    LoadReport,
    camera_report,
    machine_report,
    one_line,
    process_report,
    render,
    ring_drops,
    stage_cpu,
    totals_report,
)
from daemon.bench.load_stream import StreamServer, latency_buckets, latency_report, made_stream
from daemon.bench.procstats import (
    BenchDaemon,
    BenchError,
    Clip,
    count_restarts,
    default_clip_paths,
    find_clips,
    free_port,
)
from daemon.exitcodes import ExitCode
from daemon.progress import Progress

HOLD_RATIO = 0.95
# Person cameras: an include zone over the whole frame, as an operator watching a room
# sets one, so everyone who comes into view starts an in_zone event (more events to time
# capture -> event latency on: the room clip gives 18 with it, 12 without).
WHOLE_FRAME = MappingProxyType(
    {"name": "all", "kind": "include", "points": ((0, 0), (1, 0), (1, 1), (0, 1))}
)
# The ring every camera of a pipeline feeds (a dropped item there is an analysis lost).
SHARED_RINGS = MappingProxyType({"clip": ("clips",), "person": ("analysis",)})


def camera_configs(count: int, plan: LoadPlan, url: str = "") -> list[dict[str, object]]:
    """`count` live-camera-like cameras cam0, cam1, ... cycling through the plan's clips
    (paced files), or all reading the stream at `url`."""
    cams: list[dict[str, object]] = []
    for i in range(count):
        cam: dict[str, object] = {"name": f"cam{i}", "ring_policy": "drop_oldest"}
        if url:
            cam["source"] = url
        else:
            cam.update(source=str(plan.clips[i % len(plan.clips)].path), realtime=True, loop=True)
        if plan.pipeline == "person":
            cam.update(pipeline="person", analyse_fps=plan.analyse_fps, zones=[dict(WHOLE_FRAME)])
        if plan.decode != "all":
            cam["decode"] = plan.decode
        cams.append(cam)
    return cams


def bench_sections(model: str, replicas: int) -> dict[str, dict[str, object]]:
    """Everything that is not the pipeline off, so the numbers are the pipeline's."""
    sections: dict[str, dict[str, object]] = {
        "daemon": {"status_interval_s": 5.0},
        "metrics": {"listen": ""},
        "mqtt": {"enabled": False},
        "display": {"mjpeg_listen": ""},
    }
    inference: dict[str, object] = {"replicas": replicas}
    if model:
        inference["model"] = model
    sections["inference"] = inference
    sections["perception"] = {"replicas": replicas}  # the person pipeline's detect stage
    return sections


@dataclass(frozen=True)
class LoadPlan:
    """What every run of one bench load invocation shares."""

    clips: list[Clip]
    seconds: float
    warmup_s: float
    model: str
    replicas: int
    pipeline: str = "clip"
    stream: str = ""  # a made live stream (load_stream.STREAMS) instead of paced files
    analyse_fps: float = 5.0  # person pipeline: frames analysed per second per camera
    decode: str = "all"  # cameras[].decode (daemon.capture.table.DECODE_PRESETS)


def measure(count: int, plan: LoadPlan, shown: Progress) -> LoadReport:
    """One run of `count` cameras through one daemon (and a stream server if asked);
    `shown` says which phase it is in (its step is started by the caller)."""
    if not plan.stream:
        return _measure(count, plan, "", shown)
    with StreamServer(plan.clips[0]) as server:
        return _measure(count, plan, server.url, shown)


def _measure(count: int, plan: LoadPlan, url: str, shown: Progress) -> LoadReport:
    clips, seconds, warmup_s = plan.clips, plan.seconds, plan.warmup_s
    sections = bench_sections(plan.model, plan.replicas)
    metrics = f"127.0.0.1:{free_port()}"
    sections["metrics"] = {"listen": metrics}  # capture -> event latency
    with BenchDaemon(sections, camera_configs(count, plan, url)) as daemon:
        shown.status(f"starting the daemon, then {warmup_s:g} s of warm-up")
        daemon.start()
        daemon.wait_flowing()
        shown.expect_rest(warmup_s + seconds)  # the start-up, now timed, comes on top
        daemon.hold(warmup_s)
        shown.status(f"measuring for {seconds:g} s")
        first, lat0 = daemon.snapshot(), latency_buckets(f"http://{metrics}/metrics")
        daemon.hold(seconds)
        last, lat1 = daemon.snapshot(), latency_buckets(f"http://{metrics}/metrics")
        exit_code, leftovers = daemon.stop()
        restarts = count_restarts(daemon.log_text())
    per_camera = {
        f"cam{i}": camera_report(f"cam{i}", clips[i % len(clips)], first, last)
        for i in range(count)
    }
    shared = {ring: ring_drops(first, last, ring) for ring in SHARED_RINGS[plan.pipeline]}
    procs = process_report(first, last)
    totals = totals_report(procs, per_camera)
    holds = (
        all(shown_ratio(c, plan) >= HOLD_RATIO and c.drops_total == 0 for c in per_camera.values())
        and not any(shared.values())
        and restarts == 0
    )
    return LoadReport(
        count,
        plan.replicas,
        holds,
        HOLD_RATIO,
        round(last.at_s - first.at_s, 2),
        warmup_s,
        per_camera,
        shared,
        procs,
        totals,
        machine_report(first, last, totals["cpu_pct"]),
        restarts,
        exit_code,
        leftovers,
        stage_cpu(procs, count),
        latency_report(lat0, lat1),
        plan.pipeline,
        plan.stream,
        plan.decode,
    )


def shown_ratio(cam: CameraReport, plan: LoadPlan) -> float:
    """Frames shown per frame due: of the stream's rate, or with a decode preset that
    skips frames, of those the source decoded."""
    if plan.decode == "all":
        return cam.overlay_ratio
    return cam.overlay_fps / cam.source_fps if cam.source_fps > 0 else 0.0


def sweep(
    plan: LoadPlan, min_cameras: int, max_cameras: int, shown: Progress
) -> tuple[int, list[LoadReport], str]:
    """N = min, min + 1, ... until a run does not hold (or fails, or leaves something
    behind): the largest N that held (0: none did), every run, and the error that ended
    the sweep ("" if none). `shown`: one step per N."""
    runs: list[LoadReport] = []
    held = 0
    for count in range(min_cameras, max_cameras + 1):
        shown.step(count - min_cameras + 1, f"{count} camera(s)")
        try:
            report = measure(count, plan, shown)
        except BenchError as exc:
            # Keep what the smaller runs measured; the error says why this one failed.
            shown.close()
            return held, runs, f"{count} camera(s): {exc}"
        runs.append(report)
        shown.finish(verdict(report))
        if not report.holds or report.leftovers:
            break
        held = count
    return held, runs, ""


def verdict(report: LoadReport) -> str:
    """A run's one line without its camera count, which its progress step names."""
    return one_line(report).removeprefix(f"{report.cameras} camera(s): ")


def progress_for(args: argparse.Namespace) -> Progress:
    """Progress on a terminal, none with --json: a sweep's steps are its camera counts."""
    limit = args.max_cameras or DEFAULT_MAX_CAMERAS
    swept = args.sweep or args.max_cameras
    label, total = ("sweep", limit - args.min_cameras + 1) if swept else ("bench load", 1)
    # No time left before the first start-up is timed (measure: expect_rest).
    return Progress.on_terminal(label, max(total, 0), quiet=args.json)


def run(args: argparse.Namespace) -> int:
    problem = argument_problem(args)
    if problem:
        print(f"actiond bench load: {problem}", file=sys.stderr)
        return ExitCode.CONFIG
    model = str(Path(args.model).resolve()) if args.model else ""
    shown = progress_for(args)
    try:
        plan = LoadPlan(
            _clips(args),
            args.seconds,
            args.warmup,
            model,
            args.replicas,
            args.pipeline,
            args.stream,
            args.analyse_fps,
            args.decode,
        )
        if args.sweep or args.max_cameras:
            runs, result, text, error = sweep_output(
                plan, args.min_cameras, args.max_cameras, shown
            )
        else:
            shown.step(1, f"{args.cameras} camera(s)")
            runs, error = [measure(args.cameras, plan, shown)], ""
            shown.finish(verdict(runs[0]))
            result = asdict(runs[0])
            text = render(runs[0])
    except BenchError as exc:
        shown.close()
        print(f"actiond bench load: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    print(json.dumps(result, indent=2) if args.json else text)
    if error:
        print(f"actiond bench load: {error}", file=sys.stderr)
        return ExitCode.FAILURE
    return failure_code(runs)


def _clips(args: argparse.Namespace) -> list[Clip]:
    if not args.stream:
        return find_clips(args.clip or default_clip_paths())
    Progress.on_terminal("bench load", 0, quiet=args.json).note(
        f"stream {args.stream}: making it from the bundled clip (once; cached)"
    )
    return [made_stream(args.stream)]


def sweep_output(
    plan: LoadPlan, min_cameras: int, max_cameras: int, shown: Progress
) -> tuple[list[LoadReport], dict[str, object], str, str]:
    """A sweep up to `max_cameras` (0: DEFAULT_MAX_CAMERAS): its runs, its JSON document,
    its text and the error that ended it ("" if none)."""
    limit = max_cameras or DEFAULT_MAX_CAMERAS
    held, runs, error = sweep(plan, min_cameras, limit, shown)
    result: dict[str, object] = {
        "sweep": True,
        "max_cameras_held": held,
        "min_cameras_tried": min_cameras,
        "max_cameras_tried": limit,
        "replicas": plan.replicas,
        "clips": [c.path.name for c in plan.clips],
        "runs": [asdict(r) for r in runs],
        "error": error,
    }
    text = "\n".join([*map(render, runs), f"largest camera count held: {held}"])
    return runs, result, text, error


def failure_code(runs: list[LoadReport]) -> int:
    """FAILURE when a daemon did not stop cleanly or left shared memory behind."""
    code = ExitCode.OK
    for report in runs:
        if report.leftovers or report.exit_code != 0:
            print(
                f"actiond bench load: {report.cameras} camera(s): the daemon exited with "
                f"status {report.exit_code} and left {report.leftovers or 'nothing'} in "
                "its shm dir",
                file=sys.stderr,
            )
            code = ExitCode.FAILURE
    return code
