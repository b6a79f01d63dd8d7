"""Camera availability: does each camera deliver frames right now?

The camera-lost signal comes from the source worker, the only process that can tell a
lost stream from a slow pipeline: it sets `stream_up` in its stats block (1 while frames
flow; 0 before the first frame and while a live stream is lost and reconnecting). The
overlay reads the same flag to end open events. The supervisor reads it once per tick and
adds what only it knows: a source worker that is not running (crashed and waiting for its
restart, not yet opened, finished, or its camera failed) delivers no frames, whatever its
stats block last said. The overlay could not say that: it may be the one that died.
"""

from __future__ import annotations

from daemon.stages.worker import OPENED
from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.topology import Topology


def camera_availability(topology: Topology, arbiter: Arbiter) -> dict[str, bool]:
    """camera -> True while its source worker runs and its frames flow."""
    available: dict[str, bool] = {}
    for name, spec in topology.workers.items():
        if not topology.kinds[spec.kind].origin:
            continue
        state, block = arbiter.workers.get(name), topology.stats.get(name)
        running = (
            state is not None
            and state.alive
            and not state.failed
            and block is not None
            and block.get(OPENED) >= state.started_at
        )
        available[spec.camera] = (
            running
            and block is not None
            and block.get("stream_up") == 1
            and spec.camera not in arbiter.failed_cameras
        )
    return available
