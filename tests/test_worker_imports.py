"""What each worker process loads: its own stage's libraries only, however the daemon was
started. onnxruntime alone is about 20 MiB of private memory per process, and an edge box
runs four workers per camera."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from daemon_proc import Daemon, wait_for

from daemon.exitcodes import ExitCode

START_S = 60.0
WORKERS = ("cam1.source", "cam1.motion", "cam1.overlay", "infer.0")


def loads_onnxruntime(pid: int) -> bool:
    return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("console_script", [True, False], ids=["actiond", "python-m-daemon"])
def test_only_the_infer_worker_loads_onnxruntime(
    tmp_path: Path, daemons: list[Daemon], console_script: bool
) -> None:
    if console_script:
        script = Path(sys.executable).with_name("actiond")
        assert script.exists(), f"{script} missing: install the package (`make test` does)"
    camera = {"name": "cam1", "source": "test:moving-box", "width": 160, "height": 120, "fps": 10}
    d = Daemon(
        tmp_path, [camera], {"motion": {"width": 64, "height": 64}}, console_script=console_script
    )
    daemons.append(d.start())
    wait_for(lambda: all(d.heartbeat_fresh(w) for w in WORKERS), START_S, "all workers up")
    loaded = {w: loads_onnxruntime(d.worker_pid(w)) for w in WORKERS}
    assert loaded == {w: w.startswith("infer.") for w in WORKERS}
    assert d.stop() == ExitCode.OK, d.log()


@pytest.mark.timeout(60)
def test_the_console_script_entry_imports_nothing_heavy() -> None:
    # A spawned worker re-runs pip's `actiond` wrapper, which imports daemon.entry.
    code = (
        "import sys, daemon.entry; heavy = {'cv2', 'onnxruntime', 'onnx', 'numpy', "
        "'daemon.cli'} & set(sys.modules); assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


PERSON_WORKERS = ("room.source", "room.gate", "room.overlay", "detect.0")


@pytest.mark.timeout(180)
def test_the_person_overlay_does_not_load_onnxruntime(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # The people engine imports onnxruntime only to open a user's skeleton classifier;
    # with none configured the overlay must not carry it. The detect replicas run models.
    camera = {
        "name": "room",
        "source": "sample:one-by-one-person-detection.mp4",
        "pipeline": "person",
        "width": 320,
        "height": 180,
        "analyse_fps": 2.0,
        "loop": True,
    }
    d = Daemon(tmp_path, [camera])
    daemons.append(d.start())
    wait_for(lambda: all(d.heartbeat_fresh(w) for w in PERSON_WORKERS), START_S, "all workers up")
    loaded = {w: loads_onnxruntime(d.worker_pid(w)) for w in PERSON_WORKERS}
    assert loaded == {w: w.startswith("detect.") for w in PERSON_WORKERS}
    assert d.stop() == ExitCode.OK, d.log()
