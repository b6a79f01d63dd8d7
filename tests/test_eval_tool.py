"""tools/eval_demo_model.py run as a user runs it: it finds its clips where the benchmarks
find sample clips (or in --media), skips a labelled clip it cannot find with a line, and
a label the model does not have is one line and exit 2, not a KeyError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_clip

from daemon.bench.procstats import MEDIA_DIR_ENV
from daemon.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "eval_demo_model.py"
CLIP_FRAMES = 40
RUN_TIMEOUT_S = 100


def labels_dir(tmp_path: Path, *specs: dict) -> Path:
    folder = tmp_path / "labels"
    folder.mkdir()
    for i, spec in enumerate(specs):
        (folder / f"{i}.json").write_text(json.dumps(spec))
    return folder


def spec(clip: str, label: str = "idle") -> dict:
    return {"clip": clip, "segments": [{"start": 0, "end": CLIP_FRAMES, "label": label}]}


def run_tool(*args: str, media_env: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MEDIA_DIR_ENV}
    if media_env is not None:
        env[MEDIA_DIR_ENV] = str(media_env)
    # From another directory: the tool must not depend on the working directory.
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    make_clip(folder / "tiny-eval-clip.mp4", frames=CLIP_FRAMES, pattern="still")
    return folder


def test_default_media_is_where_the_benchmarks_find_clips(tmp_path: Path, media: Path) -> None:
    labels = labels_dir(tmp_path, spec("tiny-eval-clip.mp4"), spec("not-there.mkv"))
    done = run_tool("--labels", str(labels), "--json", media_env=media)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["idle"]["windows"] > 0
    skipped = [line for line in done.stderr.splitlines() if "not-there.mkv" in line]
    assert len(skipped) == 1 and "--media" in skipped[0], done.stderr


def test_explicit_media_and_no_clip_found(tmp_path: Path, media: Path) -> None:
    labels = labels_dir(tmp_path, spec("tiny-eval-clip.mp4"))
    done = run_tool(
        "--labels", str(labels), "--media", str(media), "--json", media_env=tmp_path / "elsewhere"
    )
    assert done.returncode == ExitCode.OK, done.stderr
    done = run_tool("--labels", str(labels), "--media", str(tmp_path))
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr.splitlines()[-1] == (
        f"eval_demo_model: none of the labelled clips is in {tmp_path}; pass --media DIR"
    )


def test_a_label_the_model_does_not_have_is_one_line(tmp_path: Path, media: Path) -> None:
    labels = labels_dir(tmp_path, spec("tiny-eval-clip.mp4", label="running"))
    done = run_tool("--labels", str(labels), "--media", str(media))
    assert done.returncode == ExitCode.CONFIG, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"eval_demo_model: {labels / '0.json'}: label 'running' ")
    assert "walk_left" in lines[0] and "--model" in lines[0]
