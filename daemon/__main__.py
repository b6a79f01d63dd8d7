"""`python -m daemon` is the same as the `actiond` console script."""

import sys

from daemon.cli import main

# Spawned workers import this module as __mp_main__: only the real main runs the CLI.
if __name__ == "__main__":
    sys.exit(main())
