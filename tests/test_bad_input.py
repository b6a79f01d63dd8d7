"""Bad input, as a user meets it through `actiond run` and `actiond check-config`.

Two tables. Inputs the daemon must refuse: each exits with its named code and a message
that names the problem, never a traceback, and leaves no shared memory behind. Inputs it
must live with: it keeps running or finishes normally, and shows every frame it accepted.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import REPO, Daemon, free_port, wait_for, write_config
from media import make_clip
from models import brightness_model

from daemon.exitcodes import ExitCode

START_S = 60.0  # spawning 4 workers (cv2 + onnxruntime imports) on 2 busy cores
FINISH_S = 90.0  # a short file played to its end, then a clean exit
COMMAND_S = 60.0  # one `check-config` or a `run` that refuses to start
SMALL_MOTION: dict[str, dict[str, object]] = {
    "motion": {"width": 32, "height": 32},
    "inference": {"stride": 2},
}
FULL_SHM_SIZE = "1M"  # far below one 1280x720 frames ring (4 slots of 2.7 MB)


def run_cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", command, "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_S,
        check=False,
    )


def decodable_frames(path: Path) -> int:
    """How many frames FFmpeg (through OpenCV, as the daemon reads) gets from `path`."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while cap.isOpened() and cap.read()[0]:
        count += 1
    cap.release()
    return count


# --- media that is wrong in one way ------------------------------------------------------


def truncated(clip: Path, name: str) -> Path:
    """The first half of `clip`'s bytes, as left by a copy that was cut off."""
    data = clip.read_bytes()
    out = clip.with_name(name)
    out.write_bytes(data[: len(data) // 2])
    return out


def size_changing_clip(path: Path) -> Path:
    """A raw MJPEG stream whose frames change from 160x120 to 320x240 half-way: each
    JPEG carries its own size, so FFmpeg decodes both halves from one file. (OpenCV 4.x
    / 5.0 then scales the later frames to the first size; the source resizes whatever
    size it gets, so either way every frame must come through.)"""
    with open(path, "wb") as f:
        for index in range(30):
            width, height = (160, 120) if index < 15 else (320, 240)
            frame = np.zeros((height, width, 3), np.uint8)
            frame[:, : width // 2] = 40 + 6 * index
            f.write(cv2.imencode(".jpg", frame)[1].tobytes())
    return path


def uhd_clip(path: Path) -> Path:
    return make_clip(path, frames=6, size=(3840, 2160), fps=5)


def closed_port_url() -> str:
    """An RTSP URL on a port nothing listens on (bound, then released)."""
    return f"rtsp://127.0.0.1:{free_port()}/x"


# --- table 1: refused, with a named exit code and a message ------------------------------

DAEMON = '[daemon]\nshm_dir = "{shm}"\n'
CAMERA = '[[cameras]]\nname = "cam"\nsource = "test:bars"\n'


@dataclass(frozen=True)
class Refusal:
    """A config `run` must refuse to start: TOML text where `{dir}` is the test's
    directory and `{shm}` a fresh shm dir, which must stay empty."""

    name: str
    toml: str
    says: tuple[str, ...]
    prepare: Callable[[Path], None] = lambda tmp: None


def corrupt_model(tmp: Path) -> None:
    rng = np.random.default_rng(11)
    (tmp / "corrupt.onnx").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())


REFUSALS = [
    Refusal("malformed-toml", DAEMON + '[[cameras]\nname = "cam"\n', ("not valid TOML", "line 3")),
    Refusal("unclosed-string", DAEMON + CAMERA + 'fps = "10\n', ("not valid TOML", "line 6")),
    Refusal(
        "wrong-type-int",
        DAEMON + CAMERA + 'width = "wide"\n',
        ("cameras[0].width", "must be an integer", "'wide'"),
    ),
    Refusal("not-utf8", "\udcff" + DAEMON + CAMERA, ("not valid TOML", "not UTF-8")),
    Refusal("empty-file", "", ("cameras", "no enabled camera")),
    Refusal(
        "wrong-type-bool", DAEMON + CAMERA + "loop = 1\n", ("cameras[0].loop", "must be a boolean")
    ),
    Refusal("wrong-type-table", "daemon = 5\n" + CAMERA, ("daemon", "must be a table")),
    Refusal(
        "unknown-key",
        DAEMON + 'shm_dri = "/dev/shm"\n' + CAMERA,
        ("daemon.shm_dri", "unknown key", "did you mean 'shm_dir'"),
    ),
    Refusal(
        "unknown-section",
        DAEMON + "[mystery]\na = 1\n" + CAMERA,
        ("mystery", "unknown key", "valid keys here"),
    ),
    Refusal(
        "missing-model",
        DAEMON + '[inference]\nmodel = "{dir}/missing.onnx"\n' + CAMERA,
        ("inference.model", "file not found", "missing.onnx"),
    ),
    Refusal(
        "corrupt-model",
        DAEMON + '[inference]\nmodel = "{dir}/corrupt.onnx"\n' + CAMERA,
        ("model error", "corrupt.onnx", "cannot be loaded", "fix inference.model"),
        corrupt_model,
    ),
    # Values that end up in file names and topics, timings, derived ports, paths.
    Refusal(
        "long-camera-name",
        DAEMON + f'[[cameras]]\nname = "{"c" * 250}"\nsource = "test:bars"\n',
        ("cameras[0].name", "at most 64 characters (got 250)"),
    ),
    Refusal(
        "vanishing-fps",
        DAEMON + CAMERA + "fps = 1e-9\n",
        ("cameras[0].fps", "between 0.1 and 240 frames per second (got 1e-09)"),
    ),
    Refusal(
        "derived-mjpeg-port-is-metrics",
        DAEMON + '[metrics]\nlisten = "127.0.0.1:9108"\n'
        '[display]\nmjpeg_listen = "127.0.0.1:9107"\n'
        + CAMERA
        + '[[cameras]]\nname = "yard"\nsource = "test:bars"\n',
        (
            "display.mjpeg_listen",
            "camera yard (cameras[1]) would serve MJPEG on port 9108",
            "also metrics.listen (127.0.0.1:9108)",
        ),
    ),
    Refusal(
        "directory-as-source",
        DAEMON + '[[cameras]]\nname = "cam"\nsource = "{dir}"\n',
        ("cameras[0].source", "is a directory, not a video file"),
    ),
]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
def test_refused_config_exits_2_naming_the_problem(tmp_path: Path, case: Refusal) -> None:
    shm = Path("/dev/shm") / f"actiond-bad-{tmp_path.name}"
    shm.mkdir()
    try:
        case.prepare(tmp_path)
        config = tmp_path / "config.toml"
        text = case.toml.replace("{dir}", str(tmp_path)).replace("{shm}", str(shm))
        # surrogateescape turns a lone "\udcff" into the byte 0xff: a file that is not UTF-8.
        config.write_bytes(text.encode("utf-8", "surrogateescape"))
        for command in ("check-config", "run"):
            proc = run_cli(command, config)
            output = proc.stdout + proc.stderr
            assert proc.returncode == ExitCode.CONFIG, f"{command}: {output}"
            for words in (str(config), *case.says):
                assert words in output, f"{command} did not say {words!r}: {output}"
            assert "Traceback" not in output
        assert list(shm.iterdir()) == [], "a refused config must not create shared memory"
    finally:
        shutil.rmtree(shm)


# --- table 2: bad media and environments, through a running daemon -----------------------


@dataclass
class Outcome:
    """What one scenario's daemon run must show."""

    code: int | None  # exit code; None: it keeps running (we SIGTERM it)
    says: tuple[str, ...] = ()
    all_frames: int = -1  # >= 0: exactly frame ids 0..n-1 shown, in order
    extra: Callable[[Daemon], None] = lambda d: None


@dataclass
class Scenario:
    """A camera list (built in the test's directory) and the outcome it must have."""

    name: str
    cameras: Callable[[Path], list[dict[str, object]]]
    outcome: Callable[[Path], Outcome]
    sections: dict[str, dict[str, object]] = field(default_factory=dict)


def file_camera(source: Path, width: int = 160, height: int = 120) -> dict[str, object]:
    # Lossless and unpaced: every decoded frame must reach the overlay.
    return {
        "name": "cam",
        "source": str(source),
        "width": width,
        "height": height,
        "realtime": False,
        "ring_policy": "block",
    }


def truncated_mp4(tmp: Path) -> Path:
    return truncated(make_clip(tmp / "whole.mp4", frames=40), "cut.mp4")


def truncated_mkv(tmp: Path) -> Path:
    return truncated(make_clip(tmp / "whole.mkv", frames=40), "cut.mkv")


def unreachable_extra(d: Daemon) -> None:
    wait_for(
        lambda: d.stats("lost.source").get("reconnects_total", 0) >= 2,
        START_S,
        "reconnect attempts to the unreachable camera",
    )
    shown = d.stats("good.overlay")["frames_out_total"]
    wait_for(
        lambda: d.stats("good.overlay")["frames_out_total"] > shown + 10,
        START_S,
        "the good camera to keep running",
    )
    assert "camera lost: cannot open rtsp://127.0.0.1:" in d.log()
    assert "marked failed" not in d.log()


SCENARIOS = [
    Scenario(
        "truncated-mp4-unreadable",
        lambda tmp: [file_camera(truncated_mp4(tmp))],
        lambda tmp: Outcome(
            ExitCode.ALL_CAMERAS_FAILED,
            ("cannot decode video file", "cut.mp4", "truncated", "camera cam is marked failed"),
        ),
    ),
    Scenario(
        "crop-outside-the-frame",
        lambda tmp: [
            {
                "name": "cam",
                "source": "test:bars",
                "crop": [2000, 2000, 100, 100],
                "width": 160,
                "height": 120,
            }
        ],
        lambda tmp: Outcome(
            ExitCode.ALL_CAMERAS_FAILED,
            (
                "crop (2000, 2000, 100, 100)",
                "outside the 640x480",
                "cannot start",
                "camera cam is marked failed",
            ),
        ),
    ),
    Scenario(
        "truncated-mkv-plays-what-decodes",
        lambda tmp: [file_camera(truncated_mkv(tmp))],
        lambda tmp: Outcome(
            ExitCode.OK, ("cam.source finished",), all_frames=decodable_frames(tmp / "cut.mkv")
        ),
    ),
    Scenario(
        "frame-size-changes-mid-stream",
        lambda tmp: [file_camera(size_changing_clip(tmp / "sizes.mjpeg"))],
        lambda tmp: Outcome(ExitCode.OK, all_frames=30),
    ),
    Scenario(
        "4k-source-into-720p-rings",
        lambda tmp: [file_camera(uhd_clip(tmp / "uhd.mp4"), 1280, 720)],
        lambda tmp: Outcome(ExitCode.OK, all_frames=decodable_frames(tmp / "uhd.mp4")),
    ),
    Scenario(
        "unreachable-camera-others-keep-running",
        lambda tmp: [
            {"name": "good", "source": "test:moving-box", "fps": 10, "width": 160, "height": 120},
            {
                "name": "lost",
                "source": closed_port_url(),
                "width": 160,
                "height": 120,
                "open_timeout_s": 1.0,
                "read_timeout_s": 1.0,
                "reconnect_backoff_min_s": 0.2,
                "reconnect_backoff_max_s": 0.5,
            },
        ],
        lambda tmp: Outcome(None, ("retrying with backoff",), extra=unreachable_extra),
    ),
]


def start_daemon(
    daemons: list[Daemon],
    tmp: Path,
    cameras: list[dict[str, object]],
    sections: dict[str, dict[str, object]],
) -> Daemon:
    merged: dict[str, dict[str, object]] = {k: dict(v) for k, v in SMALL_MOTION.items()}
    merged["inference"]["model"] = str(brightness_model(tmp / "brightness.onnx"))
    for name, table in sections.items():
        merged.setdefault(name, {}).update(table)
    d = Daemon(tmp, cameras, merged)
    daemons.append(d)
    return d.start()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", SCENARIOS, ids=lambda c: c.name)
def test_bad_media_is_named_or_survived(
    tmp_path: Path, daemons: list[Daemon], case: Scenario
) -> None:
    cameras = case.cameras(tmp_path)
    want = case.outcome(tmp_path)
    d = start_daemon(daemons, tmp_path, cameras, case.sections)
    if want.code is None:
        want.extra(d)
        code = d.stop()
        want_code = int(ExitCode.OK)
    else:
        code = d.wait(FINISH_S)
        want.extra(d)
        want_code = want.code
    output = d.log()
    assert code == want_code, output[-4000:]
    for words in want.says:
        assert words in output, f"the log does not say {words!r}: {output[-4000:]}"
    assert "Traceback" not in output
    if want.all_frames >= 0:
        assert want.all_frames > 0, "the test clip itself decodes to nothing"
        ids = [f["frame_id"] for f in d.frames()]
        assert ids == list(range(want.all_frames)), "every decoded frame, in order"
    assert d.leftovers() == []


# --- a full shared-memory filesystem -----------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny-shm"
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FULL_SHM_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a {FULL_SHM_SIZE} tmpfs (needs root or CAP_SYS_ADMIN): "
            f"{proc.stderr.strip()}"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=20)


@pytest.mark.timeout(120)
def test_full_shm_exits_4_naming_size_and_fix(tmp_path: Path, tiny_tmpfs: Path) -> None:
    model = brightness_model(tmp_path / "brightness.onnx")
    config = write_config(
        tmp_path / "config.toml",
        {
            "daemon": {"shm_dir": str(tiny_tmpfs), "state_dir": str(tmp_path / "state")},
            "metrics": {"listen": ""},
            "inference": {"model": str(model)},
            # The shared clips ring is built first and fits: a later ring is the one that
            # does not, so the rings made before it must be cleaned up.
            "motion": {"width": 32, "height": 32},
        },
        [{"name": "hd", "source": "test:bars", "width": 1280, "height": 720}],
    )
    assert run_cli("check-config", config).returncode == ExitCode.OK
    proc = run_cli("run", config)
    output = proc.stdout + proc.stderr
    assert proc.returncode == ExitCode.SHM, output
    for words in ("shared memory", str(tiny_tmpfs), "bytes", "--shm-size"):
        assert words in output, f"the message does not say {words!r}: {output}"
    assert "Traceback" not in output
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == [], (
        "segments created before the failing one must be removed"
    )


# --- addresses that cannot be listened on ------------------------------------------------


def in_use_address(tmp: Path, held: list[socket.socket]) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    held.append(sock)
    return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("address", "says"),
    [
        (in_use_address, "another process listens there"),
        # TEST-NET-1 (RFC 5737): never an address of this host.
        (lambda tmp, held: "192.0.2.1:9108", "not an address of this host"),
    ],
    ids=["in-use", "not-local"],
)
def test_unbindable_metrics_address_exits_6_in_one_line(
    tmp_path: Path, address: Callable[[Path, list[socket.socket]], str], says: str
) -> None:
    held: list[socket.socket] = []
    shm = Path("/dev/shm") / f"actiond-bad-{tmp_path.name}"
    shm.mkdir()
    try:
        listen = address(tmp_path, held)
        config = write_config(
            tmp_path / "config.toml",
            {
                "daemon": {"shm_dir": str(shm), "state_dir": str(tmp_path / "state")},
                "metrics": {"listen": listen},
                "inference": {"model": str(brightness_model(tmp_path / "brightness.onnx"))},
                **SMALL_MOTION,
            },
            [{"name": "cam", "source": "test:bars", "width": 160, "height": 120}],
        )
        assert run_cli("check-config", config).returncode == ExitCode.OK
        proc = run_cli("run", config)
        output = proc.stdout + proc.stderr
        assert proc.returncode == ExitCode.LISTEN, output
        errors = [line for line in output.splitlines() if "cannot listen" in line]
        assert len(errors) == 1, output
        for words in (str(config), f'metrics.listen = "{listen}"', says, 'or to ""'):
            assert words in errors[0], f"the message does not say {words!r}: {errors[0]}"
        assert "Traceback" not in output
        assert list(shm.iterdir()) == [], "the rings made before the failure are removed"
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(shm)


def test_the_unit_does_not_restart_on_exit_codes_a_restart_cannot_fix() -> None:
    unit = (REPO / "systemd" / "actiond.service").read_text()
    (line,) = re.findall(r"^RestartPreventExitStatus=(.*)$", unit, re.MULTILINE)
    assert {str(int(ExitCode.CONFIG)), str(int(ExitCode.LISTEN))} <= set(line.split())
    readme = (REPO / "README.md").read_text()
    assert f"| {int(ExitCode.LISTEN)} | LISTEN |" in readme


@pytest.mark.timeout(180)
def test_the_longest_camera_name_runs_and_records(tmp_path: Path, daemons: list[Daemon]) -> None:
    # The name ends up in ring, FIFO, stats block and recording file names.
    name = "c" * 64
    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    d = start_daemon(
        daemons,
        tmp_path,
        [{**file_camera(clip), "name": name}],
        {"display": {"record": str(tmp_path / "out.mp4")}},
    )
    assert d.wait(FINISH_S) == ExitCode.OK, d.log()[-4000:]
    output = d.log()
    assert "Traceback" not in output and "too long" not in output, output[-4000:]
    assert len(d.frames()) == 12
    assert (tmp_path / f"out-{name}.mp4").stat().st_size > 0
    assert d.leftovers() == []
