"""Pipelines as data: the graph a camera runs is an edge list over declared stage kinds.

The proof that adding a stage takes one module and one edge line: tests/tap_stage.py
(a stage actiond does not ship) runs between the source and the motion stage of a test
graph, in real worker processes under the real topology and arbiter, and the status
line and the metrics scrape take it in without knowing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tap_stage
from daemon_proc import write_config
from media import make_clip
from metrics_helpers import label_set, parse_samples
from prometheus_client import generate_latest

from daemon.config import (
    CameraConfig,
    Config,
    ConfigError,
    DaemonConfig,
    InferenceConfig,
    MotionConfig,
    facts_without_model,
)
from daemon.ipc import Policy, attach_producer, new_run_id
from daemon.outputs.metrics import make_registry
from daemon.stages import records
from daemon.stages.kinds import Graph
from daemon.stages.records import DETECTIONS, ResultSpec
from daemon.stages.registry import CLIP_GRAPH, GRAPHS, KINDS
from daemon.supervisor.arbiter import Arbiter
from daemon.supervisor.boot import Boot, load_boot
from daemon.supervisor.metrics_view import metrics_snapshot
from daemon.supervisor.restart import RestartPolicy
from daemon.supervisor.status import RateMeter, status_line
from daemon.supervisor.topology import Topology

FRAMES = 24
RUN_DEADLINE_S = 90.0
STOP_S = 5.0
POLL_S = 0.1
# The clip graph with the tap inserted: one edge became two.
TAP_GRAPH = Graph(
    "tapped",
    edges=(
        "source.out -> tap.in",
        "tap.out -> motion.in",
        "motion.view -> overlay.view",
        "motion.clips -> infer.clips",
        "infer.results -> overlay.results",
    ),
)


@pytest.fixture
def shm_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="actiond-graph-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _boot(tmp_path: Path, shm_dir: Path, pipeline: str = "clip") -> Boot:
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES)
    camera = {
        "name": "cam1",
        "source": str(clip),
        "realtime": False,
        "ring_policy": "block",
        "width": 160,
        "height": 120,
        "pipeline": pipeline,
    }
    path = write_config(
        tmp_path / "config.toml",
        {
            "daemon": {"shm_dir": str(shm_dir), "state_dir": str(tmp_path / "state")},
            "motion": {"width": 64, "height": 64},
            "metrics": {"listen": ""},
        },
        [camera],
    )
    return load_boot(path)


async def _run(topology: Topology, config_policy: RestartPolicy) -> tuple[Arbiter, str]:
    arbiter = Arbiter(topology, config_policy, 5.0, lambda camera: None)
    arbiter.spawn_workers()
    meter = RateMeter()
    line = status_line(topology, arbiter, meter)
    deadline = time.monotonic() + RUN_DEADLINE_S
    while not arbiter.settled():
        assert time.monotonic() < deadline, "the tapped pipeline did not finish its file"
        assert not arbiter.failed_cameras, "the camera failed"
        arbiter.murder_stale_workers()
        await asyncio.sleep(POLL_S)
    line = status_line(topology, arbiter, meter)
    await arbiter.stop_workers(list(arbiter.workers), STOP_S)
    return arbiter, line


@pytest.mark.timeout(150)
def test_a_stage_added_by_one_module_and_one_edge_runs_in_the_pipeline(
    tmp_path: Path, shm_dir: Path
) -> None:
    boot = _boot(tmp_path, shm_dir)
    cams = tuple(dataclasses.replace(c, pipeline=TAP_GRAPH.name) for c in boot.config.cameras)
    config = dataclasses.replace(boot.config, cameras=cams)
    kinds = {**KINDS, tap_stage.KIND.name: tap_stage.KIND}
    TAP_GRAPH.check(kinds)
    topology = Topology(
        config,
        new_run_id(),
        boot.model_path,
        boot.facts,
        "",
        boot.result_spec,
        kinds=kinds,
        graphs={TAP_GRAPH.name: TAP_GRAPH},
    )
    topology.build()
    try:
        assert set(topology.rings) == {
            "cam1.frames",
            "cam1.tapped",
            "cam1.view",
            "clips",
            "cam1.results",
        }
        arbiter, line = asyncio.run(_run(topology, RestartPolicy.from_config(config.daemon)))
        stats = {name: block.snapshot() for name, block in topology.stats.items()}
        registry, _ = make_registry(lambda: metrics_snapshot(arbiter, boot.providers))
        samples = parse_samples(generate_latest(registry).decode())
    finally:
        topology.close()
    # Every frame went source -> tap -> motion -> overlay, none lost (block rings).
    assert stats["cam1.source"]["frames_out_total"] == FRAMES
    assert stats["cam1.tap"]["tapped_total"] == FRAMES
    assert stats["cam1.motion"]["frames_in_total"] == FRAMES
    assert stats["cam1.overlay"]["frames_in_total"] == FRAMES
    assert stats["cam1.overlay"]["results_total"] == stats["cam1.motion"]["clips_total"] > 0
    assert line.startswith("cam1: source ") and " tap " in line and "infer " in line, line
    key = label_set(camera="cam1", stage="tap")
    assert samples["actiond_stage_frames_out_total"][key] == FRAMES
    assert (
        samples["actiond_lost_total"][
            label_set(camera="cam1", stage="tap", item="frame", reason="not_tapped")
        ]
        == 0.0
    )
    assert "actiond_tap_frames_total" not in samples  # unknown to the catalog: left out


def test_the_clip_graph_reads_like_the_readme() -> None:
    assert GRAPHS["clip"] is CLIP_GRAPH
    assert CLIP_GRAPH.stages == ("source", "motion", "overlay", "infer")
    with pytest.raises(ValueError, match="nothing feeds motion.in"):
        Graph(
            "broken",
            (
                "motion.view -> overlay.view",
                "infer.results -> overlay.results",
                "motion.clips -> infer.clips",
            ),
        ).check(dict(KINDS))
    with pytest.raises(KeyError, match="no output port 'frames'"):
        Graph("typo", ("source.frames -> motion.in",)).check(dict(KINDS))


def test_a_camera_naming_an_unknown_pipeline_is_a_config_error(
    tmp_path: Path, shm_dir: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        _boot(tmp_path, shm_dir, pipeline="pose")
    assert info.value.key == "cameras[0].pipeline"
    assert "'pose' is not a pipeline; use one of: clip" in info.value.reason


def test_the_status_line_counts_the_shared_rings_drops(shm_dir: Path) -> None:
    """The clips ring is shared by every camera: its drops show beside the stage that
    reads it (they were left out when drops were summed by ring-name prefix)."""
    camera = CameraConfig("cam1", "test:moving-box", width=32, height=24)
    config = Config(
        daemon=DaemonConfig(shm_dir=str(shm_dir)),
        cameras=(camera,),
        motion=MotionConfig(width=16, height=16),
        inference=InferenceConfig(labels=("a", "b")),
    )
    topology = Topology(config, new_run_id(), "", facts_without_model(config))
    topology.build()
    try:
        clips = topology.rings["clips"]
        assert clips.spec.policy is Policy.DROP_OLDEST
        clip = np.zeros(clips.spec.frame.shape, np.uint8)
        with attach_producer(clips.path, 0) as producer:
            for frame_id in range(clips.spec.capacity + 2):
                producer.put(clip, frame_id, camera="cam1")
        arbiter = Arbiter(topology, RestartPolicy(), 5.0, lambda camera: None)
        line = status_line(topology, arbiter, RateMeter())
    finally:
        topology.close()
    assert line == (
        "cam1: source 0.0 motion 0.0 overlay 0.0 fps, drops 0 | "
        "infer 0.0 clips/s x1, drops 2, restarts 0"
    ), line


def test_the_results_ring_is_sized_from_the_result_record(shm_dir: Path) -> None:
    camera = CameraConfig("cam1", "test:moving-box", width=32, height=24)
    config = Config(
        daemon=DaemonConfig(shm_dir=str(shm_dir)),
        cameras=(camera,),
        motion=MotionConfig(width=16, height=16),
    )
    poses = ResultSpec(DETECTIONS, ("person",), keypoints=17)
    topology = Topology(config, new_run_id(), "", facts_without_model(config), "", poses)
    topology.build()
    try:
        frame = topology.rings["cam1.results"].spec.frame
        args = topology.workers["cam1.overlay"].args
    finally:
        topology.close()
    assert frame == records.result_record(poses).frame_spec()
    assert args.result == poses
