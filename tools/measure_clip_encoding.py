"""Event-clip encoding, measured: OpenCV's VideoWriter (VP8: libvpx in its "good" mode,
what actiond used before) against the daemon's writer (daemon/display/webm_writer.py:
PyAV, libvpx in real-time mode) and a few other libvpx settings through PyAV, on the same
frames in the same run: CPU ms per frame (process time, so the encoder's own threads
count), kB per second of clip, and PSNR of the decoded clip against the frames given.

    .venv/bin/python tools/measure_clip_encoding.py --frames 100 --rounds 5

The frames are the bundled room clip's, scaled to 640 x 360 as [clips] max_width does.
Rounds alternate the writers, so a box whose load changes is seen by each of them; the
medians come last. `--slots 2` has each frame stand for 2 slots (a camera at half the
clip's rate): OpenCV writes it twice, the daemon's writer once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from daemon.display.webm_writer import WebmWriter

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "daemon" / "assets" / "one-by-one-person-detection.mp4"
SIZE = (640, 360)
FPS = 10.0
OPENCV_FOURCC = "VP80"
# Other (cpu-used, bitrate in bits/s) through PyAV: a positive cpu-used lets libvpx pick
# its speed by the time frames take; libvpx's default threads (PyAV asks for auto).
OTHER_SETTINGS = ((8, 600_000), (-8, 600_000), (-16, 800_000))
METRICS = ("cpu_ms_per_frame", "kB_per_s", "kbit_per_s", "psnr_db", "packets")

Writer = Callable[[Path, list[np.ndarray], int], None]


def read_frames(count: int, skip: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(CLIP))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= skip:
            frames.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
        index += 1
    capture.release()
    return frames


def write_opencv(path: Path, frames: list[np.ndarray], slots: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*OPENCV_FOURCC), FPS, SIZE)
    for frame in frames:
        for _ in range(slots):
            writer.write(frame)
    writer.release()


def write_daemon(path: Path, frames: list[np.ndarray], slots: int) -> None:
    writer = WebmWriter(path, FPS, SIZE)
    for frame in frames:
        writer.write(frame, slots)
    writer.close()


def pyav_writer(speed: int, bitrate: int) -> Writer:
    def write(path: Path, frames: list[np.ndarray], slots: int) -> None:
        with av.open(str(path), "w", format="webm") as container:
            stream = container.add_stream("libvpx", rate=Fraction(FPS))
            stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
            stream.options = {"deadline": "realtime", "cpu-used": str(speed), "b": str(bitrate)}
            for index, frame in enumerate(frames):
                picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
                picture.pts = index * slots
                container.mux(stream.encode(picture))
            container.mux(stream.encode(None))

    return write


def psnr(path: Path, frames: list[np.ndarray], slots: int) -> tuple[int, float]:
    """Packets in the file, and the mean PSNR of each frame shown at its slots."""
    with av.open(str(path)) as container:
        decoded = [
            (round(float(f.time or 0.0) * FPS), f.to_ndarray(format="bgr24"))
            for f in container.decode(video=0)
        ]
    values = []
    for slot, back in decoded:
        index = slot // slots
        if index < len(frames):
            values.append(cv2.PSNR(frames[index], back))
    return len(decoded), float(np.mean(values)) if values else 0.0


def measure(
    name: str, write: Writer, frames: list[np.ndarray], slots: int, tmp: Path
) -> dict[str, object]:
    path = tmp / f"{name.replace(' ', '_')}.webm"
    cpu0 = time.process_time()
    write(path, frames, slots)
    cpu_s = time.process_time() - cpu0
    packets, mean_psnr = psnr(path, frames, slots)
    seconds = len(frames) * slots / FPS
    return {
        "writer": name,
        "cpu_ms_per_frame": round(cpu_s * 1000 / len(frames), 2),
        "kB_per_s": round(path.stat().st_size / 1000 / seconds, 1),
        "kbit_per_s": round(path.stat().st_size * 8 / 1000 / seconds),
        "packets": packets,
        "psnr_db": round(mean_psnr, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--skip", type=int, default=300, help="frames skipped at the start")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slots", type=int, default=1, help="slots each frame stands for")
    parser.add_argument("--others", action="store_true", help="also other libvpx settings")
    args = parser.parse_args()
    frames = read_frames(args.frames, args.skip)
    writers: list[tuple[str, Writer]] = [("opencv", write_opencv), ("daemon", write_daemon)]
    if args.others:
        writers += [
            (f"pyav cpu-used {s} b {b // 1000}k", pyav_writer(s, b)) for s, b in OTHER_SETTINGS
        ]
    runs: dict[str, list[dict[str, object]]] = {name: [] for name, _ in writers}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, write in writers:
                runs[name].append(measure(name, write, frames, args.slots, Path(tmp)))
                print(json.dumps(runs[name][-1]), flush=True)
    print(f"medians over {args.rounds} rounds, {len(frames)} frames x {args.slots} slots:")
    for name, results in runs.items():
        median = {key: float(np.median([float(str(r[key])) for r in results])) for key in METRICS}
        print(json.dumps({"writer": name, **median}), flush=True)


if __name__ == "__main__":
    main()
