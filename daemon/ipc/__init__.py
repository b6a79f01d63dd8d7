"""Shared-memory transport: frame rings between processes, and worker stats blocks."""

from daemon.ipc.endpoints import Consumer, Lease, Producer, SlotLoan
from daemon.ipc.errors import FrameMismatch, RingError, RingNotFound, RingTimeout, ShmSpaceError
from daemon.ipc.layout import DROP_REASONS, FrameMeta, FrameSpec, Policy, RingSpec
from daemon.ipc.mapping import RingStats
from daemon.ipc.ring import FrameRing, attach_consumer, attach_producer, ring_stats
from daemon.ipc.runlock import RunLock, clean_stale
from daemon.ipc.segment import DEFAULT_SHM_DIR, list_segments, new_run_id

__all__ = [
    "Consumer",
    "DEFAULT_SHM_DIR",
    "DROP_REASONS",
    "FrameMeta",
    "FrameMismatch",
    "FrameRing",
    "FrameSpec",
    "Lease",
    "Policy",
    "Producer",
    "RingError",
    "RingNotFound",
    "RingSpec",
    "RingStats",
    "RingTimeout",
    "RunLock",
    "ShmSpaceError",
    "SlotLoan",
    "attach_consumer",
    "attach_producer",
    "clean_stale",
    "list_segments",
    "new_run_id",
    "ring_stats",
]
