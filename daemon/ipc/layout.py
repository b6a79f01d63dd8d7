"""The frame ring's specification and its byte layout in shared memory.

Header words are int64, read and written through a memoryview: aligned 8-byte stores are
single instructions, so a reader never sees half a word, and every multi-word update is
made under the ring's flock with one word (the slot state) written last as the commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import numpy as np

MAGIC = 0x6163_7469_6F6E_6431  # "actiond1"
LAYOUT_VERSION = 1
MAX_GROUPS = 8
ALIGN_BYTES = 64
SPEC_BYTES = 2048

# Ring header words.
H_MAGIC, H_VERSION, H_NSLOTS, H_STRIDE, H_DATA_OFF, H_NGROUPS, H_WRITE_SEQ = range(7)
H_OWNER_PID, H_SPEC_LEN = 7, 8
H_COUNTERS = 16  # puts, then one word per drop reason
H_GETS = 32  # one word per consumer group
H_SLOTS = 48  # first slot record
HEADER_WORDS = H_SLOTS

# Slot record words.
S_STATE, S_SEQ, S_WRITER, S_FRAME_ID, S_TS_NS, S_CAMERA_LEN, S_EXTRA_LEN = range(7)
S_GROUPS = 8  # one word per group: PENDING, DONE or the leaseholder's pid
SLOT_WORDS = S_GROUPS + MAX_GROUPS

FREE, WRITING, READY = 0, 1, 2
PENDING, DONE = 0, -1

# A `block` ring that stays full raises RingTimeout instead: the writer keeps its frame.
DROP_REASONS = ("drop_oldest", "drop_newest", "reclaimed", "busy")
C_PUTS = H_COUNTERS
C_DROP = MappingProxyType({reason: H_COUNTERS + 1 + i for i, reason in enumerate(DROP_REASONS)})


class Policy(StrEnum):
    """What a full ring does with a new frame (GStreamer queue leaky modes)."""

    BLOCK = "block"  # no leak: the producer waits (lossless, for files)
    DROP_OLDEST = "drop_oldest"  # leaky downstream: latest wins (live sources)
    DROP_NEWEST = "drop_newest"  # leaky upstream: the incoming frame is rejected


@dataclass(frozen=True)
class FrameSpec:
    """Shape and dtype of every frame in a ring."""

    shape: tuple[int, ...]
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).str)
        if not self.shape or any(d <= 0 for d in self.shape):
            raise ValueError(f"frame shape {self.shape}: every dimension must be > 0")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class RingSpec:
    """Everything needed to create a ring; attachers read it back from the segment."""

    frame: FrameSpec
    capacity: int = 4
    policy: Policy = Policy.DROP_OLDEST
    groups: tuple[tuple[str, int], ...] = (("main", 1),)  # (consumer group, members)
    producers: int = 1
    meta_bytes: int = 256  # camera name + stage-defined extra bytes per frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", Policy(self.policy))
        object.__setattr__(self, "groups", tuple((str(g), int(n)) for g, n in self.groups))
        if self.capacity < 2:
            raise ValueError(f"ring capacity {self.capacity}: must be at least 2")
        if not 1 <= len(self.groups) <= MAX_GROUPS:
            raise ValueError(f"ring groups: between 1 and {MAX_GROUPS} consumer groups")
        if len({g for g, _ in self.groups}) != len(self.groups):
            raise ValueError("ring groups: names must be unique")
        if any(n < 1 for _, n in self.groups) or self.producers < 1:
            raise ValueError("ring groups and producers: each needs at least one member")

    def group_index(self, group: str) -> int:
        for i, (name, _) in enumerate(self.groups):
            if name == group:
                return i
        names = ", ".join(g for g, _ in self.groups)
        raise KeyError(f"ring has no consumer group {group!r} (groups: {names})")

    @property
    def slot_stride(self) -> int:
        return _align(self.meta_bytes) + _align(self.frame.nbytes)

    @property
    def data_offset(self) -> int:
        table = (HEADER_WORDS + self.capacity * SLOT_WORDS) * 8 + SPEC_BYTES
        return _align(table, 4096)

    @property
    def total_bytes(self) -> int:
        return self.data_offset + self.capacity * self.slot_stride

    def to_json(self) -> bytes:
        doc = {
            "shape": list(self.frame.shape),
            "dtype": self.frame.dtype,
            "capacity": self.capacity,
            "policy": self.policy.value,
            "groups": [list(g) for g in self.groups],
            "producers": self.producers,
            "meta_bytes": self.meta_bytes,
        }
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RingSpec:
        doc = json.loads(raw)
        return cls(
            frame=FrameSpec(tuple(doc["shape"]), doc["dtype"]),
            capacity=doc["capacity"],
            policy=Policy(doc["policy"]),
            groups=tuple(tuple(g) for g in doc["groups"]),
            producers=doc["producers"],
            meta_bytes=doc["meta_bytes"],
        )


@dataclass(frozen=True)
class FrameMeta:
    """Per-frame metadata that travels with the pixels."""

    frame_id: int
    timestamp_ns: int = 0  # capture time: monotonic_ns (live) or media time (replays)
    camera: str = ""
    extra: bytes = field(default=b"", repr=False)


def slot_word(slot: int, word: int) -> int:
    """Index of `word` of slot record `slot` in the header word array."""
    return H_SLOTS + slot * SLOT_WORDS + word


def spec_offset(capacity: int) -> int:
    return (HEADER_WORDS + capacity * SLOT_WORDS) * 8


def _align(n: int, to: int = ALIGN_BYTES) -> int:
    return (n + to - 1) // to * to
