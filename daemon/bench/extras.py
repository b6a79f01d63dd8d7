"""Packages a benchmark needs beyond actiond's own dependencies (the `bench` extra).

`pip install actiond` installs only what the daemon runs on; the benchmarks import their
extra packages when they run, through require(), so that a missing one stops that one
benchmark with a line saying what to install instead of breaking every command.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# actiond is installed from its checkout (it is not on PyPI, where the name could be
# anyone's), so the hint names the checkout.
BENCH_EXTRA_HINT = "install the bench extra: pip install '.[bench]' in the actiond checkout"


class MissingExtra(ImportError):
    """A benchmark needs a package of the bench extra that is not installed."""


def require(module: str, needed_for: str) -> ModuleType:
    """Import `module` (a package of the bench extra) or raise MissingExtra naming it."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{needed_for} needs the Python package {module!r}, which is not "
            f"installed; {BENCH_EXTRA_HINT}"
        ) from exc
