"""Stage kinds and pipeline graphs, declared as data.

Each stage module declares its kind once (`KIND = StageKind(...)`): the worker factory,
whether it runs per camera or shared by all cameras, its input and output ports, its
typed arguments, its stats fields, the losses it counts and the per-camera metrics it
exports. daemon.stages.registry lists the kinds and the graphs; the supervisor
(topology, arbiter, status line, metrics, shutdown order) walks them and names no stage.

A graph is an edge list that reads like the README's diagram: "motion.clips -> infer.clips"
joins an output port to an input port. The edge's ring takes its layout, capacity and
policy from the output port's declaration and the camera config.

This module holds declarations only (no stage code), so it stays light to import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from daemon.config import CameraConfig, Config, ModelFacts
from daemon.ipc import FrameSpec, Policy
from daemon.ipc.stats import StatsBlock
from daemon.stages.records import ResultSpec
from daemon.stages.worker import COMMON_FIELDS, StageFactory

PER_CAMERA = "per_camera"  # one worker per camera
SHARED = "shared"  # one set of replicas serving every camera
SCOPES = (PER_CAMERA, SHARED)
# What travels on an edge, and what a loss loses (the `item` label of actiond_lost_total).
FRAME, CLIP, RESULT, EVENT, SNAPSHOT = "frame", "clip", "result", "event", "snapshot"
# An event's video file ([clips]); not CLIP, which is the clip model's input window.
RECORDING = "recording"
ITEMS = (FRAME, CLIP, RESULT, EVENT, SNAPSHOT, RECORDING)


@dataclass(frozen=True)
class RingShape:
    """What an output port's ring holds and how it behaves when full."""

    frame: FrameSpec
    capacity: int
    policy: Policy


@dataclass(frozen=True)
class RingContext:
    """What sizes a ring: the config, the cameras whose items pass through it (one, or
    all those feeding a shared stage) and what the model's results hold."""

    config: Config
    cameras: tuple[CameraConfig, ...]
    result: ResultSpec
    facts: ModelFacts  # what the model dictates: clip length, size, input

    @property
    def camera(self) -> CameraConfig:
        """The ring's camera (rings that are not shared have one)."""
        if len(self.cameras) != 1:
            raise ValueError("a ring shared by several cameras has no single camera")
        return self.cameras[0]


@dataclass(frozen=True)
class InPort:
    """An input port. `follows`: the stage ends once the workers feeding this port have
    finished and its ring is drained (the stream's port, not a side input). `optional`:
    a graph may leave it unfed (the overlay's `people`, fed only where a clip camera
    requires a person)."""

    name: str
    follows: bool = True
    optional: bool = False


@dataclass(frozen=True)
class OutPort:
    """An output port: the ring it writes ("<camera>.<ring>", or "<ring>" when its
    consumer is shared), what travels on it, and how that ring is shaped."""

    name: str
    ring: str
    item: str
    shape: Callable[[RingContext], RingShape]


@dataclass(frozen=True)
class Loss:
    """A place where a stage loses an item, for one reason: counted in the stats field
    `field` and exported as actiond_lost_total{camera,stage,item,reason}."""

    item: str
    reason: str

    @property
    def field(self) -> str:
        return loss_field(self.item, self.reason)


def loss_field(item: str, reason: str) -> str:
    """The stats field that counts `item`s lost for `reason`."""
    return f"lost_{item}_{reason}_total"


@dataclass(frozen=True)
class Export:
    """A stats field exported as a per-camera metric of daemon.metrics_catalog (labels
    (camera,)); a histogram's `field` is its histogram_fields prefix."""

    metric: str
    field: str


@dataclass(frozen=True)
class WorkerContext:
    """What a kind's argument builder may use for one worker."""

    config: Config
    camera: CameraConfig | None  # None for a shared worker
    camera_index: int  # the camera's index among the enabled ones
    model_path: str
    result: ResultSpec
    facts: ModelFacts  # what the model dictates: clip length, size, input
    events_socket: str
    upstream_stats: tuple[str, ...]  # stats blocks of the workers feeding `follows` ports
    origin_stats: str  # stats block of the camera's origin worker ("")
    live_slot: str = ""  # the camera's live JPEG slot (daemon.ipc.liveslot); "" for none


def no_args(ctx: WorkerContext) -> None:
    return None


@dataclass(frozen=True)
class StageKind:
    """One kind of stage (see the module docstring).

    origin: the camera's frames start here. Its workers stop first at shutdown (so the
    rest drains), and its stats block says `stream_up` and `source_fps`.
    respawn: new arguments for a worker started again, from its stats block (a source
    continues its frame ids).
    status_unit: the unit of the rate the status line shows for a shared kind.
    reload_sections: config sections its workers read only when they start: a reload
    that changes one restarts every worker of this kind (the overlay: [display], [events],
    [people]).
    """

    name: str
    factory: StageFactory
    scope: str = PER_CAMERA
    inputs: tuple[InPort, ...] = ()
    outputs: tuple[OutPort, ...] = ()
    args: Callable[[WorkerContext], Any] = no_args
    stats_fields: tuple[str, ...] = ()
    losses: tuple[Loss, ...] = ()
    exports: tuple[Export, ...] = ()
    origin: bool = False
    respawn: Callable[[Any, StatsBlock], Any] | None = None
    replicas: Callable[[Config], int] = lambda config: 1
    status_unit: str = "fps"
    reload_sections: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(
                f"stage kind {self.name}: scope {self.scope!r} is not one of {', '.join(SCOPES)}"
            )
        bad = [loss.item for loss in self.losses if loss.item not in ITEMS]
        bad += [port.item for port in self.outputs if port.item not in ITEMS]
        if bad:
            raise ValueError(f"stage kind {self.name}: items {bad} are not among {ITEMS}")

    @property
    def shared(self) -> bool:
        return self.scope == SHARED

    @property
    def all_stats_fields(self) -> tuple[str, ...]:
        """Every field of this kind's stats block."""
        return (*COMMON_FIELDS, *self.stats_fields, *(loss.field for loss in self.losses))

    def input(self, name: str) -> InPort:
        return _port(self.inputs, name, self.name, "input")

    def output(self, name: str) -> OutPort:
        return _port(self.outputs, name, self.name, "output")


_Port = TypeVar("_Port", InPort, OutPort)


def _port(ports: tuple[_Port, ...], name: str, kind: str, what: str) -> _Port:
    for port in ports:
        if port.name == name:
            return port
    raise KeyError(
        f"stage kind {kind} has no {what} port {name!r} "
        f"(it has {', '.join(p.name for p in ports) or 'none'})"
    )


@dataclass(frozen=True)
class Edge:
    """producer.out -> consumer.in, parsed from "source.out -> motion.in"."""

    producer: str
    output: str
    consumer: str
    input: str

    @classmethod
    def parse(cls, text: str) -> Edge:
        try:
            left, right = (side.strip() for side in text.split("->"))
            producer, output = left.split(".")
            consumer, input_ = right.split(".")
        except ValueError:
            raise ValueError(f"edge {text!r}: write it as 'stage.port -> stage.port'") from None
        return cls(producer, output, consumer, input_)


@dataclass(frozen=True)
class Graph:
    """A pipeline: named, and an edge list over stage kinds."""

    name: str
    edges: tuple[str, ...]
    # What this graph's results hold, when its own stage makes them (the person
    # pipeline's detections); None: the configured model's (its contract says).
    result: Callable[[Config], ResultSpec] | None = None

    @cached_property
    def parsed(self) -> tuple[Edge, ...]:
        return tuple(Edge.parse(e) for e in self.edges)

    @cached_property
    def stages(self) -> tuple[str, ...]:
        """The graph's stage kinds, in the order the edges first name them."""
        names: dict[str, None] = {}
        for edge in self.parsed:
            names.setdefault(edge.producer)
            names.setdefault(edge.consumer)
        return tuple(names)

    def check(self, kinds: dict[str, StageKind]) -> None:
        """ValueError unless every edge joins declared ports and every input is fed once."""
        fed: dict[tuple[str, str], str] = {}
        for edge in self.parsed:
            for stage in (edge.producer, edge.consumer):
                if stage not in kinds:
                    raise ValueError(f"graph {self.name}: no stage kind {stage!r}")
            kinds[edge.producer].output(edge.output)
            kinds[edge.consumer].input(edge.input)
            key = (edge.consumer, edge.input)
            if key in fed:
                raise ValueError(f"graph {self.name}: {edge.consumer}.{edge.input} is fed twice")
            fed[key] = edge.producer
        for stage in self.stages:
            for port in kinds[stage].inputs:
                if (stage, port.name) not in fed and not port.optional:
                    raise ValueError(f"graph {self.name}: nothing feeds {stage}.{port.name}")
