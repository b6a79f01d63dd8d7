"""The stage kinds and the pipeline graphs: one line per kind, one edge list per graph.

A camera runs the graph its config names (`pipeline`, default "clip"). Adding a stage is
one module declaring its KIND, one line here, and one edge line in a graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from daemon.config import CameraConfig
from daemon.stages import (
    detect_stage,
    gate_stage,
    infer_stage,
    motion_stage,
    overlay_stage,
    source_stage,
)
from daemon.stages.kinds import Graph, StageKind
from daemon.stages.records import person_result
from daemon.stages.worker import StageFactory

KINDS: Mapping[str, StageKind] = MappingProxyType(
    {
        k.name: k
        for k in (
            source_stage.KIND,
            motion_stage.KIND,
            infer_stage.KIND,
            overlay_stage.KIND,
            gate_stage.KIND,
            detect_stage.KIND,
        )
    }
)

# The README's diagram: source -> motion -> infer -> overlay, motion -> overlay.
CLIP_GRAPH = Graph(
    "clip",
    edges=(
        "source.out -> motion.in",
        "motion.view -> overlay.view",
        "motion.clips -> infer.clips",
        "infer.results -> overlay.results",
    ),
)

# People, not motion: the gate sends frames that moved (at the camera's analyse_fps) to
# the shared person models; the overlay tracks the people and makes their events.
PERSON_GRAPH = Graph(
    "person",
    edges=(
        "source.out -> gate.in",
        "gate.view -> overlay.view",
        "gate.frames -> detect.frames",
        "detect.results -> overlay.results",
    ),
    result=person_result,
)

# The clip model's events gated on a person being present (cameras[].require_person):
# the source also sends its frames to a gate, which passes the moved ones (analyse_fps)
# to the shared person detector, whose results reach the overlay's `people` port. (A
# later edge writing a ring name already used gets "<camera>.<producer>.<ring>".)
CLIP_PEOPLE_GRAPH = Graph(
    "clip_with_people",
    edges=(
        *CLIP_GRAPH.edges,
        "source.tee -> gate.in",
        "gate.frames -> detect.frames",
        "detect.results -> overlay.people",
    ),
)

GRAPHS: Mapping[str, Graph] = MappingProxyType(
    {g.name: g for g in (CLIP_GRAPH, PERSON_GRAPH, CLIP_PEOPLE_GRAPH)}
)
DEFAULT_PIPELINE = CLIP_GRAPH.name
# pipeline -> the graph a camera with require_person = true runs instead
PERSON_GATED: Mapping[str, str] = MappingProxyType({CLIP_GRAPH.name: CLIP_PEOPLE_GRAPH.name})


def graph_name(cam: CameraConfig) -> str:
    """The name of the graph this camera runs: its `pipeline`, or that pipeline's
    person-gated variant when it sets require_person (boot checks that one exists)."""
    return PERSON_GATED.get(cam.pipeline, cam.pipeline) if cam.require_person else cam.pipeline


def graph_for(cam: CameraConfig) -> Graph:
    """The graph this camera runs (see graph_name)."""
    return GRAPHS[graph_name(cam)]


for _graph in GRAPHS.values():
    _graph.check(dict(KINDS))  # a graph that names an undeclared port fails at import


def stats_fields(kind: str) -> tuple[str, ...]:
    """All stats fields of a worker of this kind."""
    return KINDS[kind].all_stats_fields


def stage_factory(kind: str) -> StageFactory:
    """The stage class of a worker of this kind (see worker.worker_main)."""
    return KINDS[kind].factory
