"""The `actiond` console script's entry point, kept light on purpose.

Workers start in the spawn context, and a spawned child first re-runs its parent's main
script (pip's `actiond` wrapper, which imports this module) before it runs its stage.
Whatever that import pulls in, every worker pays for: the whole command line is the
supervisor, every stage, onnxruntime and OpenCV, about 20 MiB of private memory per
process. So the command line is imported when main() runs, which a spawned child never
does (the wrapper calls main() only as __main__). `python -m daemon` runs this main()
too; a child skips a main module run with -m.
"""

from __future__ import annotations

import os
from types import MappingProxyType

# Set before onnxruntime is imported (it reads them when it loads); workers inherit them.
# onnxruntime (1.32 here) carries a telemetry client (1DS, Microsoft's event collector)
# that keeps a device id under $XDG_CACHE_HOME or ~/.cache; under the unit (ProtectHome,
# a home of /) it warns in every process that loads a model. An edge box sends nothing
# unasked: it is off unless the operator sets ORT_DISABLE_TELEMETRY=0.
ENVIRONMENT_DEFAULTS = MappingProxyType({"ORT_DISABLE_TELEMETRY": "1"})


def main() -> int:
    """Run the actiond command line."""
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from daemon.cli import main as cli_main  # deferred on purpose: see the module docstring

    return cli_main()
