"""The command line of `actiond bench load`: its options and what makes them wrong (one
line, exit 2, before anything starts: a number out of range, a --clip or --model that is
not there or not a video)."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.bench.load_stream import STREAMS
from daemon.bench.procstats import BenchError, find_clips
from daemon.capture.table import DECODE_PRESETS

DEFAULT_SECONDS = 20.0
DEFAULT_WARMUP_S = 5.0
DEFAULT_MAX_CAMERAS = 16
MIN_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=1, help="cameras in one daemon")
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="measurement window after the warm-up",
    )
    parser.add_argument(
        "--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds of running before measuring"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="find the most cameras this machine holds (N = 1, 2, ...)",
    )
    parser.add_argument(
        "--max-cameras",
        type=int,
        default=0,
        help=f"sweep up to M cameras (implies --sweep; default {DEFAULT_MAX_CAMERAS})",
    )
    parser.add_argument(
        "--min-cameras",
        type=int,
        default=1,
        help="start the sweep at this many cameras (skip counts known to hold)",
    )
    parser.add_argument(
        "--clip",
        type=Path,
        action="append",
        default=[],
        help="clip file or directory of clips, repeatable (default: "
        "$ACTIOND_BENCH_MEDIA, the sample media, or the bundled clip)",
    )
    parser.add_argument("--model", default="", help="ONNX model (default: the bundled one)")
    parser.add_argument(
        "--replicas", type=int, default=1, help="inference (clip) or detect (person) replicas"
    )
    _add_person_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON only")


def _add_person_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        choices=("clip", "person"),
        default="clip",
        help="the cameras' pipeline (person: gate -> detect -> overlay with the people engine)",
    )
    parser.add_argument(
        "--stream",
        choices=("", *STREAMS),
        default="",
        help="instead of --clip: the bundled room clip made into a 1080p H.264 15 fps file "
        "(once, by GStreamer's x264enc through gst-launch-1.0; OpenCV's FFmpeg writer here "
        "has no H.264 encoder; cached in $TMPDIR/actiond-bench-cache) and served live as "
        "MPEG-TS over TCP by gst-launch-1.0, one client per camera",
    )
    parser.add_argument(
        "--analyse-fps", type=float, default=5.0, help="person pipeline: analysed frames/s"
    )
    parser.add_argument(
        "--decode",
        choices=tuple(DECODE_PRESETS),
        default="all",
        help="the cameras' decode preset (cameras[].decode): reference skips B-frames",
    )


def argument_problem(args: argparse.Namespace) -> str:
    """What is wrong with the command line ("" if nothing), as the fix to make."""
    if (
        args.cameras < 1
        or args.seconds < MIN_SECONDS
        or args.warmup < 0
        or args.max_cameras < 0
        or args.min_cameras < 1
        or args.replicas < 1
        or args.analyse_fps <= 0
    ):
        return (
            f"need --cameras >= 1, --seconds >= {MIN_SECONDS:g}, --warmup >= 0, "
            "--max-cameras >= 0, --min-cameras >= 1, --replicas >= 1 and --analyse-fps > 0"
        )
    if args.max_cameras and args.min_cameras > args.max_cameras:
        return f"--min-cameras {args.min_cameras} is above --max-cameras {args.max_cameras}"
    if args.stream and args.clip:
        return f"--stream {args.stream} replaces --clip: give one of them"
    if args.model and not Path(args.model).is_file():
        return f"--model {args.model}: no such file; pass an ONNX model file"
    try:
        if args.clip:
            find_clips(args.clip)
    except BenchError as exc:
        return str(exc)
    return ""
