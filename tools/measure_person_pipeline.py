"""CPU of the person pipeline (source -> gate -> detect -> overlay) on the bundled clip of
a room people walk through, paced like a live camera: per stage, per analysed frame and
per person, and the whole daemon's CPU while the room is empty vs while people are in it
(the gate's effect). Also an empty room alone (the clip's first 5.5 s, looped).

    python tools/measure_person_pipeline.py [--empty-s 30] [--analyse-fps 5]

Prints a report; numbers depend on the box and its load (printed with them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.bench.procstats import BenchDaemon, Snapshot

CLIP = (
    Path(__file__).resolve().parent.parent / "daemon" / "assets" / "one-by-one-person-detection.mp4"
)
# Frames with a person in view (tools/eval_perception.py ROOM_PRESENT, labelled by hand).
ROOM_PRESENT = ((61, 198), (227, 450), (503, 699), (746, 866), (922, 1194), (1235, 1362))
EMPTY_FRAMES = 56  # the room before the first person enters (frames 0-55)
SAMPLE_S = 1.0
MARGIN_FRAMES = 10  # seconds this close to an entry or exit are not binned


def present(frame_id: int) -> bool | None:
    """True with people, False empty, None near an entry/exit."""
    for first, last in ROOM_PRESENT:
        if first - MARGIN_FRAMES <= frame_id <= last + MARGIN_FRAMES:
            return True if first + MARGIN_FRAMES <= frame_id <= last - MARGIN_FRAMES else None
    return False


def camera(source: str, analyse_fps: float, loop: bool) -> dict[str, object]:
    return {
        "name": "room",
        "source": source,
        "pipeline": "person",
        "analyse_fps": analyse_fps,
        "loop": loop,
        "width": 640,
        "height": 360,
    }


def sections() -> dict[str, dict[str, object]]:
    return {"metrics": {"listen": ""}, "daemon": {"status_interval_s": 5.0}}


def cpu_used(a: Snapshot, b: Snapshot) -> float:
    """CPU seconds between two snapshots, over the processes alive in both."""
    return sum(b.procs[k].cpu_s - a.procs[k].cpu_s for k in a.procs.keys() & b.procs.keys())


def running(snaps: list[Snapshot]) -> list[Snapshot]:
    """The snapshots taken while every worker ran (not after a file's end)."""
    most = max(len(s.procs) for s in snaps)
    return [s for s in snaps if len(s.procs) == most]


def run(cam: dict[str, object], limit_s: float) -> list[Snapshot]:
    """Snapshots every SAMPLE_S until the daemon ends (a file's end) or limit_s."""
    snaps: list[Snapshot] = []
    with BenchDaemon(sections(), [cam]) as daemon:
        daemon.start()
        daemon.wait_flowing()
        while daemon.alive() and len(snaps) * SAMPLE_S < limit_s:
            try:
                snaps.append(daemon.snapshot())
            except FileNotFoundError:
                break  # the daemon finished the file while we read
            time.sleep(SAMPLE_S)
        if daemon.alive():
            daemon.stop()
    return snaps


def stage_report(snaps: list[Snapshot]) -> list[str]:
    first, last = snaps[0], snaps[-1]
    wall = last.at_s - first.at_s
    lines = [f"over {wall:.0f} s:"]
    for label in sorted(last.procs):
        if label in first.procs:
            used = last.procs[label].cpu_s - first.procs[label].cpu_s
            lines.append(f"  {label:<14} {100 * used / wall:5.1f} % of a core")
    det = last.workers.get("detect.0", {})
    frames = det.get("frames_out_total", 0.0)
    people = det.get("people_total", 0.0)
    if frames:
        lines.append(
            f"  detect: {frames:.0f} frames analysed, {people:.0f} people; "
            f"{1000 * det['busy_seconds_total'] / frames:.1f} ms per frame "
            f"(detector {1000 * det['detector_seconds_total'] / frames:.1f} ms)"
            + (
                f", pose {1000 * det['pose_seconds_total'] / people:.1f} ms per person"
                if people
                else ""
            )
        )
    gate = last.workers.get("room.gate", {})
    lines.append(
        f"  gate: {gate.get('clips_total', 0):.0f} frames sent, "
        f"{gate.get('analysis_skipped_total', 0):.0f} skipped"
    )
    return lines


def presence_report(snaps: list[Snapshot]) -> list[str]:
    bins: dict[bool, list[float]] = {True: [], False: []}
    for a, b in zip(snaps, snaps[1:]):
        ids = (
            a.counter("room.overlay", "last_frame_id"),
            b.counter("room.overlay", "last_frame_id"),
        )
        kinds = {present(int(i)) for i in range(int(ids[0]), int(ids[1]) + 1)}
        if len(kinds) == 1 and None not in kinds:
            bins[kinds.pop() is True].append(cpu_used(a, b) / (b.at_s - a.at_s))
    out = []
    for key, name in ((False, "room empty"), (True, "people in view")):
        v = bins[key]
        if v:
            out.append(
                f"  {name:<15} {100 * sum(v) / len(v):5.1f} % of a core (daemon total, {len(v)} s)"
            )
    return out


def empty_clip(folder: Path) -> Path:
    cap = cv2.VideoCapture(str(CLIP))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    out_path = folder / "empty-room.mp4"
    writer = None
    for _ in range(EMPTY_FRAMES):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(frame)
    if writer is not None:
        writer.release()
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--empty-s", type=float, default=30.0)
    parser.add_argument("--analyse-fps", type=float, default=5.0)
    parser.add_argument("--clip-s", type=float, default=150.0, help="longest run on the clip")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    snaps = run(camera(str(CLIP), args.analyse_fps, loop=False), args.clip_s)
    print(f"\nbundled clip, analyse_fps {args.analyse_fps:g}, paced at its 10 fps")
    print("\n".join(stage_report(running(snaps)) + presence_report(running(snaps))))
    with tempfile.TemporaryDirectory() as tmp:
        empty = empty_clip(Path(tmp))
        snaps = run(camera(str(empty), args.analyse_fps, loop=True), args.empty_s)
    print(f"\nempty room looped ({EMPTY_FRAMES} frames of the clip), {args.empty_s:.0f} s")
    print("\n".join(stage_report(running(snaps))))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
