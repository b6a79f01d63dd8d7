"""Command line: `actiond run | check-config | bench ... | version`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvloop

from daemon import __version__
from daemon.bench import inference as bench_inference
from daemon.bench import load as bench_load
from daemon.bench import pipeline as bench_pipeline
from daemon.bench import soak as bench_soak
from daemon.bench import transport as bench_transport
from daemon.config import ConfigError
from daemon.exitcodes import ExitCode
from daemon.ipc import ShmSpaceError
from daemon.logs import setup_logging
from daemon.stages.contract import ModelError
from daemon.supervisor.app import Supervisor
from daemon.supervisor.boot import Boot, load_boot

log = logging.getLogger("actiond")
DEFAULT_CONFIG = "config.toml"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    bench = sub.add_parser("bench", help="benchmarks (JSON with --json)")
    benches = bench.add_subparsers(dest="bench", required=True)
    for name, module in (("transport", bench_transport), ("pipeline", bench_pipeline),
                         ("inference", bench_inference), ("load", bench_load),
                         ("soak", bench_soak)):
        p = benches.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _boot(path: Path) -> Boot | None:
    try:
        return load_boot(path)
    except ConfigError as exc:
        print(f"actiond: config error: {exc}", file=sys.stderr)
    except ModelError as exc:
        print(f"actiond: model error: {exc}; fix inference.model in {path}", file=sys.stderr)
    return None


def cmd_check_config(args: argparse.Namespace) -> int:
    boot = _boot(args.config)
    if boot is None:
        return ExitCode.CONFIG
    cams = [c.name for c in boot.config.cameras if c.enabled]
    print(f"{args.config}: OK ({len(cams)} camera(s): {', '.join(cams)}; model "
          f"{Path(boot.model_path).name} with labels {', '.join(boot.labels)})")
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
    supervisor = Supervisor(boot, reloader=load_boot)
    try:
        return int(uvloop.run(supervisor.run()))
    except ShmSpaceError as exc:
        log.error("%s", exc)
        return ExitCode.SHM
