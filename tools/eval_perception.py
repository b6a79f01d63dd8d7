"""Measures the candidate person detectors on the real clips (dev tool; see eval/perception.md).

For every clip in --media it records, per analysed frame, each candidate's best person
score and its boxes, and the time of each call (onnxruntime, one thread), into an .npz
per clip under --out; `--report` prints the per-clip table from those files and the
labels (which frames have a person). Run with the converted candidates in --models
(tools/convert_models.py --candidates writes them all).

--input-sizes compares instead the shipped detector's two inputs through the daemon's own
code (daemon.stages.perception): free size as shipped (a 16:9 frame as 416 x 256) and
the same file with its input fixed at 416 x 416 (the square letterbox of the original
conversion, tools/free_size_detector.py), each also tiled; they take turns on each frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import free_size_detector
import onnx
import perception_ref as P

# Which frames have at least one person, by clip (frame ranges, end exclusive), checked by
# eye on contact sheets (eval/perception.md says how). Clips not listed have a person in
# every frame; NO_PEOPLE clips have none.
NO_PEOPLE = ("fruit-and-vegetable-detection.mp4", "bolt-multi-size-detection.mp4")
# one-by-one-person-detection.mp4: a person is in view from each entry (walk_away start in
# eval/labels) to the end of the matching exit (walk_right end); frames within
# BOUNDARY_FRAMES of an entry or exit (a person half out of the frame) are not scored.
ROOM_PRESENT = ((61, 198), (227, 450), (503, 699), (746, 866), (922, 1194), (1235, 1362))
BOUNDARY_FRAMES = 5
LOW_SCORE = 0.05  # boxes kept per frame down to this score, so thresholds can be swept


def tiles(frame: np.ndarray, grid: int) -> list[tuple[int, int, np.ndarray]]:
    """grid x grid tiles overlapping by a quarter of a tile, as (x0, y0, tile)."""
    h, w = frame.shape[:2]
    tw, th = int(w / (grid - (grid - 1) * 0.25)), int(h / (grid - (grid - 1) * 0.25))
    out = []
    for r in range(grid):
        for c in range(grid):
            x0, y0 = min(int(c * tw * 0.75), w - tw), min(int(r * th * 0.75), h - th)
            out.append((x0, y0, frame[y0 : y0 + th, x0 : x0 + tw]))
    return out


def nanodet_tiled(sess, frame: np.ndarray, min_score: float):
    b, s = P.nanodet_people(sess, frame, min_score)
    boxes, scores = [b], [s]
    for x0, y0, t in tiles(frame, 2):
        b, s = P.nanodet_people(sess, t, min_score)
        boxes.append(b + np.array([x0, y0, x0, y0], np.float32))
        scores.append(s)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    keep = P.nms(b, s) if len(s) else []
    return b[keep], s[keep]


def candidates(models: Path):
    anchors = P.blazepose_anchors()
    nd = P.session(models / "nanodet.onnx")
    mm = P.session(models / "movenet-multipose.onnx")
    cn = P.session(models / "centernet.onnx")
    pd = P.session(models / "pose_detection.onnx")
    return {
        "nanodet": lambda f: P.nanodet_people(nd, f, LOW_SCORE),
        "nanodet_tiled": lambda f: nanodet_tiled(nd, f, LOW_SCORE),
        "multipose": lambda f: P.movenet_multipose(mm, f, LOW_SCORE)[:2],
        "centernet": lambda f: P.centernet_people(cn, f, LOW_SCORE),
        "blazepose_det": lambda f: P.blazepose_detect(pd, f, LOW_SCORE, anchors),
    }


def input_size_candidates(out: Path):
    """The shipped detector at its free size and at 416 x 416, full frame and tiled."""
    from daemon.stages import perception as D

    square = out / "nanodet-g-416x416.onnx"
    side = D.NANODET_INPUT_PX
    onnx.save(
        free_size_detector.fixed_size(onnx.load(str(D.DEFAULT_DETECTOR)), (side, side)), str(square)
    )
    free = D.PersonModels(D.DEFAULT_DETECTOR, D.DEFAULT_POSE)
    fixed = D.PersonModels(square, D.DEFAULT_POSE)
    return {
        "nanodet_416x416": lambda f: fixed.detect(f, LOW_SCORE),
        "nanodet_free": lambda f: free.detect(f, LOW_SCORE),
        "tiled_416x416": lambda f: fixed.detect_tiled(f, LOW_SCORE),
        "tiled_free": lambda f: free.detect_tiled(f, LOW_SCORE),
    }


def run_clip(path: Path, step: int, cands, out: Path) -> None:
    cap = cv2.VideoCapture(str(path))
    rec: dict[str, list] = {"frame": []}
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            rec["frame"].append(i)
            for name, fn in cands.items():
                t0 = time.perf_counter()
                b, s = fn(frame)
                rec.setdefault(name + "_ms", []).append((time.perf_counter() - t0) * 1e3)
                rec.setdefault(name + "_max", []).append(float(s.max()) if len(s) else 0.0)
                rec.setdefault(name + "_boxes", []).append(
                    np.concatenate([b, s[:, None]], 1) if len(s) else np.zeros((0, 5))
                )
        i += 1
    arrays = {k: np.array(v) for k, v in rec.items() if not k.endswith("_boxes")}
    for name in cands:
        arrays[name + "_boxes"] = np.array(rec[name + "_boxes"], dtype=object)
    np.savez(out / (path.name + ".npz"), **arrays, allow_pickle=True)
    print(path.name, len(rec["frame"]), "frames", flush=True)


def truth(clip: str, frames: np.ndarray) -> np.ndarray:
    """Per frame: 1 a person is in view, 0 nobody, -1 not scored."""
    if clip in NO_PEOPLE:
        return np.zeros(len(frames), np.int64)
    if not clip.startswith("one-by-one"):
        return np.ones(len(frames), np.int64)
    out = np.zeros(len(frames), np.int64)
    for a, b in ROOM_PRESENT:
        out[(frames >= a) & (frames < b)] = 1
        for edge in (a, b):
            out[np.abs(frames - edge) < BOUNDARY_FRAMES] = -1
    return out


def report(out: Path, thresholds: dict[str, float]) -> None:
    print("| clip | frames (with person / without) | " + " | ".join(thresholds) + " |")
    print("|---|---|" + "---|" * len(thresholds))
    ms: dict[str, list[float]] = {k: [] for k in thresholds}
    for f in sorted(out.glob("*.npz")):
        d = np.load(f, allow_pickle=True)
        t = truth(f.name.removesuffix(".npz"), d["frame"])
        cells = []
        for name, thr in thresholds.items():
            hit = d[name + "_max"] >= thr
            pos, neg = t == 1, t == 0
            cell = f"{hit[pos].mean():.2f}" if pos.any() else "-"
            cell += (
                f" / FP {int(hit[neg].sum())} (max {d[name + '_max'][neg].max():.2f})"
                if neg.any()
                else ""
            )
            cells.append(cell)
            ms[name] += list(d[name + "_ms"])
        print(
            f"| {f.name.removesuffix('.npz')} | {int((t == 1).sum())} / {int((t == 0).sum())} | "
            + " | ".join(cells)
            + " |"
        )
    print(
        "| median ms per frame | | " + " | ".join(f"{np.median(v):.1f}" for v in ms.values()) + " |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--media", type=Path, default=Path("../shared/media"))
    ap.add_argument("--models", type=Path, default=Path("/tmp/candidates"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--room-step", type=int, default=5)
    ap.add_argument("--report", action="store_true", help="print the table from --out")
    ap.add_argument(
        "--input-sizes", action="store_true", help="the shipped detector: free size vs 416x416"
    )
    ap.add_argument(
        "--thresholds",
        default="nanodet=0.4,nanodet_tiled=0.4,multipose=0.3,centernet=0.3,blazepose_det=0.5",
    )
    args = ap.parse_args()
    if args.report:
        report(
            args.out, {k: float(v) for k, v in (kv.split("=") for kv in args.thresholds.split(","))}
        )
        return
    args.out.mkdir(parents=True, exist_ok=True)
    cands = input_size_candidates(args.out) if args.input_sizes else candidates(args.models)
    for path in sorted(args.media.glob("*.m[pk][4v]")):
        step = args.room_step if path.name.startswith("one-by-one") else 1
        run_clip(path, step, cands, args.out)


if __name__ == "__main__":
    main()
