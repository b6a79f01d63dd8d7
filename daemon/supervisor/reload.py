"""What a SIGHUP reload must restart: compare the running boot with the new one."""

from __future__ import annotations

from dataclasses import dataclass, fields

from daemon.config import CameraConfig
from daemon.supervisor.boot import Boot

# Camera fields that size or shape the camera's rings: changing one rebuilds the graph.
RING_SHAPING_FIELDS = ("width", "height", "ring_capacity", "ring_policy", "enabled")


@dataclass(frozen=True)
class ReloadPlan:
    """Either rebuild everything (and why), or restart just these cameras."""

    rebuild: bool
    reason: str = ""
    cameras: tuple[str, ...] = ()


def plan_reload(old: Boot, new: Boot) -> ReloadPlan:
    oc, nc = old.config, new.config
    for section in ("daemon", "motion", "inference", "display", "mqtt", "metrics"):
        if getattr(oc, section) != getattr(nc, section):
            return ReloadPlan(True, f"[{section}]")
    if old.model_path != new.model_path or old.labels != new.labels:
        return ReloadPlan(True, "the model")
    old_cams = {c.name: c for c in oc.cameras}
    new_cams = {c.name: c for c in nc.cameras}
    if old_cams.keys() != new_cams.keys():
        return ReloadPlan(True, "the list of cameras")
    changed = []
    for name, cam in new_cams.items():
        if cam == old_cams[name]:
            continue
        if _shapes_differ(old_cams[name], cam):
            return ReloadPlan(True, f"camera {name}'s frame size or ring settings")
        changed.append(name)
    return ReloadPlan(False, cameras=tuple(changed))


def _shapes_differ(a: CameraConfig, b: CameraConfig) -> bool:
    names = {f.name for f in fields(CameraConfig)}
    return any(getattr(a, f) != getattr(b, f) for f in RING_SHAPING_FIELDS if f in names)
