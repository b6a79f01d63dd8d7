"""The physical reference for the transport benchmark: single-core np.copyto of frames,
from one cached buffer and from a stream of sources spanning several last-level caches
(whose size sysfs gives), so that a copy reads and writes memory as a ring's does."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
# When sysfs does not say (some containers and ARM boards): larger than most LLCs.
FALLBACK_LLC_BYTES = 64 * 1024 * 1024
STREAM_LLC_MULTIPLE = 2  # the streaming copy's sources, and its destinations, each span
# this many last-level caches
_CACHE_SIZE_RE = re.compile(r"(\d+)([KMG]?)")
_CACHE_UNIT_BYTES = MappingProxyType({"": 1, "K": 1024, "M": 1024**2, "G": 1024**3})


def last_level_cache_bytes(cache_dir: Path = CPU_CACHE_DIR) -> int:
    """The largest cache of cpu0 (sysfs index*/size, e.g. "32768K"), else FALLBACK_LLC_BYTES."""
    sizes = []
    for path in cache_dir.glob("index*/size"):
        try:
            match = _CACHE_SIZE_RE.fullmatch(path.read_text().strip())
        except OSError:
            continue
        if match:
            sizes.append(int(match[1]) * _CACHE_UNIT_BYTES[match[2]])
    return max(sizes, default=FALLBACK_LLC_BYTES)


def memcpy_cached_fps(frame: np.ndarray, frames: int) -> float:
    dst = np.empty_like(frame)
    np.copyto(dst, frame)  # fault the destination pages in before timing
    start = time.perf_counter()
    for _ in range(frames):
        np.copyto(dst, frame)
    return frames / (time.perf_counter() - start)


def stream_frames(frame: np.ndarray, llc_bytes: int) -> list[np.ndarray]:
    """Copies of `frame` that together span STREAM_LLC_MULTIPLE last-level caches."""
    count = max(2, math.ceil(STREAM_LLC_MULTIPLE * llc_bytes / frame.nbytes))
    return [frame.copy() for _ in range(count)]


def memcpy_stream_fps(stream: list[np.ndarray], frames: int) -> float:
    """Copies from the stream's cycle of sources into as many destinations."""
    # Writing every destination faults its pages in (np.zeros would not: calloc maps them
    # lazily), and leaves the first ones out of the cache by the time the timed copies
    # reach them.
    targets = [source.copy() for source in stream]
    start = time.perf_counter()
    for i in range(frames):
        np.copyto(targets[i % len(stream)], stream[i % len(stream)])
    return frames / (time.perf_counter() - start)
