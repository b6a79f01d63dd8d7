"""Progress of long commands: `bench load --sweep`, `bench soak` and `eval` on a terminal.

The commands run as a user runs them, with stderr on a real pseudo-terminal (pty) and
stdout on a pipe, on the smallest inputs they take (one camera, seconds-long runs, tiny
generated clips and model): on the terminal each shows its steps ("sweep 1/1: ...") with
lines redrawn in place; with --json stdout is the JSON document alone and the terminal
gets nothing. Unit tests of daemon.progress (drawing, time left, quiet) beside them.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from media import make_clip
from models import brightness_model

from daemon.exitcodes import ExitCode
from daemon.progress import CLEAR_TO_END, Progress, format_left

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 150.0
READ_BYTES = 4096


# --- daemon.progress ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_steps_redraw_in_place_and_estimate_the_time_left() -> None:
    out, clock = io.StringIO(), FakeClock()
    shown = Progress("sweep", 3, out, enabled=True, clock=clock)
    shown.step(1, "1 camera(s)")
    shown.status("measuring")  # nothing finished, nothing expected: no estimate
    clock.now_s += 20
    shown.finish("held")
    shown.step(2, "2 camera(s)")
    clock.now_s += 5
    shown.status("measuring")  # steps 2 and 3 at 20 s each, 5 s of step 2 gone
    lines = out.getvalue().split("\r")[1:]
    assert lines == [
        f"sweep 1/3: 1 camera(s){CLEAR_TO_END}",
        f"sweep 1/3: 1 camera(s), measuring{CLEAR_TO_END}",
        f"sweep 1/3: 1 camera(s): held (20 s){CLEAR_TO_END}\n",
        f"sweep 2/3: 2 camera(s), 40 s left{CLEAR_TO_END}",
        f"sweep 2/3: 2 camera(s), measuring, 35 s left{CLEAR_TO_END}",
    ]


def test_an_expected_step_time_or_the_callers_time_left_is_used() -> None:
    out, clock = io.StringIO(), FakeClock()
    shown = Progress("bench soak", 0, out, enabled=True, clock=clock)
    shown.step(1, "clip.mp4")
    shown.status("12 s: rss 80 MiB", left_s=258)
    assert out.getvalue().endswith(
        f"\rbench soak: clip.mp4, 12 s: rss 80 MiB, 4 min 18 s left{CLEAR_TO_END}"
    )
    shown.close()
    assert out.getvalue().endswith("\n")
    out = io.StringIO()
    sweep = Progress("sweep", 2, out, enabled=True, clock=clock)
    sweep.expected_step_s = 12.0  # two steps of 12 s, 2 s gone
    sweep.step(1, "1 camera(s)")
    clock.now_s += 2
    sweep.status("")
    assert out.getvalue().endswith(f"\rsweep 1/2: 1 camera(s), 22 s left{CLEAR_TO_END}")


def test_a_timed_start_up_counts_in_the_first_steps_estimate() -> None:
    out, clock = io.StringIO(), FakeClock()
    sweep = Progress("sweep", 2, out, enabled=True, clock=clock)
    sweep.step(1, "1 camera(s)")
    sweep.status("starting the daemon")  # its start-up not timed yet: no estimate
    clock.now_s += 15  # a 15 s start-up, then 5 s of warm-up and 20 s measured to go
    sweep.expect_rest(25.0)
    sweep.status("warming up")
    clock.now_s += 5
    sweep.status("measuring")  # 20 s of this step and a whole 40 s step after it
    lines = out.getvalue().split("\r")[1:]
    assert lines[1:] == [
        f"sweep 1/2: 1 camera(s), starting the daemon{CLEAR_TO_END}",
        f"sweep 1/2: 1 camera(s), warming up, 1 min 5 s left{CLEAR_TO_END}",
        f"sweep 1/2: 1 camera(s), measuring, 1 min left{CLEAR_TO_END}",
    ]
    clock.now_s += 20
    sweep.finish("held")  # 40 s, as expected
    sweep.step(2, "2 camera(s)")
    sweep.expect_rest(1.0)  # a finished step's time wins over any expectation
    sweep.status("")
    assert out.getvalue().endswith(f"\rsweep 2/2: 2 camera(s), 40 s left{CLEAR_TO_END}")


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    shown = Progress("eval", 2, out, enabled=False)
    shown.step(1, "a.mp4 (plain)")
    shown.status("replaying", left_s=3)
    shown.finish("1 hit")
    shown.note("made")
    shown.close()
    assert out.getvalue() == ""


def test_on_terminal_is_quiet_off_a_terminal_and_with_json() -> None:
    # pytest captures stderr: not a terminal here.
    assert not Progress.on_terminal("eval", 1, quiet=False).enabled
    assert not Progress.on_terminal("eval", 1, quiet=True).enabled


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s left"), (37.4, "37 s left"), (60, "1 min left"), (258, "4 min 18 s left")]
    + [(3 * 3600 + 120, "3 h 2 min left")],
)
def test_time_left_reads_like_a_person_says_it(seconds: float, text: str) -> None:
    assert format_left(seconds) == text


# --- the commands on a pseudo-terminal ---------------------------------------------------


def on_a_terminal(args: list[str], cwd: Path = REPO) -> tuple[int, str, str]:
    """Run `python -m daemon ARGS` with stderr on a pty: (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    terminal = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(master, READ_BYTES)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            terminal.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(RUN_TIMEOUT_S)
    os.close(master)
    return proc.returncode, stdout.decode(), terminal.decode(errors="replace")


@pytest.fixture
def media(tmp_path: Path) -> list[str]:
    clip = make_clip(tmp_path / "box.mp4", frames=20, size=(96, 72), fps=10.0)
    model = brightness_model(tmp_path / "brightness.onnx")
    return ["--clip", str(clip), "--model", str(model)]


LOAD_ARGS = ["bench", "load", "--max-cameras", "1", "--seconds", "2", "--warmup", "0"]
SOAK_ARGS = ["bench", "soak", "--minutes", "0.05", "--interval", "1"]


@pytest.mark.timeout(200)
def test_bench_load_sweep_shows_its_steps_on_a_terminal(media: list[str]) -> None:
    code, stdout, terminal = on_a_terminal([*LOAD_ARGS, *media])
    assert code == ExitCode.OK, terminal
    assert "sweep 1/1: 1 camera(s), starting the daemon" in terminal
    # The time left counts the timed start-up: the 2 s measured are still to come (it
    # said "0 s left" when the start-up was not counted).
    assert re.search(r"sweep 1/1: 1 camera\(s\), measuring for 2 s, [12] s left", terminal), (
        terminal
    )
    assert re.search(r"\rsweep 1/1: 1 camera\(s\): (HOLDS|does not hold) \(overlay fps", terminal)
    assert "largest camera count held" in stdout and "sweep" not in stdout


@pytest.mark.timeout(200)
def test_bench_soak_shows_samples_and_time_left_on_a_terminal(media: list[str]) -> None:
    code, stdout, terminal = on_a_terminal([*SOAK_ARGS, *media])
    assert code in (ExitCode.OK, ExitCode.FAILURE), terminal  # a 3 s soak may miss a target
    assert "bench soak: box.mp4, 0.05 min, starting the daemon, 3 s left" in terminal
    assert " s: rss " in terminal and " s left" in terminal
    assert "samples (" in terminal  # finished: "<n> samples (<took> s)"
    assert stdout.strip() and "bench soak" not in stdout


@pytest.mark.timeout(200)
@pytest.mark.parametrize("command", ["load", "soak"])
def test_bench_json_on_a_terminal_prints_json_only(command: str, media: list[str]) -> None:
    args = LOAD_ARGS if command == "load" else SOAK_ARGS
    code, stdout, terminal = on_a_terminal([*args, *media, "--json"])
    assert code in (ExitCode.OK, ExitCode.FAILURE), terminal
    assert isinstance(json.loads(stdout), dict)  # the document and nothing else
    # A soak that misses a target says so in one error line; no progress line at all.
    lines = terminal.replace("\r\n", "\n").split("\n")
    errors = [line for line in lines if line.startswith(f"actiond bench {command}: ")]
    assert [line for line in lines if line] == errors, "progress on the terminal despite --json"
    assert "\r" not in "".join(lines)


def eval_inputs(tmp_path: Path) -> list[str]:
    """Two still 1-second clips labelled empty, scored on the clip pipeline."""
    clips, labels = tmp_path / "clips", tmp_path / "labels"
    clips.mkdir()
    labels.mkdir()
    for name in ("still_a", "still_b"):
        make_clip(clips / f"{name}.mp4", frames=10, size=(96, 72), fps=10.0, pattern="still")
        doc = {"clip": f"{name}.mp4", "fps": 10.0, "frames": 10, "people_present": False}
        (labels / f"{name}.json").write_text(json.dumps({**doc, "people": [], "events": []}))
    (tmp_path / "base.toml").write_text("")
    return ["eval", "--clips", str(clips), "--labels", str(labels), "--pipeline", "clip"] + [
        "--config",
        str(tmp_path / "base.toml"),
    ]


@pytest.mark.timeout(300)
def test_eval_shows_each_run_on_a_terminal_and_nothing_with_json(tmp_path: Path) -> None:
    args = eval_inputs(tmp_path)
    code, stdout, terminal = on_a_terminal(args, cwd=tmp_path)
    assert code == ExitCode.OK, terminal
    assert "eval 1/2: still_a.mp4 (plain), replaying through the daemon" in terminal
    assert "\reval 2/2: still_b.mp4 (plain): 0 hit, 0 false alarm" in terminal
    assert "eval " not in stdout
    code, stdout, terminal = on_a_terminal([*args, "--json"], cwd=tmp_path)
    assert code == ExitCode.OK, terminal
    assert json.loads(stdout)["pipeline"] == "clip" and terminal == ""
