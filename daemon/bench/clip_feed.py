"""The clips of `actiond bench inference` and the producer process that puts them into
the shared clips ring, one producer per camera, as the cameras' motion stages would."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.config import Config, ModelFacts
from daemon.ipc import attach_producer
from daemon.ipc.stats import StatsBlock
from daemon.stages import records

DISTINCT_CLIPS = 4  # different clips per camera, cycled
PUT_TIMEOUT_S = 60.0  # the first put waits for the worker's model load


def make_clips(facts: ModelFacts, camera: int) -> list[np.ndarray]:
    """DISTINCT_CLIPS packed clip records for one camera (the same in every process)."""
    record = records.clip_record(facts)
    rng = np.random.default_rng(camera)
    out = []
    for _ in range(DISTINCT_CLIPS):
        buf = np.zeros(record.nbytes, np.uint8)
        fields = record.views(buf)
        if "frames" in fields:
            fields["frames"][...] = rng.integers(0, 256, fields["frames"].shape, dtype=np.uint8)
        if "flow" in fields:
            fields["flow"][...] = rng.normal(0, 2, fields["flow"].shape)
        out.append(buf)
    return out


@dataclass(frozen=True)
class FeedJob:
    """What the producer process puts: `rounds` clips per camera, then end-of-stream."""

    config: Config
    facts: ModelFacts
    clips_ring: str
    motion_stats: tuple[str, ...]
    rounds: int


def feed(job: FeedJob) -> None:
    """Producer process: plays every camera's motion stage into the clips ring."""
    cams = [c.name for c in job.config.cameras]
    clips = [make_clips(job.facts, i) for i in range(len(cams))]
    producers = [attach_producer(job.clips_ring, i) for i in range(len(cams))]
    for k in range(job.rounds):
        for i, producer in enumerate(producers):
            producer.put(clips[i][k % DISTINCT_CLIPS], k, camera=cams[i], timeout=PUT_TIMEOUT_S)
    for producer in producers:
        producer.close()
    for path in job.motion_stats:  # upstream finished: the worker drains and exits
        block = StatsBlock.attach(path)
        block.set("finished", 1)
        block.close()
