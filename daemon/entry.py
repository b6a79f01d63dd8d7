"""The `actiond` console script's entry point, kept light on purpose.

Workers start in the spawn context, and a spawned child first re-runs its parent's main
script (pip's `actiond` wrapper, which imports this module) before it runs its stage.
Whatever that import pulls in, every worker pays for: the whole command line is the
supervisor, every stage, the benchmarks, onnxruntime, OpenCV and onnx, about 20 MiB of
private memory per process. So the command line is imported when main() runs, which a
spawned child never does (the wrapper calls main() only as __main__). `python -m daemon`
needs none of this: a child skips a main module run with -m.
"""

from __future__ import annotations


def main() -> int:
    """Run the actiond command line."""
    from daemon.cli import main as cli_main   # deferred on purpose: see the module docstring

    return cli_main()
