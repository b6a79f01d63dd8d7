"""Capture backends behind one protocol and one table (daemon.capture).

FrameSource's reconnect, stall and replay logic driven through fake backends that
implement CaptureBackend and are registered in a copy of the table (no module state);
a backend defined here in one class plus one SourceKind; the shipped `images:` backend
from the table to a real daemon; and the table staying light for check-config.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon
from media import draw_marker, read_marker, texture
from models import brightness_model

from daemon.capture.protocol import CaptureBackend, OpenOptions
from daemon.capture.table import (
    SOURCES,
    SourceKind,
    SourceTable,
    load_backend,
    prefixed,
    resolve_source,
    unchanged,
)
from daemon.config import CameraConfig, ConfigError, load_config
from daemon.exitcodes import ExitCode
from daemon.stages.capture import FrameSource, SourceError

FRAME_SHAPE = (48, 64, 3)


def camera(source: str, **overrides: object) -> CameraConfig:
    settings: dict[str, object] = {
        "name": "cam",
        "source": source,
        "width": 64,
        "height": 48,
        "realtime": False,
        "reconnect_backoff_min_s": 0.01,
        "reconnect_backoff_max_s": 0.02,
    }
    settings.update(overrides)
    return CameraConfig(**settings)  # type: ignore[arg-type]


def marked(index: int) -> np.ndarray:
    """A 120x160 BGR frame carrying `index` in its marker strip."""
    frame = cv2.cvtColor(texture(120, 160, seed=index), cv2.COLOR_GRAY2BGR)
    draw_marker(frame, index)
    return frame


# --- a generated replay: one class + one SourceKind is a whole backend -----------------


class GeneratedFrames:
    """`frames:<n>`: n marked frames at 20 fps, then the end (a CaptureBackend)."""

    def __init__(self, source: str, options: OpenOptions) -> None:
        self.count = int(source.removeprefix("frames:"))
        self.next = -1  # not open

    def open(self) -> bool:
        self.next = 0
        return True

    def read(self) -> np.ndarray | None:
        if not 0 <= self.next < self.count:
            return None
        self.next += 1
        return marked(self.next - 1)

    def release(self) -> None:
        self.next = -1

    @property
    def fps(self) -> float:
        return 20.0


FRAMES_KIND = SourceKind("frames", prefixed("frames:"), unchanged, GeneratedFrames, ends=True)


def test_a_backend_is_one_class_and_one_table_entry() -> None:
    table = SOURCES.with_kind(FRAMES_KIND)
    frames = FrameSource(camera("frames:6", loop=True), "frames:6", table)
    markers = []
    for _ in range(9):
        got = frames.read()
        assert got is not None and got[0].shape == FRAME_SHAPE
        markers.append(read_marker(got[0]))
    assert markers == [0, 1, 2, 3, 4, 5, 0, 1, 2]  # looped by FrameSource, not the backend
    assert (frames.kind, frames.is_live, frames.native_fps) == ("frames", False, 20.0)
    assert table.kind_of("frames:6").ends
    # The shipped table is untouched: there "frames:6" is a (missing) file.
    assert SOURCES.kind_of("frames:6").name == "file"


@pytest.mark.timeout(30)
def test_a_new_backend_is_paced_and_ends_like_a_file() -> None:
    table = SOURCES.with_kind(FRAMES_KIND)
    frames = FrameSource(camera("frames:5", realtime=True), "frames:5", table)
    stamps = []
    while (got := frames.read()) is not None:
        stamps.append(got[1])
    assert len(stamps) == 5 and frames.read() is None
    assert (stamps[-1] - stamps[0]) / 1e9 >= 0.9 * 4 / 20  # the backend's 20 fps


# --- a scripted live stream: reconnects, backoff and stalls without a network ----------


class ScriptedStream:
    """A live CaptureBackend: opens fail `failing_opens` times, then each connection
    gives `frames_each` frames and is lost; reads take `read_s`."""

    def __init__(self, failing_opens: int, frames_each: int, read_s: float = 0.0) -> None:
        self.failing_opens, self.frames_each, self.read_s = failing_opens, frames_each, read_s
        self.opens = self.releases = 0
        self.left = 0
        self.options: OpenOptions | None = None

    def factory(self, source: str, options: OpenOptions) -> CaptureBackend:
        self.options = options
        return self

    def open(self) -> bool:
        self.opens += 1
        if self.opens <= self.failing_opens:
            return False
        self.left = self.frames_each
        return True

    def read(self) -> np.ndarray | None:
        time.sleep(self.read_s)  # stands in for a blocking network read
        if self.left <= 0:
            return None
        self.left -= 1
        return marked(self.opens)

    def release(self) -> None:
        self.releases += 1

    @property
    def fps(self) -> float:
        return 90000.0  # an RTSP clock rate, not a frame rate


def scripted(stream: ScriptedStream) -> SourceTable:
    return SOURCES.with_kind(
        SourceKind("fake", prefixed("fake:"), unchanged, stream.factory, live=True)
    )


@pytest.mark.timeout(30)
def test_a_lost_live_stream_is_reopened_through_the_protocol() -> None:
    stream = ScriptedStream(failing_opens=2, frames_each=3)
    frames = FrameSource(
        camera("fake:cam", open_timeout_s=3.0, read_timeout_s=2.0), "fake:cam", scripted(stream)
    )
    frames.open()
    assert not frames.connected and frames.is_live  # down at start: no error
    stop = threading.Event()
    connections = [read_marker(got[0]) for _ in range(7) if (got := frames.read(stop)) is not None]
    # Opens 1-2 fail, 3 gives 3 frames, 4 gives 3, 5 gives the seventh.
    assert connections == [3, 3, 3, 4, 4, 4, 5]
    assert frames.reconnects_total == 4 and stream.releases == 2
    assert frames.stalls_total == 0 and frames.connected
    assert frames.native_fps == 0.0  # the implausible 90 kHz "fps" means unknown
    # The camera's size (no crop): a backend that can scales while decoding.
    assert stream.options == OpenOptions(
        open_timeout_s=3.0, read_timeout_s=2.0, fps=0.0, size=(64, 48)
    )
    frames.close()
    assert stream.releases == 3 and frames.read() is None


@pytest.mark.timeout(30)
def test_a_read_that_runs_into_the_read_timeout_is_a_stall() -> None:
    stream = ScriptedStream(failing_opens=0, frames_each=0, read_s=0.1)
    frames = FrameSource(camera("fake:cam", read_timeout_s=0.1), "fake:cam", scripted(stream))
    frames.open()
    stop = threading.Event()
    thread = threading.Thread(target=frames.read, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while frames.stalls_total < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling interval; the counter is what synchronises
    stop.set()
    thread.join(timeout=10)
    assert frames.stalls_total >= 2 and frames.reconnects_total >= 1


# --- the table ----------------------------------------------------------------------------


def test_every_shipped_backend_loads_and_has_the_protocol() -> None:
    for kind in SOURCES.kinds:
        if isinstance(kind.backend, str):
            backend = load_backend(kind.backend)("x", OpenOptions())
            for verb in ("open", "read", "release"):
                assert callable(getattr(backend, verb)), (kind.name, verb)
            assert isinstance(backend.fps, float), kind.name
    assert SOURCES.kinds[-1].recognise("anything at all"), "the last kind takes any source"
    with pytest.raises(ValueError, match="named twice"):
        SOURCES.with_kind(SourceKind("file", prefixed("x:"), unchanged, None))


def test_unresolved_sample_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="camera cam: source 'sample:x' was not resolved"):
        FrameSource(camera("sample:x"), "sample:x")


@pytest.mark.timeout(60)
def test_the_table_and_config_loader_import_no_cv2() -> None:
    code = (
        "import sys, daemon.capture.table, daemon.config; "
        "heavy = {'cv2', 'numpy'} & set(sys.modules); assert not heavy, heavy"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


# --- images:<glob>, the shipped image-sequence backend ---------------------------------


def write_sequence(folder: Path, count: int, suffix: str = ".png") -> None:
    folder.mkdir(exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame_{i}{suffix}"), marked(i))


def test_images_replay_in_natural_order_and_loop(tmp_path: Path) -> None:
    write_sequence(tmp_path / "seq", 12)  # frame_10 sorts after frame_9, not after frame_1
    source = resolve_source("images:seq/*.png", tmp_path)
    assert source == f"images:{tmp_path}/seq/*.png"
    frames = FrameSource(camera(source, loop=True), source)
    markers = [read_marker(got[0]) for _ in range(14) if (got := frames.read()) is not None]
    assert markers == [*range(12), 0, 1]
    assert (frames.kind, frames.is_live, frames.native_fps) == ("images", False, 0.0)


def test_images_end_and_a_corrupt_image_is_named(tmp_path: Path) -> None:
    write_sequence(tmp_path, 3, ".jpg")
    frames = FrameSource(camera(f"images:{tmp_path}/*.jpg"), f"images:{tmp_path}/*.jpg")
    assert [read_marker(got[0]) for got in iter(frames.read, None)] == [0, 1, 2]
    (tmp_path / "frame_1.jpg").write_bytes(b"not a jpeg")
    again = FrameSource(camera(f"images:{tmp_path}/*.jpg"), f"images:{tmp_path}/*.jpg")
    assert again.read() is not None
    with pytest.raises(SourceError, match="cannot decode image .*frame_1.jpg"):
        again.read()


@pytest.mark.parametrize(
    "source, says",
    [
        ("images:none/*.jpg", "matches no files"),
        ("images:.", "is a directory; name the images with a glob such as images:"),
    ],
)
def test_bad_images_source_is_one_config_error(tmp_path: Path, source: str, says: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\nshm_dir = "/dev/shm"\n[[cameras]]\nname = "cam"\nsource = "{source}"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == "cameras[0].source"
    assert says in caught.value.reason and "\n" not in str(caught.value)


@pytest.mark.timeout(180)
def test_daemon_plays_an_image_sequence_to_its_end(tmp_path: Path, daemons: list[Daemon]) -> None:
    write_sequence(tmp_path / "seq", 20, ".jpg")
    cam = {
        "name": "cam",
        "source": "images:seq/*.jpg",
        "width": 160,
        "height": 120,
        "realtime": False,
        "ring_policy": "block",
    }
    d = Daemon(
        tmp_path,
        [cam],
        {
            "motion": {"width": 32, "height": 32},
            "inference": {"stride": 2, "model": str(brightness_model(tmp_path / "b.onnx"))},
        },
    )
    daemons.append(d.start())
    code = d.wait(120)
    output = d.log()
    assert code == ExitCode.OK, output[-4000:]
    assert "cam.source finished" in output and "Traceback" not in output
    assert [f["frame_id"] for f in d.frames()] == list(range(20)), "every image, in order"
