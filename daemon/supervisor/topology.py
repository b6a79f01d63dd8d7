"""The pipeline graph: which rings and workers a config needs, created and torn down.

Per camera: source -ring frames-> motion -ring view-> overlay, and infer -ring results->
overlay. Shared by all cameras: motion -ring clips-> infer (N replicas take turns).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from daemon.config import CameraConfig, Config
from daemon.ipc import FrameRing, FrameSpec, Policy, RingSpec
from daemon.ipc.segment import check_free_space
from daemon.ipc.stats import StatsBlock
from daemon.stages import records
from daemon.stages.registry import stats_fields
from daemon.stages.worker import WorkerSpec

log = logging.getLogger(__name__)

VIEW_CAPACITY = 4
RESULTS_CAPACITY = 8
STATS_BLOCK_BYTES = 16384   # upper bound of one worker's stats block, for the space check


@dataclass
class Topology:
    """The rings and stats blocks of one pipeline, and the specs of its workers."""

    config: Config
    run_id: str
    model_path: str
    labels: tuple[str, ...]
    events_socket: str = ""
    rings: dict[str, FrameRing] = field(default_factory=dict)
    stats: dict[str, StatsBlock] = field(default_factory=dict)
    workers: dict[str, WorkerSpec] = field(default_factory=dict)

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
        cams = [c for c in self.config.cameras if c.enabled]
        plan = [("clips", _clip_ring_spec(self.config, cams))]
        for cam in cams:
            plan += self._camera_rings(cam)
        # One check for the whole graph: the error names everything that is needed, not
        # just the ring that happened not to fit.
        workers = 3 * len(cams) + self.config.inference.replicas
        check_free_space(self.config.daemon.shm_dir,
                         sum(spec.total_bytes for _, spec in plan) + workers * STATS_BLOCK_BYTES)
        for name, spec in plan:
            self._ring(name, spec)
        for index, cam in enumerate(cams):
            self.build_camera(cam, index)
        for replica in range(self.config.inference.replicas):
            rings = {"clips": str(self.rings["clips"].path)}
            rings.update({f"results:{c.name}": str(self.rings[f"{c.name}.results"].path)
                          for c in cams})
            self._worker("infer", f"infer.{replica}", "", replica, rings,
                         {"model": self.model_path,
                          "upstream_stats": [self._stats_path(f"{c.name}.motion") for c in cams]})

    def _camera_rings(self, cam: CameraConfig) -> list[tuple[str, RingSpec]]:
        policy = Policy(cam.ring_policy)
        frames = RingSpec(frame=FrameSpec((cam.height, cam.width, 3), "uint8"),
                          capacity=cam.ring_capacity, policy=policy, groups=(("motion", 1),))
        view = records.view_record(cam, self.config).frame_spec()
        result = records.result_record(len(self.labels)).frame_spec()
        return [(f"{cam.name}.frames", frames),
                (f"{cam.name}.view", RingSpec(view, VIEW_CAPACITY, policy, (("overlay", 1),))),
                (f"{cam.name}.results", RingSpec(
                    result, RESULTS_CAPACITY, Policy.DROP_OLDEST, (("overlay", 1),),
                    producers=self.config.inference.replicas))]

    def build_camera(self, cam: CameraConfig, index: int) -> None:
        """The specs of one camera's workers (its rings exist already)."""
        name = cam.name
        self._worker("source", f"{name}.source", name, 0,
                     {"out": self._path(f"{name}.frames")}, {"source": cam.source})
        self._worker("motion", f"{name}.motion", name, 0,
                     {"in": self._path(f"{name}.frames"), "view": self._path(f"{name}.view"),
                      "clips": self._path("clips")},
                     {"camera_index": index, "upstream_stats": [self._stats_path(f"{name}.source")]})
        self._worker("overlay", f"{name}.overlay", name, 0,
                     {"view": self._path(f"{name}.view"),
                      "results": self._path(f"{name}.results")},
                     {"labels": list(self.labels), "camera_index": index,
                      "events_socket": self.events_socket,
                      "frame_log": self.config.display.frame_log,
                      "upstream_stats": [self._stats_path(f"{name}.motion")],
                      "source_stats": self._stats_path(f"{name}.source")})

    def respec_camera(self, camera: str, config: Config) -> list[str]:
        """Point a camera's workers at a changed camera config that keeps its rings'
        shapes; returns the names of the workers to restart."""
        self.config = config
        source = next(c.source for c in config.cameras if c.name == camera)
        names = [n for n, w in self.workers.items() if w.camera == camera]
        for name in names:
            worker = self.workers[name]
            extra = dict(worker.extra, source=source) if worker.kind == "source" else worker.extra
            self.workers[name] = replace(worker, config=config, extra=extra)
        return names

    def _ring(self, name: str, spec: RingSpec) -> None:
        self.rings[name] = FrameRing.create(name, spec, self.run_id, self.config.daemon.shm_dir)

    def _path(self, ring: str) -> str:
        return str(self.rings[ring].path)

    def _stats_path(self, worker: str) -> str:
        return str(self.stats[worker].path)

    def _worker(self, kind: str, name: str, camera: str, replica: int,
                rings: dict[str, str], extra: dict[str, object]) -> None:
        # Stats blocks outlive worker restarts, so counters stay monotonic for Prometheus.
        block = StatsBlock.create(f"{name}.stats", stats_fields(kind), self.run_id,
                                  self.config.daemon.shm_dir)
        self.stats[name] = block
        self.workers[name] = WorkerSpec(kind, name, camera, replica, str(block.path),
                                        rings, self.config, extra)

    def close(self) -> None:
        """Unlink every ring and stats block (the workers must be gone)."""
        for ring in reversed(list(self.rings.values())):
            ring.close()
        for block in reversed(list(self.stats.values())):
            block.close(unlink=True)
        self.rings.clear()
        self.stats.clear()


def _clip_ring_spec(config: Config, cams: list[CameraConfig]) -> RingSpec:
    # Latest clip wins for live cameras; files that asked for lossless keep every clip.
    lossless = bool(cams) and all(c.ring_policy == "block" for c in cams)
    return RingSpec(records.clip_record(config).frame_spec(),
                    # room for every camera's newest clip plus one per replica: batches form
                    capacity=max(4, 2 * config.inference.replicas,
                                 len(cams) + config.inference.replicas),
                    policy=Policy.BLOCK if lossless else Policy.DROP_OLDEST,
                    groups=(("infer", config.inference.replicas),),
                    producers=max(1, len(cams)))
