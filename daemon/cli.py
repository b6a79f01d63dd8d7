"""Command line: `actiond run | check-config | bench ... | eval ... | version`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module
from pathlib import Path
from types import MappingProxyType

import uvloop

from daemon import __version__
from daemon.bench.extras import MissingExtra
from daemon.config import ConfigError
from daemon.config.environment import environment_warnings
from daemon.exitcodes import ExitCode
from daemon.ipc import ShmSpaceError
from daemon.logs import setup_logging
from daemon.outputs.metrics import MetricsServerError
from daemon.outputs.mqtt_session import MqttSetupError
from daemon.outputs.outbox import OutboxError
from daemon.outputs.sinks.runner import SinkSetupError
from daemon.stages.contract import ModelError
from daemon.supervisor.app import Supervisor
from daemon.supervisor.boot import Boot, load_boot
from daemon.supervisor.capacity import capacity_warnings, usable_cores

log = logging.getLogger("actiond")
EVAL_HELP = "score labelled clips run through a real daemon (`actiond eval --help`)"
DEFAULT_CONFIG = "config.toml"
# `actiond bench NAME` runs daemon.bench.NAME, imported only then: the benchmarks need
# packages the daemon does not (the bench extra), and `run` has no use for their code.
# The help lines are their modules' first docstring lines (a test keeps them equal).
BENCHES = MappingProxyType(
    {
        "transport": "Transport benchmark: frames from one process to another through our ring "
        "and others.",
        "pipeline": "Pipelining benchmark: the seed's sequential loop against our ring pipeline.",
        "inference": "Inference benchmark: our infer stage against a bare onnxruntime loop, same "
        "model and inputs.",
        "load": "Load benchmark: how many real-time cameras one daemon holds on this machine.",
        "soak": "Soak benchmark: one daemon for M minutes, watched for slow leaks and restarts.",
    }
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # A bench's own options are parsed by its module (run_bench), so they are left over here.
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return run_bench(args.bench, rest)
    if args.command == "eval":
        return run_eval(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actiond", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_CONFIG))
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a config file and its model")
    check.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_CONFIG))
    check.set_defaults(func=cmd_check_config)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _args: print(f"actiond {__version__}") or ExitCode.OK)
    bench = sub.add_parser(
        "bench",
        help="benchmarks (JSON with --json; `actiond bench NAME --help` for NAME's options)",
    )
    benches = bench.add_subparsers(dest="bench", required=True)
    for name, summary in BENCHES.items():
        benches.add_parser(name, help=summary, add_help=False)
    sub.add_parser("eval", help=EVAL_HELP, add_help=False)
    return parser


def run_bench(name: str, argv: list[str]) -> int:
    """Import daemon.bench.`name`, parse its options from `argv` and run it."""
    module = import_module(f"daemon.bench.{name}")
    parser = argparse.ArgumentParser(
        prog=f"actiond bench {name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args))
    except MissingExtra as exc:
        print(f"actiond bench {name}: {exc}", file=sys.stderr)
        return ExitCode.CONFIG


def run_eval(argv: list[str]) -> int:
    """`actiond eval`: daemon.evaluate.command, imported only then (like a bench)."""
    module = import_module("daemon.evaluate.command")
    parser = argparse.ArgumentParser(
        prog="actiond eval",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)))


def _boot(path: Path) -> Boot | None:
    try:
        return load_boot(path)
    except ConfigError as exc:
        print(f"actiond: config error: {exc}", file=sys.stderr)
    except ModelError as exc:
        print(f"actiond: model error: {exc}; fix inference.model in {path}", file=sys.stderr)
    return None


def _sink_setup_failed(config: Path, exc: Exception) -> int:
    """An event sink or its outbox could not be opened at start-up: one line, and CONFIG
    for a setting of the sink's section (fix the file), BOOT for the state directory or
    the outbox file (unwritable, corrupt, disk full: systemd restarts on BOOT, so a disk
    that has room again, or a file moved aside, lets the next start succeed)."""
    cause = exc.__cause__ if isinstance(exc, SinkSetupError) else exc
    if isinstance(cause, ValueError):  # MqttSetupError, a section's value a sink refuses
        log.error("%s: event sink %s; fix it in the config and start again", config, exc)
        return ExitCode.CONFIG
    hint = "" if isinstance(cause, OutboxError) else "; check the path and its permissions"
    log.error("%s: event sink %s%s", config, exc, hint)
    return ExitCode.BOOT


def cmd_check_config(args: argparse.Namespace) -> int:
    boot = _boot(args.config)
    if boot is None:
        return ExitCode.CONFIG
    cams = [c for c in boot.config.cameras if c.enabled]
    each = "; ".join(boot.camera_line(c) for c in cams)
    print(f"{args.config}: OK ({len(cams)} camera(s): {each})")
    for line in environment_warnings(boot.config):  # this shell is not the service's
        print(f"actiond: {line}", file=sys.stderr)
    for line in capacity_warnings(boot.config, usable_cores()):
        print(f"actiond: {line}", file=sys.stderr)
    return ExitCode.OK


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging("info")
    boot = _boot(args.config)
    if boot is None:
        return ExitCode.CONFIG
    setup_logging(boot.config.daemon.log_level)
    # OpenCV's own warnings on every failed reconnect ("backend is generally available
    # but can't be used to capture by name") mislead; our log names the real problem.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    log.info("actiond %s starting with %s", __version__, args.config)
    for line in capacity_warnings(boot.config, usable_cores()):
        log.warning("%s", line.removeprefix("warning: "))
    supervisor = Supervisor(boot, reloader=load_boot)
    try:
        return int(uvloop.run(supervisor.run()))
    except ShmSpaceError as exc:
        log.error("%s", exc)
        return ExitCode.SHM
    except MetricsServerError as exc:
        log.error("%s: %s", args.config, exc)
        return ExitCode.LISTEN
    except (SinkSetupError, OutboxError, MqttSetupError) as exc:
        return _sink_setup_failed(args.config, exc)
