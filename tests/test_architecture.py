"""The shape of the code, kept by tests: which package may import which, module and
function sizes, and no mutable state at module level (docs/architecture.md explains)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[1] / "daemon"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# Who may import whom, by first component under daemon/ (a module at the top is its own
# unit). Dependencies flow one way: leaves first, the command line last. Imports inside
# functions count too: a deferred import is still a dependency.
LEAVES = frozenset({"exitcodes", "logs", "progress", "systemd", "ipc", "capture", "__init__"})
ALLOWED: dict[str, frozenset[str]] = {
    **{leaf: frozenset() for leaf in LEAVES},
    "config": frozenset({"capture"}),
    "events": frozenset({"config"}),
    # Tracks and person-centred actions: pure logic over detections and the config.
    "people": frozenset({"config"}),
    "metrics_catalog": frozenset({"ipc"}),
    # Runs inside the overlay worker: MJPEG view, window, recorder. Not under outputs/,
    # which the supervisor runs (sinks, metrics endpoint): a worker never loads those.
    "display": frozenset({"config", "ipc"}),
    # The web console (aiohttp, in the supervisor): history, pages, API, live images. The
    # console sink (outputs/sinks/console.py) runs it.
    "console": frozenset({"config", "ipc"}),
    "stages": frozenset(
        {
            "capture",
            "config",
            "events",
            "exitcodes",
            "ipc",
            "logs",
            "display",
            "metrics_catalog",
            "people",
            "__init__",
        }
    ),
    "outputs": frozenset({"config", "console", "events", "ipc", "metrics_catalog", "__init__"}),
    "supervisor": frozenset(
        {
            "capture",
            "config",
            "events",
            "exitcodes",
            "ipc",
            "outputs",
            "stages",
            "systemd",
            "metrics_catalog",
            "__init__",
        }
    ),
    "bench": frozenset(
        {
            "capture",
            "config",
            "exitcodes",
            "ipc",
            "stages",
            "supervisor",
            "logs",
            "progress",
            "__init__",
        }
    ),
    # `actiond eval`: runs labelled clips through a real daemon (a subprocess) and scores
    # its events; it needs the people engine's zone action names and the config schema
    # (which sections are event sinks, to turn the user's off), nothing of the daemon.
    "evaluate": frozenset({"config", "exitcodes", "people", "progress", "__init__"}),
    "cli": frozenset(
        {
            "bench",
            "config",
            "evaluate",
            "exitcodes",
            "ipc",
            "logs",
            "outputs",
            "stages",
            "supervisor",
            "__init__",
        }
    ),
    "entry": frozenset({"cli"}),
    "__main__": frozenset({"entry"}),
}
# Module-level tables must be read-only (tuple, frozenset, MappingProxyType); `__all__` is
# the one list Python itself asks for.
MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
MUTABLE_CALLS = frozenset(
    {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque", "bytearray"}
)


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(DAEMON.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def unit_of(path: Path) -> str:
    rel = path.relative_to(DAEMON)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names = [f"{base}.{a.name}" for a in node.names] if base == "daemon" else [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "daemon":
                unit = parts[1] if len(parts) > 1 else "__init__"
                yield node.lineno, "__init__" if unit == "__version__" else unit


def test_every_unit_has_a_rule() -> None:
    units = {unit_of(path) for path, _ in modules()}
    assert units <= set(ALLOWED), f"give these a row in ALLOWED: {units - set(ALLOWED)}"


def test_packages_import_only_what_their_layer_allows() -> None:
    problems = []
    for path, tree in modules():
        unit = unit_of(path)
        for line, target in imported_units(tree):
            if target != unit and target not in ALLOWED[unit]:
                problems.append(
                    f"{path.relative_to(DAEMON.parent)}:{line}: {unit} may not import {target}"
                )
    assert problems == []


def test_allowed_imports_have_no_cycle() -> None:
    state: dict[str, str] = {}

    def visit(unit: str, trail: tuple[str, ...]) -> None:
        if state.get(unit) == "done":
            return
        assert state.get(unit) != "open", f"import cycle: {' -> '.join((*trail, unit))}"
        state[unit] = "open"
        for target in ALLOWED[unit]:
            visit(target, (*trail, unit))
        state[unit] = "done"

    for unit in ALLOWED:
        visit(unit, ())


def test_the_checker_sees_a_forbidden_import() -> None:
    tree = ast.parse("def f():\n    from daemon.supervisor.app import Supervisor\n")
    assert list(imported_units(tree)) == [(2, "supervisor")]
    assert "supervisor" not in ALLOWED["stages"]


@pytest.mark.parametrize("limit", [MAX_MODULE_LINES])
def test_modules_stay_small(limit: int) -> None:
    big = {
        str(p.relative_to(DAEMON)): n
        for p, _ in modules()
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert big == {}, f"split these by duty (over {limit} lines)"


def test_functions_stay_small() -> None:
    long = [
        f"{path.relative_to(DAEMON)}:{node.lineno} {node.name} "
        f"({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def mutable_globals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        name = ast.unparse(targets[0])
        called = (
            value.func.id
            if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name))
            else ""
        )
        if name != "__all__" and (isinstance(value, MUTABLE_LITERALS) or called in MUTABLE_CALLS):
            yield node.lineno, name


def test_no_mutable_state_at_module_level() -> None:
    found = [
        f"{path.relative_to(DAEMON)}:{line} {name}"
        for path, tree in modules()
        for line, name in mutable_globals(tree)
    ]
    assert found == [], (
        "make these read-only (tuple, frozenset, MappingProxyType) or move them into an object"
    )


def test_the_mutable_state_checker_finds_a_dict() -> None:
    tree = ast.parse("TABLE = {'a': 1}\nOK = (1, 2)\n__all__ = ['x']\nseen = set()\n")
    assert list(mutable_globals(tree)) == [(1, "TABLE"), (4, "seen")]
