"""Whether the shared detect stage has processes enough for its cameras: a warning, not an
error, since a box's cores and a scene's motion are the operator's call.

Measured on a 2-core box (README "Performance"): one detect replica holds up to 3 person
cameras of 1080p15 analysed at 5 fps, and 4 only at the edge; two replicas hold 4. A
replica per two detect cameras, up to one per usable core, is the advice.
"""

from __future__ import annotations

import math
import os

from daemon.config import Config
from daemon.stages.registry import graph_for

DETECT_KIND = "detect"
CAMERAS_PER_REPLICA = 2  # measured: 4 cameras held by 2 replicas, not always by 1


def detect_cameras(config: Config) -> int:
    """Enabled cameras whose graph runs the shared person detector."""
    return sum(1 for c in config.cameras if c.enabled and DETECT_KIND in graph_for(c).stages)


def usable_cores() -> int:
    """Cores this process may run on (a CPU quota or affinity mask narrows os.cpu_count)."""
    return len(os.sched_getaffinity(0)) or 1


def advised_replicas(cameras: int, cores: int) -> int:
    """A detect replica per CAMERAS_PER_REPLICA cameras, at most one per core, at least 1."""
    return max(1, min(cores, math.ceil(cameras / CAMERAS_PER_REPLICA)))


def capacity_warnings(config: Config, cores: int) -> list[str]:
    """One line when [perception] replicas is below the advice for this box, else none."""
    cameras = detect_cameras(config)
    have = config.perception.replicas
    advised = advised_replicas(cameras, cores)
    if have >= advised:
        return []
    return [
        f"warning: {cameras} cameras share {have} detect process(es) "
        f"([perception] replicas = {have}); on these {cores} cores set replicas = {advised}, "
        "or analysed frames may be dropped under motion (about 140 MB more per replica; "
        'README "Performance")'
    ]
