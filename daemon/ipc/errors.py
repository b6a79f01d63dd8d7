"""Exceptions raised by the shared-memory transport."""


class RingError(RuntimeError):
    """Base class for frame-ring errors."""


class RingNotFound(RingError, FileNotFoundError):
    """Attaching to a ring whose segment does not exist."""


class RingTimeout(RingError, TimeoutError):
    """A `block` ring stayed full for longer than the put timeout."""


class FrameMismatch(RingError, ValueError):
    """A frame or metadata that does not fit the ring's frame spec."""


class ShmSpaceError(RingError, OSError):
    """The shared-memory filesystem has not enough free space for a segment."""
