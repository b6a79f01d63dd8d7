"""Display outputs of the overlay stage: MJPEG view, an OpenCV window, a recording.

``open_outputs(cfg.display, fps, size)`` opens what [display] enables and returns a
``DisplayOutputs`` whose ``show(frame)`` feeds all of them. A configured output that cannot
work here (no GUI in OpenCV, a busy port, an unwritable file) raises ``DisplayUnavailable``
with what to change, so the daemon can report it as a configuration problem.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

from daemon.config import DisplayConfig
from daemon.display.mjpeg import MjpegServer

log = logging.getLogger(__name__)

WINDOW_WAIT_MS = 1  # waitKey pumps the GUI event loop; 1 ms keeps the pipeline moving
# Codecs that the FFmpeg in opencv-python wheels can write without GPL encoders.
FOURCC_BY_SUFFIX = MappingProxyType(
    {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
)
NO_GUI_MESSAGE = (
    "display.window = true needs a GUI-capable OpenCV (pip install opencv-python instead of "
    "opencv-python-headless, and a DISPLAY); use display.mjpeg_listen to watch in a browser "
    "instead"
)


class DisplayUnavailable(RuntimeError):
    """A configured display output cannot work on this machine; the message says why."""


def gui_backend(build_info: str) -> str | None:
    """The GUI backend named in ``cv2.getBuildInformation()``, or None for a headless build.

    Recent builds say ``GUI: NONE`` or ``GUI: GTK3``; older ones list backends below
    ``GUI:`` as ``QT: YES`` / ``GTK+: NO`` lines.
    """
    match = re.search(r"^( *)GUI:[ \t]*(.*)$", build_info, re.MULTILINE)
    if match is None:
        return None
    value = match.group(2).strip()
    if value:
        return None if value.upper() == "NONE" else value
    indent = len(match.group(1))
    for line in build_info[match.end() :].splitlines()[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break  # left the GUI section
        name, _, state = line.strip().partition(":")
        if state.strip().upper().startswith("YES") and name.strip() != "VTK support":
            return name.strip()
    return None


class WindowOutput:
    """Shows frames in an OpenCV window (cv2.imshow); needs a GUI-capable OpenCV."""

    def __init__(self, title: str) -> None:
        backend = gui_backend(cv2.getBuildInformation())
        if backend is None:
            raise DisplayUnavailable(NO_GUI_MESSAGE)
        # With no display server, Qt builds abort the whole process inside namedWindow
        # instead of raising, so check for one before touching the GUI.
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise DisplayUnavailable(
                f"display.window = true: OpenCV has a GUI ({backend}) but neither DISPLAY nor "
                "WAYLAND_DISPLAY is set (a systemd service has no desktop session); "
                "use display.mjpeg_listen to watch in a browser instead"
            )
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise DisplayUnavailable(f"{NO_GUI_MESSAGE} (OpenCV said: {exc})") from exc
        self.title = title
        self.frames_shown = 0

    def show(self, frame: np.ndarray) -> None:
        """Draw ``frame`` and let the GUI process its events."""
        cv2.imshow(self.title, frame)
        cv2.waitKey(WINDOW_WAIT_MS)
        self.frames_shown += 1

    def close(self) -> None:
        """Destroy the window."""
        try:
            cv2.destroyWindow(self.title)
        except cv2.error as exc:  # the user closed it already; nothing left to destroy
            log.debug("window %r already gone: %s", self.title, exc)


class Recorder:
    """Writes frames to a video file with a codec chosen from the file's suffix.

    Frames of another size are resized to ``size`` (width, height), grey ones made BGR.
    """

    def __init__(self, path: str, fps: float, size: tuple[int, int]) -> None:
        target = Path(path)
        fourcc = FOURCC_BY_SUFFIX.get(target.suffix.lower())
        if fourcc is None:
            raise ValueError(
                f"display.record = {path!r}: unsupported file type {target.suffix!r}; use one "
                f"of {', '.join(sorted(FOURCC_BY_SUFFIX))}"
            )
        if fps <= 0 or size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"Recorder needs fps > 0 and a positive size; got {fps}, {size}")
        if not target.parent.is_dir():
            raise DisplayUnavailable(
                f"display.record = {path!r}: directory {str(target.parent)!r} does not exist; "
                "create it or choose another path"
            )
        target = unused_path(target)
        self._writer = cv2.VideoWriter(
            str(target), cv2.VideoWriter.fourcc(*fourcc), float(fps), (int(size[0]), int(size[1]))
        )
        if not self._writer.isOpened():
            raise DisplayUnavailable(
                f"display.record = {path!r}: OpenCV cannot open a {fourcc} writer for it; check "
                "that the directory is writable and that this OpenCV build has FFmpeg "
                "(cv2.getBuildInformation(), 'Video I/O')"
            )
        self.path = str(target)
        self.fourcc = fourcc
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append ``frame`` (BGR or grey, any size) to the file."""
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (writes the container index; a killed process leaves none)."""
        self._writer.release()


def unused_path(path: Path) -> Path:
    """`path`, or the first of path.1.ext, path.2.ext ... that does not exist yet.

    A restarted worker or daemon opens its recording again: it must not truncate what the
    last run recorded (often the very minutes before the crash someone wants to see).
    """
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    if n:
        log.info("%s exists (kept): recording to %s", path, candidate)
    return candidate


class DisplayOutputs:
    """The display outputs that [display] enabled; ``show`` feeds each of them."""

    def __init__(self) -> None:
        self.mjpeg: MjpegServer | None = None
        self.window: WindowOutput | None = None
        self.recorder: Recorder | None = None
        self._opened: list[str] = []  # attribute names in opening order, for LIFO close

    def add(self, output: MjpegServer | WindowOutput | Recorder) -> None:
        """Take ownership of an opened output."""
        name = {MjpegServer: "mjpeg", WindowOutput: "window", Recorder: "recorder"}[type(output)]
        if getattr(self, name) is not None:
            raise ValueError(f"DisplayOutputs already holds a {name} output")
        setattr(self, name, output)
        self._opened.append(name)

    @property
    def enabled(self) -> bool:
        """True when at least one output is open (the overlay can skip drawing otherwise)."""
        return bool(self._opened)

    def show(self, frame: np.ndarray) -> None:
        """Hand ``frame`` (BGR, overlay drawn) to every open output."""
        if self.mjpeg is not None:
            self.mjpeg.publish(frame)
        if self.window is not None:
            self.window.show(frame)
        if self.recorder is not None:
            self.recorder.write(frame)

    def close(self) -> None:
        """Close every output, last opened first; re-raises the first failure after all."""
        first_error: BaseException | None = None
        while self._opened:
            name = self._opened.pop()
            output = getattr(self, name)
            setattr(self, name, None)
            try:
                if isinstance(output, MjpegServer):
                    output.stop()
                else:
                    output.close()
            except Exception as exc:  # keep closing the rest; the first error is re-raised
                log.exception("closing display output %s failed", name)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def __enter__(self) -> DisplayOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_outputs(
    cfg: DisplayConfig, fps: float, size: tuple[int, int], title: str = "actiond"
) -> DisplayOutputs:
    """Open the outputs ``cfg`` enables; on any failure closes those already opened."""
    outputs = DisplayOutputs()
    try:
        if cfg.mjpeg_listen:
            server = MjpegServer(
                cfg.mjpeg_listen, cfg.jpeg_quality, title=title, max_clients=cfg.mjpeg_max_clients
            )
            try:
                server.start()
            except OSError as exc:
                raise DisplayUnavailable(str(exc)) from exc
            outputs.add(server)
        if cfg.window:
            outputs.add(WindowOutput(title))
        if cfg.record:
            outputs.add(Recorder(cfg.record, fps, size))
    except BaseException:
        outputs.close()
        raise
    return outputs
