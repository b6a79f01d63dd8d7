"""Packed records: several named arrays carried in one ring slot.

A ring slot holds one flat byte array; a PackedSpec lays out named fields (a frame and
its optical flow, a clip of frames, a score vector) inside it at aligned offsets, so
stages pass structured data zero-copy without the ring knowing its shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from daemon.ipc.layout import FrameSpec

_FIELD_ALIGN_BYTES = 64


@dataclass(frozen=True)
class PackedSpec:
    """Named (shape, dtype) fields packed into one uint8 ring frame."""

    fields: tuple[tuple[str, tuple[int, ...], str], ...]

    @cached_property  # views() needs them for every slot it reads
    def offsets(self) -> dict[str, int]:
        out, off = {}, 0
        for name, shape, dtype in self.fields:
            out[name] = off
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            off += (size + _FIELD_ALIGN_BYTES - 1) // _FIELD_ALIGN_BYTES * _FIELD_ALIGN_BYTES
        return out

    @property
    def nbytes(self) -> int:
        last_name, shape, dtype = self.fields[-1]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return self.offsets[last_name] + size

    def frame_spec(self) -> FrameSpec:
        """The ring's frame spec: one flat byte array."""
        return FrameSpec((self.nbytes,), "uint8")

    def views(self, buf: np.ndarray) -> dict[str, np.ndarray]:
        """Zero-copy views of each field inside a slot's byte array."""
        offsets = self.offsets
        out = {}
        for name, shape, dtype in self.fields:
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            off = offsets[name]
            out[name] = buf[off : off + size].view(dtype).reshape(shape)
        return out
