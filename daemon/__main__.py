"""`python -m daemon` is the same as the `actiond` console script."""

import sys

from daemon.entry import main

# The console script's entry (its environment defaults included). A spawned worker skips
# a main module run with -m (multiprocessing.spawn); the guard keeps it safe anyway.
if __name__ == "__main__":
    sys.exit(main())
