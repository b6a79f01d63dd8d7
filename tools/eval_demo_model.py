"""Evaluate an action model on real clips labelled by hand (eval/labels/*.json).

Frames go through the daemon's own steps (source resize to the camera size, motion resize
and DIS optical flow at the motion size, a clip of T frames every `stride` frames,
ActionModel.make_input), so the numbers are what the daemon would answer. Each clip
(window) is scored against the hand labels: its truth is the label covering at least
MAJORITY of its frames (IDLE_MAJORITY for idle); windows that straddle two labels are
left out and counted.

    python tools/eval_demo_model.py                       # bundled demo model
    python tools/eval_demo_model.py --model m.onnx --media /work/shared/media --json

The clips are looked up in --media, by default where the benchmarks find sample clips
($ACTIOND_BENCH_MEDIA, else ../shared/media beside the checkout, else the clips bundled
with actiond); a labelled clip missing there is skipped with a line saying so.

A labels file: {"clip": "walk.mkv", "segments": [{"start": 0, "end": 12, "label":
"idle"}, ...]} with frame numbers from 0 and `end` exclusive; label "ignore" marks frames
no label fits (they leave their windows out). Every other label must be one of the
model's: a file with another one is an error (exit 2) naming the file and the label.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere in the checkout

from daemon.bench.procstats import sample_media_dir
from daemon.config import CameraConfig, InferenceConfig, MotionConfig
from daemon.exitcodes import ExitCode
from daemon.stages.clipmaker import FrameClips
from daemon.stages.model import ActionModel
from daemon.supervisor.boot import DEFAULT_MODEL

LABELS_DIR = REPO / "eval" / "labels"
MAJORITY = 0.6  # share of a window's frames its truth label must cover
IDLE_MAJORITY = 0.9  # ... when that label is idle: a window with a few frames of
# someone walking is not "nobody moving"
IGNORE = "ignore"
SWEEP_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class EvalError(Exception):
    """Labels or clips the evaluation cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class Window:
    """One clip of a labelled video: its last frame, truth (or None) and prediction."""

    clip: str
    end_frame: int
    truth: str | None
    predicted: str
    score: float
    scores: tuple[float, ...]  # one per label


def read_video(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {path}")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def frame_labels(spec: dict, frames: int) -> list[str | None]:
    labels: list[str | None] = [None] * frames
    for seg in spec["segments"]:
        for i in range(seg["start"], min(seg["end"], frames)):
            labels[i] = seg["label"]
    return labels


def load_labels(labels_dir: Path, model_labels: tuple[str, ...]) -> list[dict]:
    """Every labels file in `labels_dir`, each checked against the model's labels."""
    specs = []
    for path in sorted(labels_dir.glob("*.json")):
        spec = json.loads(path.read_text())
        for seg in spec["segments"]:
            if seg["label"] not in (*model_labels, IGNORE):
                raise EvalError(
                    f"{path}: label {seg['label']!r} is not one of the model's labels "
                    f"({', '.join(model_labels)}) or {IGNORE!r}; fix the file, or pass the "
                    f"--model it was labelled for"
                )
        specs.append(spec)
    if not specs:
        raise EvalError(f"no labels files (*.json) in {labels_dir}; pass --labels DIR")
    return specs


def find_videos(specs: list[dict], media: Path) -> list[tuple[Path, dict]]:
    """(video, labels) of every labelled clip present in `media`; the others are skipped
    with a line on stderr."""
    found = []
    for spec in specs:
        video = media / spec["clip"]
        if video.is_file():
            found.append((video, spec))
        else:
            print(
                f"eval_demo_model: skipping {spec['clip']}: not in {media} (pass --media DIR)",
                file=sys.stderr,
            )
    if not found:
        raise EvalError(f"none of the labelled clips is in {media}; pass --media DIR")
    return found


def window_truth(labels: list[str | None], end: int, length: int) -> str | None:
    counts = Counter(labels[max(0, end - length + 1) : end + 1])
    label, n = counts.most_common(1)[0]
    share = IDLE_MAJORITY if label == "idle" else MAJORITY
    return label if label not in (None, IGNORE) and n >= share * length else None


def evaluate_clip(
    model: ActionModel,
    video: Path,
    spec: dict,
    camera: CameraConfig,
    motion: MotionConfig,
    stride: int,
) -> list[Window]:
    frames = list(read_video(video))
    labels = frame_labels(spec, len(frames))
    t = model.contract.clip_length
    feeder = FrameClips(camera, motion, t, stride, model.clip_size(motion))
    windows = []
    for index, frame in enumerate(frames):
        clip = feeder.push(frame)
        if clip is None:
            continue
        scores = model.run(model.make_input(*clip))[0]
        best = int(np.argmax(scores))
        windows.append(
            Window(
                video.name,
                index,
                window_truth(labels, index, t),
                model.contract.labels[best],
                float(scores[best]),
                tuple(float(v) for v in scores),
            )
        )
    return windows


def per_class(windows: list[Window], labels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    scored = [w for w in windows if w.truth is not None]
    table = {}
    for label in labels:
        tp = sum(w.truth == label and w.predicted == label for w in scored)
        truth_n = sum(w.truth == label for w in scored)
        pred_n = sum(w.predicted == label for w in scored)
        table[label] = {
            "windows": truth_n,
            "predicted": pred_n,
            "precision": tp / pred_n if pred_n else float("nan"),
            "recall": tp / truth_n if truth_n else float("nan"),
        }
    return table


def threshold_sweep(windows: list[Window], labels: tuple[str, ...]) -> str:
    """Per action, precision / recall of "score >= threshold" (how the event hysteresis
    counts a window as on), to choose each action's event threshold."""
    scored = [w for w in windows if w.truth is not None]
    lines = [f"{'score >=':<14}" + "".join(f"{t:>12.2f}" for t in SWEEP_THRESHOLDS)]
    for i, label in enumerate(labels):
        cells = []
        for threshold in SWEEP_THRESHOLDS:
            on = [w for w in scored if w.scores[i] >= threshold]
            tp = sum(w.truth == label for w in on)
            truth_n = sum(w.truth == label for w in scored)
            precision = f"{tp / len(on):.2f}" if on else "-"
            recall = f"{tp / truth_n:.2f}" if truth_n else "-"
            cells.append(f"{precision:>6}/{recall:<5}")
        lines.append(f"{label:<14}" + "".join(cells))
    return "\n".join(["precision/recall per threshold"] + lines)


def confusion(windows: list[Window], labels: tuple[str, ...]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for w in windows:
        if w.truth is not None:
            matrix[index[w.truth]][index[w.predicted]] += 1
    return matrix


def report(windows: list[Window], labels: tuple[str, ...]) -> str:
    scored = [w for w in windows if w.truth is not None]
    accuracy = sum(w.truth == w.predicted for w in scored) / max(len(scored), 1)
    lines = [
        (
            f"{len(windows)} windows, {len(scored)} scored ({len(windows) - len(scored)} "
            f"straddle two labels or are marked ignore); accuracy {accuracy:.3f}"
        ),
        "",
        f"{'class':<14}{'windows':>8}{'predicted':>10}{'precision':>10}{'recall':>8}",
    ]
    for label, row in per_class(windows, labels).items():
        lines.append(
            f"{label:<14}{row['windows']:>8}{row['predicted']:>10}"
            f"{row['precision']:>10.2f}{row['recall']:>8.2f}"
        )
    lines += [
        "",
        "confusion (rows: truth, columns: predicted)",
        " " * 14 + "".join(f"{label[:7]:>8}" for label in labels),
    ]
    for label, counts in zip(labels, confusion(windows, labels)):
        lines.append(f"{label:<14}" + "".join(f"{n:>8}" for n in counts))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument(
        "--media",
        type=Path,
        default=None,
        help="folder of the labelled clips (default: $ACTIOND_BENCH_MEDIA, "
        "else ../shared/media beside the checkout, else the bundled clips)",
    )
    parser.add_argument("--labels", type=Path, default=LABELS_DIR)
    parser.add_argument("--stride", type=int, default=InferenceConfig().stride)
    parser.add_argument("--motion-size", type=int, default=MotionConfig().width)
    parser.add_argument("--windows", action="store_true", help="list every window")
    parser.add_argument("--json", action="store_true", help="per-class numbers as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = ActionModel(InferenceConfig(), str(args.model))
    motion = MotionConfig(width=args.motion_size, height=args.motion_size)
    camera = CameraConfig(name="eval", source="")  # the config's default camera size
    labels = model.contract.labels
    try:
        videos = find_videos(load_labels(args.labels, labels), args.media or sample_media_dir())
    except EvalError as exc:
        print(f"eval_demo_model: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    windows: list[Window] = []
    for video, spec in videos:
        clip = evaluate_clip(model, video, spec, camera, motion, args.stride)
        if args.windows:
            for w in clip:
                print(
                    f"{w.clip} {w.end_frame:5d} truth={w.truth} predicted={w.predicted} "
                    f"({w.score:.2f})"
                )
        windows += clip
    if args.json:
        print(json.dumps(per_class(windows, labels), indent=2))
    else:
        print(report(windows, labels))
        print()
        print(threshold_sweep(windows, labels))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
