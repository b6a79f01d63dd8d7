"""`actiond bench transport`, `bench pipeline` and `bench inference` run as a user runs
them and print the JSON their issues promise (short runs: the numbers themselves live in
the README)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.bench.memcpy_ref import FALLBACK_LLC_BYTES, last_level_cache_bytes
from daemon.cli import BENCHES

TRANSPORT_KEYS = {
    "ring_copy_fps",
    "ring_zero_copy_hops_per_s",
    "mp_queue_fps",
    "arrayqueues_fps",
    "memcpy_stream_fps",
    "memcpy_cached_fps",
    "ring_hop_latency_ms",
}
PIPELINE_KEYS = {
    "sequential_fps",
    "pipelined_fps",
    "bound_fps",
    "replicated_fps",
    "latency_ms",
    "cpu_busy",
}


def bench(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.timeout(300)
def test_transport_bench_reports_every_leg() -> None:
    result = bench("transport", "--frames", "40", "--shape", "120,160,3")
    assert TRANSPORT_KEYS <= result.keys()
    for key in TRANSPORT_KEYS - {"arrayqueues_fps", "ring_hop_latency_ms"}:
        assert result[key] > 0, key
    latency = result["ring_hop_latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"]
    # Every leg sends from source frames spanning more than the last-level cache, the
    # reference copy writes to as many, and the ring's ratio is taken against it; the
    # cache-resident figure is kept beside it.
    assert result["llc_bytes"] == last_level_cache_bytes()
    assert result["stream_bytes"] >= 2 * result["llc_bytes"]
    assert result["stream_frames"] * 120 * 160 * 3 == result["stream_bytes"]
    assert result["ring_copy_vs_memcpy"] == pytest.approx(
        result["ring_copy_fps"] / result["memcpy_stream_fps"], abs=1e-3
    )
    assert result["ring_copy_vs_memcpy_cached"] == pytest.approx(
        result["ring_copy_fps"] / result["memcpy_cached_fps"], abs=1e-3
    )


def test_bench_help_lines_are_the_modules_first_docstring_lines() -> None:
    # cli imports a bench's module only when it runs, so its help line is kept in cli.
    for name, summary in BENCHES.items():
        doc = importlib.import_module(f"daemon.bench.{name}").__doc__
        assert doc is not None and doc.splitlines()[0] == summary, name


def test_last_level_cache_size_is_the_largest_sysfs_cache(tmp_path: Path) -> None:
    for index, size in enumerate(("32K", "32K", "512K", "32768K")):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == 32 * 1024 * 1024
    assert last_level_cache_bytes(tmp_path / "missing") == FALLBACK_LLC_BYTES


@pytest.mark.timeout(300)
def test_pipeline_bench_pipelines_and_replicates() -> None:
    result = bench("pipeline", "--frames", "40")
    assert PIPELINE_KEYS <= result.keys()
    # Waiting work overlaps even on a busy 2-core box: well above the sequential loop.
    assert result["pipelined_fps"] > 1.3 * result["sequential_fps"]
    assert result["replicated_fps"] > 0 and result["bound_fps"] > 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]


@pytest.mark.timeout(300)
def test_inference_bench_compares_stage_and_bare_loop_for_each_model() -> None:
    result = bench(
        "inference", "--clips", "40", "--cameras", "2", "--repeats", "1", "--min-seconds", "0"
    )
    models = {m["model"]: m for m in result["models"]}
    assert set(models) == {"bundled", "conv3d", "conv3d-dynamic-batch", "conv3d-dynamic-batch-max1"}
    for name, m in models.items():
        assert m["stage_fps"] > 0 and m["bare_fps"] > 0, name
        assert m["ratio"] == pytest.approx(m["stage_fps"] / m["bare_fps"], abs=2e-3), name
        assert len(m["ratio_runs"]) == 1 and len(m["bare_fps_runs"]) == 2, name
        assert m["clips"] >= 40 and m["results_dropped"] == 0, name
    assert models["conv3d"]["max_batch"] == 1 and models["conv3d"]["batch"] == 1
    assert models["conv3d-dynamic-batch"]["max_batch"] > 1
    assert models["conv3d-dynamic-batch-max1"]["max_batch"] == 1
    assert models["conv3d-dynamic-batch-max1"]["batch"] == 1
    assert result["batching"]["cameras"] == 2
    person = result["person"]  # the detect stage on real frames with people in them
    assert person["stage_fps"] > 0 and person["bare_fps"] > 0
    assert person["ratio"] == pytest.approx(person["stage_fps"] / person["bare_fps"], abs=2e-3)
    assert person["frames"] >= 40 and person["results_dropped"] == 0
    assert person["people_per_frame"] >= 1 and person["stage_people_per_frame"] >= 1
    # The feeder keeps the ring full: the detect replica takes several frames at once
    # and runs their people through shared pose calls.
    assert person["frames_per_batch"] > 1 and person["people_per_pose_call"] > 1
    costs = person["pose_ms_per_person"]
    assert set(costs) == {"batch_1", "batch_2", "batch_4", "batch_8", "original"}
    assert all(ms > 0 for ms in costs.values())
