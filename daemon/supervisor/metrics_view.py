"""The supervisor's state as the metrics collector sees it, built at scrape time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from daemon.outputs.metrics import CameraView, MetricsSnapshot, WorkerView
from daemon.outputs.sinks.protocol import SinkView
from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.intake import (INTAKE_LOST_REASONS, LOST_MALFORMED, UNKNOWN_CAMERA,
                                      EventIntake)


def metrics_snapshot(arbiter: Arbiter, providers: tuple[str, ...],
                     sinks: Sequence[SinkView] = (),
                     intake: EventIntake | None = None) -> MetricsSnapshot:
    """Read every stats block and ring now (on the supervisor's loop, at scrape time)."""
    topology = arbiter.topology
    workers = []
    for name, spec in list(topology.workers.items()):
        state, block = arbiter.workers.get(name), topology.stats.get(name)
        if block is None:
            continue  # a reload is rebuilding the topology
        fresh = bool(state and state.alive) and (
            arbiter.heartbeat_age_s(name) < arbiter.heartbeat_timeout_s)
        workers.append(WorkerView(
            name=name, camera=spec.camera, stage=spec.kind, up=fresh,
            restarts_total=state.restarts_total if state else 0, stats=block.snapshot()))
    rings = [(name, ring.stats()) for name, ring in list(topology.rings.items())]
    cameras = []
    for cam in topology.config.cameras:
        if cam.enabled:
            source = topology.stats.get(f"{cam.name}.source")
            native = source.get("source_fps") if source is not None else 0.0
            cameras.append(CameraView(cam.name, cam.name in arbiter.failed_cameras,
                                      cam.fps or native))
    return MetricsSnapshot(workers, rings, cameras, providers, tuple(sinks),
                           intake_losses([c.name for c in cameras], intake))


def intake_losses(cameras: list[str], intake: EventIntake | None
                  ) -> Mapping[tuple[str, str], float]:
    """The events the supervisor lost, with every camera's series present from zero."""
    losses: dict[tuple[str, str], float] = {
        (camera, reason): 0.0 for camera in cameras for reason in INTAKE_LOST_REASONS
        if reason != LOST_MALFORMED}
    losses[(UNKNOWN_CAMERA, LOST_MALFORMED)] = 0.0
    for key, count in (intake.lost.items() if intake is not None else ()):
        losses[key] = losses.get(key, 0.0) + count
    return losses
