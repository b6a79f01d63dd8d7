"""Event clips leave stderr alone: OpenCV prints `tag 'VP80' is not supported ...` with
fprintf at every WebM open, and daemon/display/webm_writer.py keeps that one line out
while anything else written to stderr meanwhile still gets there. Each check runs in a
real subprocess, so the bytes on its descriptor 2 are what a journal would get."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

WRITE_A_CLIP = """
import sys
from pathlib import Path
import numpy as np
from daemon.display.clipwriter import DONE, ClipEncoder

clip = Path(sys.argv[1])
encoder = ClipEncoder(10.0, 20)
frames = [np.full((120, 160, 3), v, np.uint8) for v in (10, 20)]
encoder.open("one", clip, frames)
assert encoder.frame(("one",), frames[0], copies=2)
encoder.close_clip("one", keep=True)
assert encoder.close()
(outcome,) = encoder.take_outcomes()
assert outcome.result == DONE and outcome.frames == 4, outcome
"""

OTHER_OUTPUT_KEPT = """
import os, sys
from pathlib import Path
from daemon.display import webm_writer

real_open = webm_writer._open

def open_and_talk(path, fps, size):  # another thread's line, inside the window
    os.write(2, b"another thread logs this\\n")
    return real_open(path, fps, size)

webm_writer._open = open_and_talk
writer = webm_writer.open_vp8_writer(Path(sys.argv[1]), 10.0, (160, 120))
assert writer.isOpened()
writer.release()
"""


def _run(code: str, clip: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", code, str(clip)], capture_output=True, timeout=50, check=False
    )


def test_writing_a_clip_prints_nothing(tmp_path: Path) -> None:
    clip = tmp_path / "cam" / "one.webm"
    done = _run(WRITE_A_CLIP, clip)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"" and done.stdout == b""
    assert clip.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (WebM) file
    assert b"webm" in clip.read_bytes()[:64]  # its doctype: WebM, not Matroska


def test_other_output_during_the_open_still_reaches_stderr(tmp_path: Path) -> None:
    done = _run(OTHER_OUTPUT_KEPT, tmp_path / "two.webm")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"another thread logs this\n"
