"""End-of-stream detection through the upstream workers' stats blocks.

A finite source (a file without `loop`) ends; its worker sets `finished` in its stats
block and exits 0. A downstream stage finishes once every upstream worker has finished
and its input ring is empty. This uses no in-band marker frame, which a drop policy
could discard.

A live source that loses its stream says so in its stats block (`stream_up` = 0 until
frames flow again): the overlay ends open events on it, the supervisor reports the camera
unavailable. Only the source can tell a lost stream from a slow pipeline.
"""

from __future__ import annotations

from daemon.ipc.stats import StatsBlock


class Upstream:
    """Read-only view of the upstream workers' `finished` flags."""

    def __init__(self, stats_paths: list[str]) -> None:
        self._blocks = [StatsBlock.attach(p) for p in stats_paths]

    def finished(self) -> bool:
        return bool(self._blocks) and all(b.get("finished") == 1 for b in self._blocks)

    def total(self, field: str) -> float:
        """The sum of one counter over the upstream workers (e.g. clips sent)."""
        return sum(b.get(field) for b in self._blocks)

    def close(self) -> None:
        for block in self._blocks:
            block.close()
        self._blocks.clear()


class SourceState:
    """Read-only view of one camera's source worker: is its stream up?"""

    def __init__(self, stats_path: str) -> None:
        self._block = StatsBlock.attach(stats_path) if stats_path else None

    def stream_lost(self) -> bool:
        """True while a source that had frames has none (reconnecting); False for a
        finished file and when the source is unknown."""
        block = self._block
        if block is None or block.get("finished") == 1:
            return False
        return block.get("frames_in_total") > 0 and block.get("stream_up") == 0

    def close(self) -> None:
        if self._block is not None:
            self._block.close()
            self._block = None
