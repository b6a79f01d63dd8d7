"""Reading an event clip back as a player does: how long it plays, and its frames.

A clip's frame that stands for several slots of its frame rate (a camera slower than the
clip, a gap in the stream) is encoded once and its timestamp holds it on screen, so a
clip's length is its duration in slots, not the number of frames a decoder returns."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def clip_slots(path: Path, fps: float) -> int:
    """How long the clip plays, in slots of `fps`: the end of its last packet (pts +
    duration), as the container's duration says it to a browser."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        ends = [
            (packet.pts + (packet.duration or 0)) * stream.time_base
            for packet in container.demux(stream)
            if packet.pts is not None
        ]
        assert container.duration is not None
        assert abs(container.duration / 1e6 - float(max(ends))) < 1e-3  # what players see
    return round(float(max(ends)) * fps)


def decoded_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame that decodes, with its time in seconds, as BGR arrays."""
    with av.open(str(path)) as container:
        return [
            (float(frame.time or 0.0), frame.to_ndarray(format="bgr24"))
            for frame in container.decode(video=0)
        ]
