"""End-of-stream detection through the upstream workers' stats blocks.

A finite source (a file without `loop`) ends; its worker sets `finished` in its stats
block and exits 0. A downstream stage finishes once every upstream worker has finished
and its input ring is empty. This uses no in-band marker frame, which a drop policy
could discard.
"""

from __future__ import annotations

from daemon.ipc.stats import StatsBlock


class Upstream:
    """Read-only view of the upstream workers' `finished` flags."""

    def __init__(self, stats_paths: list[str]) -> None:
        self._blocks = [StatsBlock.attach(p) for p in stats_paths]

    def finished(self) -> bool:
        return bool(self._blocks) and all(b.get("finished") == 1 for b in self._blocks)

    def close(self) -> None:
        for block in self._blocks:
            block.close()
        self._blocks.clear()
