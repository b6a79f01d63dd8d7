"""An event clip whose frames stand for several slots (a camera slower than the clip, a
gap in the stream) plays right in a real headless Chromium: each such frame is encoded
once and held by its timestamp (daemon/display/webm_writer.py), so the browser must give
the clip its whole length and show the held frame all through its slots. The clip is
served over HTTP (a canvas may read a same-origin video's pixels) and played from a blob
(Python's test server answers no byte ranges, without which Chromium cannot seek; the
console's aiohttp does), sampled after seeks into the held frames."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import NEEDS_CHROMIUM, headless_chromium

from daemon.display.webm_writer import WebmWriter

FPS = 10.0
SIZE = (160, 120)
# Each frame a plain colour (BGR), and the slots it stands for: 13 slots, 1.3 s.
FRAMES = (
    ((0, 0, 255), 1),
    ((0, 255, 0), 3),
    ((255, 0, 0), 1),
    ((0, 255, 255), 4),
    ((255, 255, 0), 4),
)
COLOUR_TOLERANCE = 40  # VP8 at these sizes is within a few levels of a plain colour
DEADLINE_S = 30.0

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow, NEEDS_CHROMIUM]

PAGE = """<!doctype html><html><body>
<video id="v" muted preload="auto"></video>
<canvas id="c" width="160" height="120"></canvas></body></html>"""

# Load the clip; its duration once its first frame is there.
LOAD = """
const done = arguments[0];
const v = document.getElementById('v');
v.addEventListener('loadeddata', () => done(v.duration), {once: true});
fetch('clip.webm').then(r => r.blob()).then(b => { v.src = URL.createObjectURL(b); });
"""

# Seek to arguments[0] s; then where it is and the centre pixel's [r, g, b].
SAMPLE_AT = """
const [t, done] = arguments;
const v = document.getElementById('v');
v.addEventListener('seeked', () => {
  requestAnimationFrame(() => {
    const c = document.getElementById('c').getContext('2d');
    c.drawImage(v, 0, 0, 160, 120);
    done([v.currentTime, Array.from(c.getImageData(80, 60, 1, 1).data.slice(0, 3))]);
  });
}, {once: true});
v.currentTime = t;
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # no access log on stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = headless_chromium()
    driver.set_script_timeout(DEADLINE_S)
    yield driver
    driver.quit()


def test_held_frames_play_for_their_slots(tmp_path: Path, served: str, browser: Any) -> None:
    writer = WebmWriter(tmp_path / "clip.webm", FPS, SIZE)
    starts = []
    for bgr, slots in FRAMES:
        starts.append(writer.slots)
        writer.write(np.full((SIZE[1], SIZE[0], 3), bgr, np.uint8), slots)
    writer.close()
    (tmp_path / "index.html").write_text(PAGE)
    browser.get(f"{served}/index.html")
    duration = browser.execute_async_script(LOAD)
    assert abs(duration - writer.slots / FPS) < 0.5 / FPS, duration
    for (bgr, slots), start in zip(FRAMES, starts, strict=True):
        # the middle of the frame's last slot: still that frame, however long it is held
        at_s = (start + slots - 0.5) / FPS
        seeked_s, rgb = browser.execute_async_script(SAMPLE_AT, at_s)
        assert abs(seeked_s - at_s) < 1e-3, (at_s, seeked_s)
        assert np.abs(np.array(rgb) - np.array(bgr[::-1])).max() <= COLOUR_TOLERANCE, (
            start,
            slots,
            rgb,
        )
