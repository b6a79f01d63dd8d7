"""Exceptions raised by the shared-memory transport."""


class RingError(RuntimeError):
    """Base class for frame-ring errors."""


# The OSError subclasses list OSError first: its constructor must see (errno, message),
# or errno stays None and str() shows the raw args tuple.
class RingNotFound(FileNotFoundError, RingError):
    """Attaching to a ring whose segment does not exist."""


class RingTimeout(RingError, TimeoutError):
    """A `block` ring stayed full for longer than the put timeout."""


class FrameMismatch(RingError, ValueError):
    """A frame or metadata that does not fit the ring's frame spec."""


class ShmSpaceError(OSError, RingError):
    """The shared-memory filesystem has not enough free space for a segment."""
