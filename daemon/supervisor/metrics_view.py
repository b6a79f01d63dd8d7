"""The supervisor's state as the metrics collector sees it, built at scrape time.

Each worker's view carries what its stage kind declares (per-camera exports, losses), so
the collector needs no table of stages, and a kind it has never heard of is exported
with the series every stage has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from daemon.outputs.metrics import CameraView, MetricsSnapshot, WorkerView
from daemon.outputs.sinks.protocol import SinkView
from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.availability import camera_availability
from daemon.supervisor.intake import (
    INTAKE_LOST_REASONS,
    LOST_MALFORMED,
    UNKNOWN_CAMERA,
    EventIntake,
)


def metrics_snapshot(
    arbiter: Arbiter,
    providers: tuple[str, ...],
    sinks: Sequence[SinkView] = (),
    intake: EventIntake | None = None,
) -> MetricsSnapshot:
    """Read every stats block and ring now (on the supervisor's loop, at scrape time)."""
    workers = worker_views(arbiter)
    rings = [(name, ring.stats()) for name, ring in list(arbiter.topology.rings.items())]
    cameras = camera_views(arbiter)
    return MetricsSnapshot(
        workers,
        rings,
        cameras,
        providers,
        tuple(sinks),
        intake_losses([c.name for c in cameras], intake),
    )


def worker_views(arbiter: Arbiter) -> list[WorkerView]:
    """Each worker's stats block, liveness and restarts, with what its kind exports."""
    topology = arbiter.topology
    workers = []
    for name, spec in list(topology.workers.items()):
        state, block = arbiter.workers.get(name), topology.stats.get(name)
        if block is None:
            continue  # a reload is rebuilding the topology
        fresh = bool(state and state.alive) and (
            arbiter.heartbeat_age_s(name) < arbiter.heartbeat_timeout_s
        )
        kind = topology.kinds[spec.kind]
        workers.append(
            WorkerView(
                name=name,
                camera=spec.camera,
                stage=spec.kind,
                up=fresh,
                restarts_total=state.restarts_total if state else 0,
                stats=block.snapshot(),
                exports=tuple((e.metric, e.field) for e in kind.exports),
                losses=tuple((loss.item, loss.reason, loss.field) for loss in kind.losses),
            )
        )
    return workers


def camera_views(arbiter: Arbiter) -> list[CameraView]:
    """Every enabled camera: failed or not, its frame rate (configured, else the native
    rate its origin worker, e.g. the source, measured), and whether its frames flow."""
    topology = arbiter.topology
    native = {
        spec.camera: topology.stats[name].get("source_fps")
        for name, spec in topology.workers.items()
        if topology.kinds[spec.kind].origin and name in topology.stats
    }
    available = camera_availability(topology, arbiter)
    return [
        CameraView(
            cam.name,
            cam.name in arbiter.failed_cameras,
            cam.fps or native.get(cam.name, 0.0),
            available.get(cam.name, False),
        )
        for cam in topology.config.cameras
        if cam.enabled
    ]


INTAKE_STAGE = "intake"  # the stage label of the events the supervisor's intake lost
EVENT_ITEM = "event"


def intake_losses(
    cameras: list[str], intake: EventIntake | None
) -> Mapping[tuple[str, str, str, str], float]:
    """The events the supervisor lost, as (camera, stage, item, reason) of
    actiond_lost_total, with every camera's series present from zero."""
    losses: dict[tuple[str, str, str, str], float] = {
        (camera, INTAKE_STAGE, EVENT_ITEM, reason): 0.0
        for camera in cameras
        for reason in INTAKE_LOST_REASONS
        if reason != LOST_MALFORMED
    }
    losses[(UNKNOWN_CAMERA, INTAKE_STAGE, EVENT_ITEM, LOST_MALFORMED)] = 0.0
    for (camera, reason), count in intake.lost.items() if intake is not None else ():
        key = (camera, INTAKE_STAGE, EVENT_ITEM, reason)
        losses[key] = losses.get(key, 0.0) + count
    return losses
