"""Stage kinds: the stage class and the stats fields of each."""

from __future__ import annotations

from daemon.stages.infer_stage import INFER_FIELDS, InferStage
from daemon.stages.motion_stage import MOTION_FIELDS, MotionStage
from daemon.stages.overlay_stage import OVERLAY_FIELDS, OverlayStage
from daemon.stages.source_stage import SOURCE_FIELDS, SourceStage
from daemon.stages.worker import COMMON_FIELDS, StageFactory

STAGE_KINDS: dict[str, tuple[StageFactory, tuple[str, ...]]] = {
    "source": (SourceStage, SOURCE_FIELDS),
    "motion": (MotionStage, MOTION_FIELDS),
    "infer": (InferStage, INFER_FIELDS),
    "overlay": (OverlayStage, OVERLAY_FIELDS),
}


def stats_fields(kind: str) -> tuple[str, ...]:
    """All stats fields of a worker of this kind."""
    return (*COMMON_FIELDS, *STAGE_KINDS[kind][1])


def stage_factory(kind: str) -> StageFactory:
    """The stage class of a worker of this kind (see worker.worker_main)."""
    return STAGE_KINDS[kind][0]
