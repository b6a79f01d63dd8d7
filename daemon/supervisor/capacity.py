"""Whether the shared detect stage has processes enough for its cameras: a warning, not an
error, since a box's cores and a scene's motion are the operator's call.

Measured on a 2-core box (README "Performance"): one detect replica holds 2 person cameras
of 1080p15 analysed at 5 fps, 3 with less margin, and 4 only at the edge (frames dropped
in 2 of 6 runs); two replicas hold 4. Hence the advice: a replica per two detect cameras,
up to one per usable core. Checked at start (check-config and run), not at a reload.
"""

from __future__ import annotations

import math
import os

from daemon.config import Config
from daemon.stages import detect_stage
from daemon.stages.registry import graph_for

CAMERAS_PER_REPLICA = 2  # measured: 4 cameras held by 2 replicas, not always by 1


def detect_cameras(config: Config) -> int:
    """Enabled cameras whose graph runs the shared person detector."""
    return sum(
        1 for c in config.cameras if c.enabled and detect_stage.KIND.name in graph_for(c).stages
    )


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask (taskset, cpusets, systemd's
    CPUAffinity=), not a cgroup CPU quota (docker --cpus, CPUQuota=)."""
    return len(os.sched_getaffinity(0)) or 1


def advised_replicas(cameras: int, cores: int) -> int:
    """A detect replica per CAMERAS_PER_REPLICA cameras, at most one per core, at least 1."""
    return max(1, min(cores, math.ceil(cameras / CAMERAS_PER_REPLICA)))


def capacity_warnings(config: Config, cores: int) -> list[str]:
    """One line when [perception] replicas is below the advice for this box, else none."""
    cameras = detect_cameras(config)
    have = detect_stage.KIND.replicas(config)
    advised = advised_replicas(cameras, cores)
    if have >= advised:
        return []
    return [
        f"warning: {cameras} cameras share {have} detect process(es) "
        f"([perception] replicas = {have}); on these {cores} cores set replicas = {advised}, "
        "or analysed frames may be dropped under motion (about 140 MB more per replica; "
        'README "Performance")'
    ]
