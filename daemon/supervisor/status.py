"""The one-line status the supervisor logs every few seconds (and sends as STATUS=)."""

from __future__ import annotations

import time

from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.topology import Topology

STAGE_ORDER = ("source", "motion", "infer", "overlay")


class RateMeter:
    """Per-worker output rate between two status lines."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def rate(self, name: str, count: float) -> float:
        now = time.monotonic()
        prev = self._last.get(name)
        self._last[name] = (now, count)
        if prev is None or now <= prev[0]:
            return 0.0
        return max(0.0, count - prev[1]) / (now - prev[0])


def status_line(topology: Topology, arbiter: Arbiter, meter: RateMeter) -> str:
    """E.g. `demo: source 10.0 motion 10.0 overlay 9.9 fps, drops 3 | infer 2.4/s`."""
    parts = []
    for camera in arbiter.cameras():
        if camera in arbiter.failed_cameras:
            parts.append(f"{camera}: FAILED")
            continue
        rates = []
        for kind in ("source", "motion", "overlay"):
            name = f"{camera}.{kind}"
            rates.append(f"{kind} {meter.rate(name, topology.stats[name].get('frames_out_total')):.1f}")
        drops = sum(sum(r.stats().drops.values()) for n, r in topology.rings.items()
                    if n.startswith(f"{camera}."))
        parts.append(f"{camera}: {' '.join(rates)} fps, drops {drops}")
    infer = [n for n, w in topology.workers.items() if w.kind == "infer"]
    clips = sum(meter.rate(n, topology.stats[n].get("frames_out_total")) for n in infer)
    restarts = sum(s.restarts_total for s in arbiter.workers.values())
    parts.append(f"infer {clips:.1f} clips/s x{len(infer)}, restarts {restarts}")
    return " | ".join(parts)
