"""The pipeline graph: which rings and workers a config needs, created and torn down.

Each camera runs the graph its config names (daemon.stages.registry.GRAPHS). Every edge
of it is a ring, shaped by the producing port's declaration: per camera
("<camera>.<ring>"), or one ring for all cameras when its consumer is a shared stage
("<ring>", its replicas take turns). A per-camera stage has one worker per camera
("<camera>.<kind>"); a shared stage has its replicas ("<kind>.<n>"), which write to every
camera's ring of an output port. Nothing here names a stage: it walks the declarations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.config import CameraConfig, Config, ModelFacts
from daemon.ipc import FrameRing, RingSpec
from daemon.ipc.liveslot import create_slot, slot_bytes_for
from daemon.ipc.segment import check_free_space, segment_name
from daemon.ipc.stats import StatsBlock
from daemon.stages.kinds import Edge, Graph, RingContext, StageKind, WorkerContext
from daemon.stages.records import CLIP_SCORES, ResultSpec
from daemon.stages.registry import GRAPHS, KINDS, graph_name
from daemon.stages.worker import WorkerSpec

log = logging.getLogger(__name__)

STATS_BLOCK_BYTES = 16384  # upper bound of one worker's stats block, for the space check


@dataclass(frozen=True)
class RingUse:
    """One ring of the graph: the edge it carries, and its camera ("" when shared)."""

    name: str
    producer: str  # stage kinds
    consumer: str
    item: str
    camera: str
    cameras: tuple[str, ...]  # the cameras whose items pass through it


@dataclass
class WorkerPlan:
    """A worker's place in the graph, from which its spec is made (again on a reload)."""

    kind: str
    name: str
    camera: str
    replica: int
    rings: dict[str, str] = field(default_factory=dict)  # port -> ring name
    slots: dict[str, int] = field(default_factory=dict)
    upstream: list[str] = field(default_factory=list)  # worker names
    origin: str = ""  # worker name


@dataclass
class Topology:
    """The rings and stats blocks of one pipeline, and the specs of its workers."""

    config: Config
    run_id: str
    model_path: str
    facts: ModelFacts
    events_socket: str = ""
    result: ResultSpec | None = None  # default: clip scores over facts.labels
    kinds: Mapping[str, StageKind] = field(default_factory=lambda: KINDS)
    graphs: Mapping[str, Graph] = field(default_factory=lambda: GRAPHS)
    rings: dict[str, FrameRing] = field(default_factory=dict)
    stats: dict[str, StatsBlock] = field(default_factory=dict)
    workers: dict[str, WorkerSpec[Any]] = field(default_factory=dict)
    ring_uses: dict[str, RingUse] = field(default_factory=dict)
    plans: dict[str, WorkerPlan] = field(default_factory=dict)
    live_slots: dict[str, str] = field(default_factory=dict)  # camera -> slot file

    @property
    def result_spec(self) -> ResultSpec:
        return self.result or ResultSpec(CLIP_SCORES, self.facts.labels)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.result_spec.labels

    def kind_of(self, worker: str) -> StageKind:
        return self.kinds[self.workers[worker].kind]

    def graph_of(self, cam: CameraConfig) -> Graph:
        return self.graphs[graph_name(cam)]

    def result_for(self, cams: tuple[CameraConfig, ...]) -> ResultSpec:
        """What the results of these cameras' graph hold: the graph's own (the person
        pipeline's detections) or the model's."""
        own = {self.graph_of(c).result for c in cams} - {None}
        make = own.pop() if len(own) == 1 else None
        return make(self.config) if make is not None else self.result_spec

    def cameras(self) -> list[CameraConfig]:
        return [c for c in self.config.cameras if c.enabled]

    def build(self) -> None:
        """Create every ring and stats block and make the worker specs (LIFO-safe).

        If one cannot be created (ShmSpaceError on a full tmpfs), those already made are
        unlinked before the error propagates: the caller never held a topology to close.
        """
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self.ring_uses, edges = self._plan_rings()
        self.plans = self._plan_workers(edges)
        specs = {name: self._ring_spec(use, edges[name][0]) for name, use in self.ring_uses.items()}
        # One check for the whole graph: the error names everything that is needed, not
        # just the ring that happened not to fit.
        check_free_space(
            self.config.daemon.shm_dir,
            sum(spec.total_bytes for spec in specs.values())
            + len(self.plans) * STATS_BLOCK_BYTES
            + sum(slot_bytes_for(c.width, c.height) for c in self.cameras()),
        )
        for name, spec in specs.items():
            self.rings[name] = FrameRing.create(name, spec, self.run_id, self.config.daemon.shm_dir)
        for plan in self.plans.values():
            # Stats blocks outlive worker restarts: counters stay monotonic for Prometheus.
            self.stats[plan.name] = StatsBlock.create(
                f"{plan.name}.stats",
                self.kinds[plan.kind].all_stats_fields,
                self.run_id,
                self.config.daemon.shm_dir,
            )
        for cam in self.cameras():
            path = self.live_slot_path(cam.name)
            create_slot(path, slot_bytes_for(cam.width, cam.height))
            self.live_slots[cam.name] = path
        for plan in self.plans.values():
            self.workers[plan.name] = self._spec(plan)

    def live_slot_path(self, camera: str) -> str:
        """The file of the camera's live JPEG slot (daemon.ipc.liveslot): beside the
        rings, with the run's prefix, so the run lock's clean-up removes a dead run's."""
        return live_slot_path(self.config.daemon.shm_dir, self.run_id, camera)

    # -- planning ------------------------------------------------------------------------

    def _ring_name(self, edge: Edge, camera: str, graph: Graph) -> str:
        """The ring's name: "<ring>" (shared consumer) or "<camera>.<ring>"; a later edge
        of the graph writing a per-camera ring of a name already used gets
        "<camera>.<producer>.<ring>"."""
        port = self.kinds[edge.producer].output(edge.output)
        if self.kinds[edge.consumer].shared:
            return port.ring
        for other in graph.parsed[: graph.parsed.index(edge)]:
            used = self.kinds[other.producer].output(other.output).ring
            if used == port.ring and not self.kinds[other.consumer].shared:
                return f"{camera}.{edge.producer}.{port.ring}"
        return f"{camera}.{port.ring}"

    def _plan_rings(self) -> tuple[dict[str, RingUse], dict[str, list[Edge]]]:
        uses: dict[str, RingUse] = {}
        edges: dict[str, list[Edge]] = {}
        for cam in self.cameras():
            graph = self.graph_of(cam)
            for edge in graph.parsed:
                name = self._ring_name(edge, cam.name, graph)
                old = uses.get(name)
                cameras = (old.cameras if old else ()) + (cam.name,)
                item = self.kinds[edge.producer].output(edge.output).item
                shared = self.kinds[edge.consumer].shared
                uses[name] = RingUse(
                    name, edge.producer, edge.consumer, item, "" if shared else cam.name, cameras
                )
                edges.setdefault(name, []).append(edge)
        return uses, edges

    def _ring_spec(self, use: RingUse, edge: Edge) -> RingSpec:
        producer, consumer = self.kinds[use.producer], self.kinds[use.consumer]
        cams = tuple(c for c in self.cameras() if c.name in use.cameras)
        shape = producer.output(edge.output).shape(
            RingContext(
                config=self.config, cameras=cams, facts=self.facts, result=self.result_for(cams)
            )
        )
        producers = (
            producer.replicas(self.config)
            if producer.shared
            else len(cams)
            if consumer.shared
            else 1
        )
        members = consumer.replicas(self.config) if consumer.shared else 1
        return RingSpec(
            shape.frame,
            shape.capacity,
            shape.policy,
            ((consumer.name, members),),
            producers=max(1, producers),
        )

    def _plan_workers(self, edges: dict[str, list[Edge]]) -> dict[str, WorkerPlan]:
        plans: dict[str, WorkerPlan] = {}
        shared: dict[str, list[WorkerPlan]] = {}
        for cam in self.cameras():
            for kind_name in self.graph_of(cam).stages:
                kind = self.kinds[kind_name]
                if kind.shared:
                    if kind_name not in shared:
                        shared[kind_name] = [
                            WorkerPlan(kind_name, f"{kind_name}.{r}", "", r)
                            for r in range(kind.replicas(self.config))
                        ]
                    continue
                name = f"{cam.name}.{kind_name}"
                plans[name] = WorkerPlan(kind_name, name, cam.name, 0)
        for replicas in shared.values():
            plans.update((p.name, p) for p in replicas)
        for ring, ring_edges in edges.items():
            use = self.ring_uses[ring]
            for cam_name, edge in zip(use.cameras, ring_edges):
                self._connect(plans, shared, ring, use, cam_name, edge)
        for plan in plans.values():
            origin = [
                p.name
                for p in plans.values()
                if p.camera == plan.camera and plan.camera and self.kinds[p.kind].origin
            ]
            plan.origin = origin[0] if origin else ""
        return plans

    def _connect(
        self,
        plans: dict[str, WorkerPlan],
        shared: dict[str, list[WorkerPlan]],
        ring: str,
        use: RingUse,
        camera: str,
        edge: Edge,
    ) -> None:
        """Give one camera's edge to the workers at its ends."""
        producers = shared.get(edge.producer) or [plans[f"{camera}.{edge.producer}"]]
        consumers = shared.get(edge.consumer) or [plans[f"{camera}.{edge.consumer}"]]
        for index, plan in enumerate(producers):
            # A shared producer writes each camera's ring under "<port>:<camera>".
            port = (
                f"{edge.output}:{camera}"
                if self.kinds[plan.kind].shared and use.camera
                else edge.output
            )
            plan.rings[port] = ring
            plan.slots[port] = index if self.kinds[plan.kind].shared else use.cameras.index(camera)
        follows = self.kinds[edge.consumer].input(edge.input).follows
        for plan in consumers:
            plan.rings[edge.input] = ring
            if follows:
                plan.upstream.extend(p.name for p in producers if p.name not in plan.upstream)

    def _spec(self, plan: WorkerPlan) -> WorkerSpec[Any]:
        cams = self.cameras()
        index = next((i for i, c in enumerate(cams) if c.name == plan.camera), 0)
        camera = cams[index] if plan.camera else None
        ctx = WorkerContext(
            config=self.config,
            camera=camera,
            camera_index=index,
            model_path=self.model_path,
            facts=self.facts,
            result=self.result_for((camera,)) if camera else self.result_spec,
            events_socket=self.events_socket,
            upstream_stats=tuple(str(self.stats[n].path) for n in plan.upstream),
            origin_stats=str(self.stats[plan.origin].path) if plan.origin else "",
            live_slot=self.live_slots.get(plan.camera, ""),
        )
        rings = {port: str(self.rings[ring].path) for port, ring in plan.rings.items()}
        return WorkerSpec(
            plan.kind,
            plan.name,
            plan.camera,
            plan.replica,
            str(self.stats[plan.name].path),
            rings,
            self.config,
            self.kinds[plan.kind].args(ctx),
            dict(plan.slots),
        )

    # -- changes -------------------------------------------------------------------------

    def respec(self, config: Config) -> None:
        """Make every worker's spec (and arguments) from a changed config that keeps the
        rings' shapes; running workers keep theirs until restarted."""
        self.config = config
        for plan in self.plans.values():
            self.workers[plan.name] = self._spec(plan)

    def respec_camera(self, camera: str, config: Config) -> list[str]:
        """Point a camera's workers at a changed camera config that keeps its rings'
        shapes; returns the names of the workers to restart."""
        self.respec(config)
        return [n for n, w in self.workers.items() if w.camera == camera]

    def with_args(self, worker: str, args: Any) -> WorkerSpec[Any]:
        return replace(self.workers[worker], args=args)

    def close(self) -> None:
        """Unlink every ring and stats block (the workers must be gone)."""
        for ring in reversed(list(self.rings.values())):
            ring.close()
        for block in reversed(list(self.stats.values())):
            block.close(unlink=True)
        for path in self.live_slots.values():
            Path(path).unlink(missing_ok=True)
        self.rings.clear()
        self.stats.clear()
        self.live_slots.clear()


def live_slot_path(shm_dir: str, run_id: str, camera: str) -> str:
    """The live JPEG slot file of `camera` in run `run_id` ("<prefix>-<camera>.live")."""
    return os.path.join(shm_dir, segment_name(run_id, f"{camera}.live"))
