"""What a SIGHUP reload must do: compare the running boot with the new one.

The changes are found by walking the Config dataclass's fields, so a section added to
the config is compared without anyone listing it here; SECTION_EFFECTS says what a
change to each section (for [daemon], to each key) does. A section missing from the
table rebuilds the whole pipeline, the safe choice, and a test fails until it is given
its real effect. Keys whose effect is RESTART cannot be applied to a running daemon:
the plan keeps their running values and names them, for the log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from daemon.config import CameraConfig, Config
from daemon.outputs.sinks.runner import enabled_cameras, enabled_sinks
from daemon.outputs.sinks.table import SINK_KINDS
from daemon.stages.registry import KINDS
from daemon.supervisor.boot import Boot

# Camera fields that size or shape the camera's rings: changing one rebuilds the graph.
RING_SHAPING_FIELDS = (
    *("width", "height", "ring_capacity", "ring_policy", "enabled"),
    *("pipeline", "require_person"),  # another graph: other rings and workers
)
ALL_KINDS = "*"  # in ReloadPlan.worker_kinds: every worker


class Effect(Enum):
    """What a changed config value needs, from the lightest to the heaviest."""

    LIVE = "applied by the supervisor at once"
    SINKS = "the event sinks re-opened"  # the changed sections', or every one
    METRICS = "the metrics endpoint re-opened"
    STAGES = "the stage kinds that read it at start restarted"  # StageKind.reload_sections
    WORKERS = "every worker restarted"
    CAMERAS = "the changed cameras' workers restarted"
    GRAPH = "the whole pipeline rebuilt"
    RESTART = "only at the next start of the daemon"


Effects = frozenset[Effect]
SectionEffect = Effects | Mapping[str, Effects]


def _e(*effects: Effect) -> Effects:
    return frozenset(effects)


DAEMON_KEY_EFFECTS: Mapping[str, Effects] = MappingProxyType(
    {
        "device_id": _e(Effect.SINKS),  # in every record; MQTT topics and client id
        "state_dir": _e(Effect.RESTART),  # holds the open outbox file
        "shm_dir": _e(Effect.RESTART),  # holds the live rings and event socket
        "log_level": _e(Effect.LIVE, Effect.WORKERS),
        "status_interval_s": _e(Effect.LIVE),
        # Workers derive their event send timeout from it (below the heartbeat timeout).
        "heartbeat_timeout_s": _e(Effect.LIVE, Effect.WORKERS),
        "restart_backoff_min_s": _e(Effect.LIVE),
        "restart_backoff_max_s": _e(Effect.LIVE),
        "stable_after_s": _e(Effect.LIVE),
        "crash_budget": _e(Effect.LIVE),
        "crash_window_s": _e(Effect.LIVE),
    }
)
SECTION_EFFECTS: Mapping[str, SectionEffect] = MappingProxyType(
    {
        "daemon": DAEMON_KEY_EFFECTS,
        "cameras": _e(Effect.CAMERAS),  # or GRAPH: see _camera_changes
        "motion": _e(Effect.GRAPH),  # flow size shapes the view and clip rings
        "inference": _e(Effect.GRAPH),  # the model shapes the clip and result rings
        "perception": _e(Effect.GRAPH),  # the detect replicas and the person models
        "display": _e(Effect.STAGES),
        "clips": _e(Effect.STAGES),  # the overlays record the event clips
        # The overlays track events; Home Assistant is offered the actions that make events.
        "events": _e(Effect.STAGES, Effect.SINKS),
        # The people engine runs beside the events; discovery offers its actions.
        "people": _e(Effect.STAGES, Effect.SINKS),
        "metrics": _e(Effect.METRICS),
        # Every event sink's section (the sink table): that sink re-opened.
        **{name: _e(Effect.SINKS) for name in SINK_KINDS},
    }
)


@dataclass(frozen=True)
class ReloadPlan:
    """What to change; `boot` is what the daemon runs with afterwards."""

    boot: Boot
    changed: tuple[str, ...] = ()  # "[mqtt]", "daemon.log_level", "camera b"
    kept: tuple[str, ...] = ()  # keys needing a restart, kept at running values
    rebuild: bool = False
    reason: str = ""  # why the whole pipeline is rebuilt
    cameras: tuple[str, ...] = ()  # cameras whose workers restart
    worker_kinds: frozenset[str] = frozenset()  # kinds restarted everywhere (ALL_KINDS)
    sinks: frozenset[str] = frozenset()  # event sink sections re-opened
    metrics: bool = False
    live: bool = False

    @property
    def empty(self) -> bool:
        return not self.changed

    def effects(self) -> str:
        """The plan in words, for the log."""
        done = []
        if self.rebuild:
            why = "" if self.reason == ", ".join(self.changed) else f" ({self.reason})"
            done.append(f"the whole pipeline rebuilt{why}")
        elif ALL_KINDS in self.worker_kinds:
            done.append("every worker restarted")
        else:
            done += [f"every camera's {kind} restarted" for kind in sorted(self.worker_kinds)]
            done += [f"camera {camera} restarted" for camera in self.cameras]
        if self.sinks:
            done.append(f"the event sinks {', '.join(sorted(self.sinks))} re-opened")
        for flag, effect in ((self.metrics, Effect.METRICS), (self.live, Effect.LIVE)):
            if flag:
                done.append(effect.value)
        return "; ".join(done) or "nothing to restart"


def planned_effect(section: str, key: str | None = None) -> Effects | None:
    """What a change of [section] (or section.key) does; None if nobody said."""
    effect = SECTION_EFFECTS.get(section)
    if isinstance(effect, Mapping):
        return effect.get(key) if key is not None else None
    return effect


def plan_reload(old: Boot, new: Boot) -> ReloadPlan:
    new, kept = _keep_restart_only(old, new)
    changed: list[str] = []
    effects: set[Effect] = set()
    graph: list[str] = []  # what forces a rebuild, for the log
    every_sink = False  # a change every sink's records carry (device_id, [events])
    read_at_start: set[str] = set()  # changed sections that stage kinds read at start
    for section in fields(Config):
        before, after = getattr(old.config, section.name), getattr(new.config, section.name)
        if before == after:
            continue
        keyed = isinstance(SECTION_EFFECTS.get(section.name), Mapping)
        for key in _changed_keys(before, after) if keyed else [None]:
            what = f"{section.name}.{key}" if key else f"[{section.name}]"
            effect = planned_effect(section.name, key) or _e(Effect.GRAPH)
            changed.append(what)
            effects |= effect
            every_sink |= Effect.SINKS in effect and section.name not in SINK_KINDS
            graph += [what] if Effect.GRAPH in effect else []
            read_at_start |= {section.name} if Effect.STAGES in effect else set()
    if _model_changed(old, new):
        changed.append("the model")
        graph.append("the model")
    cameras: tuple[str, ...] = ()
    if Effect.CAMERAS in effects:
        reason, cameras = _camera_changes(old.config, new.config)
        graph += [reason] if reason else []
    rebuild = bool(graph)
    kinds = frozenset({ALL_KINDS}) if Effect.WORKERS in effects else _kinds_reading(read_at_start)
    # The sinks know the cameras and actions (MQTT topics, Home Assistant discovery).
    names_changed = (
        enabled_cameras(old.config) != enabled_cameras(new.config) or old.labels != new.labels
    )
    return ReloadPlan(
        new,
        tuple(changed),
        tuple(kept),
        rebuild,
        ", ".join(graph),
        () if rebuild else cameras,
        frozenset() if rebuild else kinds,
        sinks=_sinks_to_reopen(old.config, new.config, changed, every_sink or names_changed),
        metrics=Effect.METRICS in effects,
        live=Effect.LIVE in effects,
    )


def _kinds_reading(sections: set[str]) -> frozenset[str]:
    """The stage kinds that read one of `sections` only at start (their reload_sections)."""
    return frozenset(name for name, kind in KINDS.items() if kind.reload_sections & sections)


def _sinks_to_reopen(old: Config, new: Config, changed: list[str], every: bool) -> frozenset[str]:
    """The changed sink sections; with `every` (device_id, [events], the cameras or the
    model changed: what every sink's records or names carry), every sink running before
    or after."""
    sections = {name for name in SINK_KINDS if f"[{name}]" in changed}
    if every:
        sections |= set(enabled_sinks(old)) | set(enabled_sinks(new))
    return frozenset(sections)


def _model_changed(old: Boot, new: Boot) -> bool:
    """Whether the model's facts changed (they are not in the config): another file, or
    the same file rewritten. A free-size model's clip size follows [motion], whose own
    change is planned above, so it is not the model's then."""
    a, b = old.facts, new.facts
    if old.config.motion != new.config.motion:
        a, b = (dataclasses.replace(f, width=0, height=0) for f in (a, b))
    return old.model_path != new.model_path or a != b


def _changed_keys(before: Any, after: Any) -> list[str]:
    return [f.name for f in fields(before) if getattr(before, f.name) != getattr(after, f.name)]


def _keep_restart_only(old: Boot, new: Boot) -> tuple[Boot, list[str]]:
    """`new` with every RESTART key at its running value, and those keys' names."""
    config, kept = new.config, []
    for section in fields(Config):
        table = SECTION_EFFECTS.get(section.name)
        if not isinstance(table, Mapping):
            continue
        before, after = getattr(old.config, section.name), getattr(config, section.name)
        restore = {
            key: getattr(before, key)
            for key in _changed_keys(before, after)
            if Effect.RESTART in table.get(key, ())
        }
        if restore:
            kept += [f"{section.name}.{key}" for key in restore]
            config = dataclasses.replace(
                config, **{section.name: dataclasses.replace(after, **restore)}
            )
    return dataclasses.replace(new, config=config), kept


def _camera_changes(old: Config, new: Config) -> tuple[str, tuple[str, ...]]:
    """(why the graph must be rebuilt, or ""; the cameras whose workers restart)."""
    old_cams = {c.name: c for c in old.cameras}
    new_cams = {c.name: c for c in new.cameras}
    if [c.name for c in old.cameras] != [c.name for c in new.cameras]:
        # Also a reordering: a camera's index picks its MJPEG port and its workers' names.
        return "the list of cameras", ()
    changed = []
    for name, cam in new_cams.items():
        if cam == old_cams[name]:
            continue
        if _shapes_differ(old_cams[name], cam):
            return f"camera {name}'s frame size or ring settings", ()
        changed.append(name)
    return "", tuple(changed)


def _shapes_differ(a: CameraConfig, b: CameraConfig) -> bool:
    names = {f.name for f in fields(CameraConfig)}
    return any(getattr(a, f) != getattr(b, f) for f in RING_SHAPING_FIELDS if f in names)


def kept_value(boot: Boot, key: str) -> object:
    """The running value of a "section.key" the plan kept."""
    section, _, name = key.partition(".")
    return getattr(getattr(boot.config, section), name)
