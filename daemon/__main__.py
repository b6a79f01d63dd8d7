"""`python -m daemon` is the same as the `actiond` console script."""

import sys

from daemon.cli import main

# A spawned worker skips a main module run with -m (multiprocessing.spawn), so this
# import costs workers nothing; the guard keeps it safe anyway.
if __name__ == "__main__":
    sys.exit(main())
