"""The live stream of `actiond bench load --stream 1080p15`: the bundled clip of a room
people walk through, made once into a 1080p H.264 15 fps file (GStreamer's x264enc via
gst-launch-1.0: this OpenCV's FFmpeg writer has no H.264 encoder), cached under the
temporary directory, and served per run as MPEG-TS over TCP by gst-launch-1.0
(tcpserversink, paced at the file's rate, every camera one client), so the cameras are
live sources: capture times are the daemon's clock and capture -> event latency is
measured (actiond_event_latency_seconds, scraped from the daemon's metrics endpoint).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import MappingProxyType

from daemon.bench.procstats import BenchError, Clip, free_port, probe_clip

ROOM_CLIP = Path(__file__).resolve().parent.parent / "assets" / "one-by-one-person-detection.mp4"
# name -> width, height, fps, times the clip plays in the file. "1080p15x3" lasts 418 s:
# long runs (--seconds 400) see every person walk in three times, for >= 20 events.
STREAMS = MappingProxyType({"1080p15": (1920, 1080, 15, 1), "1080p15x3": (1920, 1080, 15, 3)})
GST_LAUNCH = "gst-launch-1.0"
MAKE_TIMEOUT_S = 900.0
SERVE_START_TIMEOUT_S = 20.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 5.0
KEYFRAME_INTERVAL_FRAMES = 30  # 2 s at 15 fps, like many IP cameras
_BUCKET_RE = re.compile(
    r'^actiond_event_latency_seconds_bucket\{[^}]*le="(?P<le>[^"]+)"[^}]*\}\s+(?P<n>\S+)$',
    re.MULTILINE,
)


def cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "actiond-bench-cache"


def made_stream(name: str) -> Clip:
    """The bundled clip as stream `name` (made once, then taken from the cache)."""
    width, height, fps, plays = STREAMS[name]
    path = cache_dir() / f"{ROOM_CLIP.stem}-{name}-h264.mp4"
    if not path.is_file():
        _make(path, width, height, fps, plays)
    clip = probe_clip(path)
    if (clip.width, clip.height) != (width, height):
        raise BenchError(f"{path}: made {clip.width}x{clip.height}, wanted {width}x{height}")
    return clip


def _make(path: Path, width: int, height: int, fps: int, plays: int) -> None:
    if shutil.which(GST_LAUNCH) is None:
        raise BenchError(
            f"{GST_LAUNCH} not found: install gstreamer1.0-tools and gstreamer1.0-plugins-ugly"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.mp4")
    # The clip `plays` times one after the other (GStreamer's concat keeps the times going).
    clip = ["filesrc", f"location={ROOM_CLIP}", "!", "decodebin", "!", "c."]
    command = [
        GST_LAUNCH, "-q", "concat", "name=c", "!",
        "videoconvert", "!", "videoscale", "!", f"video/x-raw,width={width},height={height}",
        "!", "videorate", "!", f"video/x-raw,framerate={fps}/1", "!", "x264enc",
        "speed-preset=veryfast", f"key-int-max={KEYFRAME_INTERVAL_FRAMES}", "!",
        "h264parse", "!", "mp4mux", "!", "filesink", f"location={part}", *clip * plays,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=MAKE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"making {path.name} took over {MAKE_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[-300:]
        raise BenchError(f"making {path.name} with x264enc failed ({done.returncode}): {err}")
    os.replace(part, path)


class StreamServer:
    """gst-launch-1.0 serving a made stream as MPEG-TS over TCP, paced at its rate; a
    client joins at the latest keyframe. Starts at the file's beginning when created."""

    def __init__(self, clip: Clip) -> None:
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        command = [
            GST_LAUNCH, "-q", "filesrc", f"location={clip.path}", "!", "qtdemux", "!",
            "h264parse", "config-interval=-1", "!", "mpegtsmux", "!", "tcpserversink",
            "host=127.0.0.1", f"port={self.port}", "sync=true", "sync-method=latest-keyframe",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BenchError(f"the stream server exited ({self.proc.returncode}): {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=POLL_S):
                    return
            except OSError:
                time.sleep(POLL_S)  # polling a port with a deadline, not synchronisation
        raise BenchError(f"the stream server did not listen on {self.url} within 20 s")

    def __enter__(self) -> StreamServer:
        self.wait_listening()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def latency_buckets(metrics_url: str) -> dict[float, float]:
    """Cumulative counts of actiond_event_latency_seconds per upper bound, all cameras."""
    with urllib.request.urlopen(metrics_url, timeout=HTTP_TIMEOUT_S) as response:
        text = response.read().decode()
    counts: dict[float, float] = {}
    for match in _BUCKET_RE.finditer(text):
        le = math.inf if match["le"] == "+Inf" else float(match["le"])
        counts[le] = counts.get(le, 0.0) + float(match["n"])
    return counts


def latency_report(
    before: dict[float, float], after: dict[float, float]
) -> dict[str, float | None]:
    """Events in the window and their capture -> event latency p50/p99 in seconds,
    interpolated inside the histogram's buckets as Prometheus' histogram_quantile does
    (None without events; the +Inf bucket answers its lower bound)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, float | None] = {"events": total}
    for name, q in (("p50_s", 0.5), ("p99_s", 0.99)):
        out[name] = _quantile(q, bounds, counts) if total else None
    return out


def _quantile(q: float, bounds: list[float], counts: list[float]) -> float:
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return round(lower + (bound - lower) * share, 3)
        lower, below = bound, count
    return lower
