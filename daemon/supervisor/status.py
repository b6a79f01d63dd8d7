"""The one-line status the supervisor logs every few seconds (and sends as STATUS=)."""

from __future__ import annotations

import time

from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.topology import Topology


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
    """E.g. `demo: source 10.0 motion 10.0 overlay 9.9 fps, drops 3 | infer 2.4 clips/s x1,
    drops 0, restarts 0`: each camera's stages in its graph's order with the drops of its
    own rings, then each shared stage with the drops of the rings it takes turns on."""
    parts = []
    for camera in arbiter.cameras():
        if camera in arbiter.failed_cameras:
            parts.append(f"{camera}: FAILED")
            continue
        rates = [
            f"{spec.kind} {_rate(topology, meter, name):.1f}"
            for name, spec in topology.workers.items()
            if spec.camera == camera
        ]
        parts.append(f"{camera}: {' '.join(rates)} fps, drops {_drops(topology, camera)}")
    shared: dict[str, list[str]] = {}
    for name, spec in topology.workers.items():
        if not spec.camera:
            shared.setdefault(spec.kind, []).append(name)
    for kind, names in shared.items():
        rate = sum(_rate(topology, meter, n) for n in names)
        unit = topology.kinds[kind].status_unit
        parts.append(f"{kind} {rate:.1f} {unit} x{len(names)}, drops {_drops(topology, '', kind)}")
    restarts = sum(s.restarts_total for s in arbiter.workers.values())
    parts[-1:] = [f"{parts[-1]}, restarts {restarts}"] if parts else [f"restarts {restarts}"]
    return " | ".join(parts)


def camera_stats(topology: Topology, arbiter: Arbiter) -> dict[str, dict[str, object]]:
    """Per camera (the console's board reads it from the published stats): its source's
    frame count, its rings' drops, its workers' restarts, whether its source runs or has
    finished, and whether the camera was given up."""
    cameras: dict[str, dict[str, object]] = {}
    for camera in arbiter.cameras():
        restarts = sum(
            s.restarts_total
            for name, s in arbiter.workers.items()
            if name in topology.workers and topology.workers[name].camera == camera
        )
        cameras[camera] = {
            "frames_total": 0,
            "drops": _drops(topology, camera),
            "restarts": restarts,
            "source_running": False,
            "finished": False,
            "failed": camera in arbiter.failed_cameras,
        }
    for name, spec in topology.workers.items():
        state = arbiter.workers.get(name)
        if spec.camera in cameras and topology.kinds[spec.kind].origin and state is not None:
            block = topology.stats.get(name)
            cameras[spec.camera].update(
                frames_total=block.get("frames_out_total") if block is not None else 0,
                source_running=state.alive and not state.failed,
                finished=state.finished,
            )
    return cameras


def _rate(topology: Topology, meter: RateMeter, worker: str) -> float:
    return meter.rate(worker, topology.stats[worker].get("frames_out_total"))


def _drops(topology: Topology, camera: str, consumer: str = "") -> int:
    """Drops of a camera's rings, or (camera "") of the shared rings `consumer` reads."""
    return int(
        sum(
            sum(topology.rings[name].stats().drops.values())
            for name, use in topology.ring_uses.items()
            if name in topology.rings
            and use.camera == camera
            and (camera or use.consumer == consumer)
        )
    )
