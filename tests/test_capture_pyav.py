"""The PyAV backend of files and URLs (daemon.capture.pyav): frames scaled to the camera's
size while decoding look like the frames OpenCV decoded and resized before; a crop
decodes raw; damaged packets are skipped; a file without video is a clear error.
Real files made by cv2.VideoWriter (tests/media.py), real FFmpeg through PyAV."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, free_port, wait_for
from media import make_clip, read_marker
from metrics_helpers import label_set, parse_samples, scrape_text

from daemon.capture.file import FileCapture
from daemon.capture.protocol import OpenOptions, SourceError
from daemon.config import CameraConfig
from daemon.stages.capture import FrameSource, crop_and_resize

pytestmark = pytest.mark.timeout(60)

CLIP_SIZE = (320, 240)
CAMERA_SIZE = (128, 96)
FRAMES = 30
# Mean absolute difference (0..255) allowed between the old and new decode of a frame:
# the same decoder; swscale's YUV->BGR and area scaling against OpenCV's round apart.
MAX_MEAN_DIFF = 1.5


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("pyav") / "clip.mp4", frames=FRAMES, size=CLIP_SIZE, fps=15
    )


def decoded(path: Path, size: tuple[int, int] | None) -> list[np.ndarray]:
    """Every frame of `path` from the PyAV backend (scaled to `size` unless None)."""
    cap = FileCapture(str(path), OpenOptions(size=size))
    assert cap.open()
    frames = []
    while (frame := cap.read()) is not None:
        frames.append(frame)
    cap.release()
    cap.release()  # harmless twice
    return frames


def opencv_decoded(path: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """The same file as the OpenCV backend gave it, resized by crop_and_resize."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(crop_and_resize(frame, None, *size))
    cap.release()
    return frames


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frames_scaled_while_decoding_match_the_opencv_decode_and_resize(clip: Path) -> None:
    new = decoded(clip, CAMERA_SIZE)
    old = opencv_decoded(clip, CAMERA_SIZE)
    assert len(new) == len(old) == FRAMES
    assert {f.shape for f in new} == {(CAMERA_SIZE[1], CAMERA_SIZE[0], 3)}
    assert [read_marker(f) for f in new] == list(range(FRAMES))
    diffs = [mean_diff(a, b) for a, b in zip(new, old)]
    assert max(diffs) < MAX_MEAN_DIFF, diffs


def test_without_a_size_frames_come_raw(clip: Path) -> None:
    raw = decoded(clip, None)
    assert {f.shape for f in raw} == {(CLIP_SIZE[1], CLIP_SIZE[0], 3)}
    assert {f.dtype for f in raw} == {np.dtype(np.uint8)}
    # Enlarging is left to the decoder too (bilinear, as crop_and_resize does).
    big = decoded(clip, (640, 480))
    assert {f.shape for f in big} == {(480, 640, 3)}
    assert [read_marker(f) for f in big] == list(range(FRAMES))


def camera(source: Path, **overrides: object) -> CameraConfig:
    settings: dict[str, object] = {
        "name": "cam",
        "source": str(source),
        "width": CAMERA_SIZE[0],
        "height": CAMERA_SIZE[1],
        "realtime": False,
    }
    settings.update(overrides)
    return CameraConfig(**settings)  # type: ignore[arg-type]


def test_a_cropped_camera_decodes_raw_and_crops(clip: Path) -> None:
    crop = (40, 30, 200, 150)
    source = FrameSource(camera(clip, crop=crop), str(clip))
    source.open()
    got = source.read()
    assert got is not None
    expected = crop_and_resize(decoded(clip, None)[0], crop, *CAMERA_SIZE)
    np.testing.assert_array_equal(got[0], expected)
    source.close()


def damaged_copy(clip: Path, path: Path) -> Path:
    """`clip` with 3000 bytes of noise in its middle (some packets no longer decode)."""
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    noise = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    data[middle : middle + len(noise)] = noise
    path.write_bytes(bytes(data))
    return path


def test_damaged_packets_are_skipped_and_the_replay_goes_on(clip: Path, tmp_path: Path) -> None:
    damaged = damaged_copy(clip, tmp_path / "damaged.mp4")
    source = FrameSource(camera(damaged), str(damaged))
    source.open()
    markers = []
    while (got := source.read()) is not None:
        markers.append(read_marker(got[0]))
    # Frames up to the damage, then past it to the last one (OpenCV's reader stopped).
    assert markers[:5] == list(range(5)) and markers[-1] == FRAMES - 1, markers
    assert len(markers) < FRAMES + 5, markers
    assert source.frames_undecodable_total >= 1


@pytest.mark.timeout(120)
def test_a_daemon_counts_the_skipped_packets_as_lost_frames(clip: Path, tmp_path: Path) -> None:
    damaged = damaged_copy(clip, tmp_path / "damaged.mp4")
    port = free_port()
    cam = {"name": "yard", "source": str(damaged), "realtime": False, "loop": True}
    daemon = Daemon(tmp_path, [cam], {"metrics": {"listen": f"127.0.0.1:{port}"}}).start()
    lost = label_set(camera="yard", stage="source", item="frame", reason="undecodable")

    def lost_frames() -> float:
        try:
            samples = parse_samples(scrape_text(f"http://127.0.0.1:{port}/metrics"))
        except OSError:  # not listening yet
            return 0.0
        return samples.get("actiond_lost_total", {}).get(lost, 0.0)

    try:
        wait_for(lambda: lost_frames() >= 1, 90, "undecodable frames in actiond_lost_total")
        assert daemon.stop() == 0, daemon.log()
    finally:
        daemon.cleanup()
    assert "Traceback" not in daemon.log()


def test_a_file_without_video_is_a_clear_error(tmp_path: Path) -> None:
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(16000))
    with pytest.raises(SourceError, match=r"cannot decode video file .*sound.wav.*no video"):
        FileCapture(str(sound), OpenOptions()).open()


def test_damaged_packets_are_logged_once_and_counted_all(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(clip.read_bytes())
    noise = np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    for share in (0.3, 0.5, 0.7):  # damage in three places: several bad packets
        start = int(len(data) * share)
        data[start : start + len(noise)] = noise
    damaged = tmp_path / "damaged3.mp4"
    damaged.write_bytes(bytes(data))
    caplog.set_level(logging.INFO, logger="daemon.capture")
    cap = FileCapture(str(damaged), OpenOptions())
    assert cap.open()
    while cap.read() is not None:
        pass
    cap.release()
    lines = [r for r in caplog.records if "does not decode" in r.getMessage()]
    assert cap.undecodable_total >= 2
    # Before: one INFO line per damaged packet.
    assert len(lines) == 1, [r.getMessage() for r in lines]
