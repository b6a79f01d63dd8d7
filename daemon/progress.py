"""Progress of a long command (bench load --sweep, bench soak, eval) on a terminal.

Shown on stderr only while stderr is a terminal and the command was not asked for
--json: a pipe, a log file or a script gets stdout's report and nothing else. A step
("sweep 3/8: 4 cameras") is one line, redrawn in place with a carriage return while it
runs ("... measuring, 37 s left") and finished with its result and a newline, so the
scroll-back keeps one line per step. The time left is the caller's when it knows it (a
soak runs for a fixed time), else the finished steps' mean duration times the steps left
(before one has finished: the caller's expected step, e.g. a timed start-up plus the rest).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

CLEAR_TO_END = "\x1b[K"  # ANSI "erase to end of line": a shorter redraw leaves no tail


def format_left(seconds: float) -> str:
    """A time left the way a person reads it: "37 s left", "4 min 10 s left"."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s left"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s left" if rest else f"{minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min left"


class Progress:
    """Steps of one command: `step` starts one, `status` redraws its line, `finish` ends
    it with its result; `note` writes a line of its own. All are no-ops when disabled."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self._stream, self._clock = stream, clock
        self._index, self._what, self._started = 0, "", 0.0
        self._durations: list[float] = []
        self.expected_step_s = 0.0  # a step's duration before one has finished (0: unknown)
        self._open = False  # a step's line is on the screen without its newline

    @classmethod
    def on_terminal(cls, label: str, total: int, quiet: bool) -> Progress:
        """Enabled when stderr is a terminal and the command is not `quiet` (--json)."""
        return cls(label, total, sys.stderr, enabled=not quiet and sys.stderr.isatty())

    def step(self, index: int, what: str) -> None:
        """Step `index` (from 1) of `total` starts: "<label> 3/8: <what>"."""
        self._index, self._what, self._started = index, what, self._clock()
        self.status("")

    def status(self, detail: str, left_s: float | None = None) -> None:
        """Redraw the running step's line with `detail` and the time left (`left_s`, else
        estimated from the steps done so far; none before the first is done)."""
        if left_s is None:
            left_s = self._estimate_left()
        parts = [p for p in (self._what, detail) if p]
        if left_s is not None:
            parts.append(format_left(left_s))
        self._draw(f"{self._head()}: {', '.join(parts)}", end="")

    def expect_rest(self, rest_s: float) -> None:
        """The running step has `rest_s` to go after what it has run so far (e.g. its
        start-up, just timed): until a step has finished, a step takes that long."""
        if not self._durations:
            self.expected_step_s = self._clock() - self._started + rest_s

    def finish(self, result: str) -> None:
        """The running step is done: its line ends with `result` and how long it took."""
        took_s = self._clock() - self._started
        self._durations.append(took_s)
        self._draw(f"{self._head()}: {self._what}: {result} ({took_s:.0f} s)", end="\n")

    def note(self, message: str) -> None:
        """A line of its own, e.g. a preparation the steps wait for."""
        self._draw(f"{self.label}: {message}", end="\n")

    def _head(self) -> str:
        return f"{self.label} {self._index}/{self.total}" if self.total else self.label

    def _estimate_left(self) -> float | None:
        if not self.total or not (self._durations or self.expected_step_s):
            return None
        durations = self._durations or [self.expected_step_s]
        mean_s = sum(durations) / len(durations)
        running_s = self._clock() - self._started
        return max(0.0, mean_s * (self.total - self._index + 1) - running_s)

    def _draw(self, line: str, end: str) -> None:
        if not self.enabled:
            return
        self._stream.write(f"\r{line}{CLEAR_TO_END}{end}")
        self._stream.flush()
        self._open = end == ""

    def close(self) -> None:
        """End a line left open (a step that never finished: an error follows)."""
        if self.enabled and self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False
