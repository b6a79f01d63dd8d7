"""Named process exit codes, shared by the CLI, the supervisor and the tests.

systemd's Restart=on-failure restarts on any non-zero code; RestartPreventExitStatus in the
unit lists the codes for which a restart cannot help (bad config, bad model, an address
that cannot be listened on).
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of the `actiond` process."""

    OK = 0
    FAILURE = 1  # unexpected error: a bug; restarting may help
    CONFIG = 2  # bad config or bad command line: fix the file, then start again
    BOOT = 3  # the pipeline could not start (model, camera, ports)
    SHM = 4  # not enough shared memory for the rings
    ALL_CAMERAS_FAILED = 5  # every camera exhausted its crash-loop budget
    LISTEN = 6  # metrics.listen cannot be bound (port in use, address not ours)
