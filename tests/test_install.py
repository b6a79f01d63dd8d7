"""The documented install: `make install` puts actiond with its runtime dependencies only
(no extras) in a virtual environment, and the daemon runs from there as the systemd unit
runs it (an unprivileged user, $STATE_DIRECTORY, $RUNTIME_DIRECTORY, umask 0077, cwd /).
Every module of the package imports without the test and bench extras, and a benchmark
that needs one says which, in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_proc import free_port, wait_for
from metrics_helpers import parse_samples, scrape_text

from daemon import __version__
from daemon.exitcodes import ExitCode

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"
UNIT = REPO / "systemd" / "actiond.service"
README = REPO / "README.md"
# Packages of the test, bench and train extras: the installed daemon must not need them.
EXTRAS = ("onnx", "arrayqueues", "torch", "pytest", "_pytest", "yaml")
# Run before anything else in a child: every import of an extra fails as if not installed.
BLOCK_EXTRAS = f"""
import sys
class _NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NoExtras())
"""
IMPORT_ALL_THEN_CLI = """
import importlib, pkgutil, daemon
for module in pkgutil.walk_packages(daemon.__path__, "daemon."):
    importlib.import_module(module.name)
from daemon.cli import main
sys.exit(main(sys.argv[1:]))
"""
CLI_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 420  # pip fetches and installs numpy, OpenCV, onnxruntime, ...
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0  # the staged shutdown is bounded by ~18 s
FRAMES_SHOWN = 20
SERVICE_USER, SERVICE_GROUP = "nobody", "nogroup"


def without_extras(*args: str) -> subprocess.CompletedProcess[str]:
    """`actiond ARGS` after importing every daemon module, with the extras blocked."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRAS + IMPORT_ALL_THEN_CLI, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_every_module_imports_and_the_cli_runs_without_the_extras() -> None:
    done = without_extras("version")
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.strip() == f"actiond {__version__}"
    done = without_extras("check-config", "-c", str(REPO / "config.toml"))
    assert done.returncode == ExitCode.OK, done.stderr
    assert ": OK (" in done.stdout


def test_a_bench_that_needs_an_extra_names_it_in_one_line() -> None:
    done = without_extras("bench", "inference", "--clips", "20", "--repeats", "1")
    assert done.returncode == ExitCode.CONFIG, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("actiond bench inference: ")
    assert "'onnx'" in lines[0] and "pip install '.[bench]'" in lines[0]


def test_bench_transport_without_arrayqueues_skips_that_leg_and_says_so() -> None:
    done = without_extras("bench", "transport", "--frames", "10", "--shape", "48,64,3", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["arrayqueues_fps"] is None
    note = [line for line in done.stderr.splitlines() if "'arrayqueues'" in line]
    assert len(note) == 1 and "pip install '.[bench]'" in note[0], done.stderr
    assert "Traceback" not in done.stderr


def makefile_default(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"Makefile sets no default for {name}"
    return match[1]


def test_readme_unit_and_makefile_name_one_install() -> None:
    prefix, bindir = makefile_default("PREFIX"), makefile_default("BINDIR")
    assert (prefix, bindir) == ("/opt/actiond", "/usr/local/bin")
    readme = README.read_text()
    service = readme[readme.index("## Running as a systemd service") :]
    service = service[: service.index("\n## ")]
    unit_header = UNIT.read_text().split("\n[Unit]")[0]
    for text in (service, unit_header):
        assert "make install" in text and "make uninstall" in text
        assert f"{prefix}/bin/actiond" in text and f"{bindir}/actiond" in text
        assert "pip install ." not in text and "/venv/" not in text
    # ExecStart finds the command on the service PATH, where `make install` links it.
    assert "ExecStart=/usr/bin/env actiond run -c /etc/actiond/config.toml" in UNIT.read_text()


@pytest.fixture
def install_root() -> Iterator[Path]:
    """A temporary root that the service user can traverse (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="actiond-install-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def copy_checkout(dest: Path) -> None:
    """The files a clone of this checkout has (tracked, plus new ones not ignored)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def make(src: Path, target: str, dest: Path) -> None:
    done = subprocess.run(
        ["make", "-C", str(src), target, f"DESTDIR={dest}", "PREFIX=/opt/actiond"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"make {target}:\n{done.stdout}\n{done.stderr}"


def service_dir(path: Path) -> Path:
    """A directory as systemd makes StateDirectory= and RuntimeDirectory=: the user's, 0700."""
    path.mkdir()
    shutil.chown(path, SERVICE_USER, SERVICE_GROUP)
    path.chmod(0o700)
    return path


def service_config(installed: Path, dest: Path, metrics_port: int) -> Path:
    """The installed config.toml with a free metrics port and the console on a port the
    OS picks (tests run in parallel), readable by the service user as /etc/actiond is."""
    text = installed.read_text()
    for old, new in (
        ('listen = "127.0.0.1:9108"', f'listen = "127.0.0.1:{metrics_port}"'),
        ('listen = "127.0.0.1:8090"', 'listen = "127.0.0.1:0"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    dest.mkdir(mode=0o755)
    (dest / "config.toml").write_text(text)
    (dest / "config.toml").chmod(0o644)
    return dest / "config.toml"


def as_service(argv: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        env=env,
        cwd="/",
        user=SERVICE_USER,
        group=SERVICE_GROUP,
        extra_groups=[],
        umask=0o077,
        **kwargs,
    )  # type: ignore[call-overload]


def frames_shown(port: int) -> float:
    try:
        samples = parse_samples(scrape_text(f"http://127.0.0.1:{port}/metrics"))
    except OSError:
        return 0.0
    return sum(
        v
        for labels, v in samples.get("actiond_stage_frames_out_total", {}).items()
        if dict(labels).get("stage") == "overlay"
    )


def check_installed(src: Path, dest: Path) -> Path:
    """What `make install` put where; the venv's actiond."""
    venv = dest / "opt" / "actiond"
    assert os.readlink(dest / "usr" / "local" / "bin" / "actiond") == "/opt/actiond/bin/actiond"
    assert (dest / "etc/actiond/config.toml").read_bytes() == (REPO / "config.toml").read_bytes()
    assert (dest / "etc/systemd/system/actiond.service").read_bytes() == UNIT.read_bytes()
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "actiond" in installed
    assert not installed & {"onnx", "arrayqueues", "torch", "pytest", "pyyaml"}, installed
    assert not (src / "build").exists() and not list(src.glob("*.egg-info"))
    return venv / "bin" / "actiond"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to run the daemon as the service user (CI runs as root)"
)
def test_make_install_runs_as_the_unit_runs_it(install_root: Path) -> None:
    src, dest = install_root / "src", install_root / "dest"
    copy_checkout(src)
    make(src, "install", dest)
    actiond = check_installed(src, dest)
    state, runtime = service_dir(install_root / "state"), service_dir(install_root / "run")
    port = free_port()
    config = service_config(dest / "etc/actiond/config.toml", install_root / "conf", port)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "STATE_DIRECTORY": str(state),
        "RUNTIME_DIRECTORY": str(runtime),
        "CONFIGURATION_DIRECTORY": str(config.parent),
    }

    for args, expect in (
        (["version"], f"actiond {__version__}"),
        (["check-config", "-c", str(config)], ": OK ("),
    ):
        proc = as_service(
            [str(actiond), *args], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        assert proc.returncode == ExitCode.OK and expect in out, err
        assert err == "", err

    log_path = install_root / "run.log"
    with log_path.open("w") as log:
        daemon = as_service(
            [str(actiond), "run", "-c", str(config)], env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: daemon.poll() is not None or frames_shown(port) >= FRAMES_SHOWN,
            START_TIMEOUT_S,
            "frames through the installed daemon",
        )
        assert daemon.poll() is None, log_path.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(STOP_TIMEOUT_S) == ExitCode.OK, log_path.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log_path.read_text()
    # No home under the unit: onnxruntime's telemetry (off by default) would warn here.
    assert "Traceback" not in text and "telemetry" not in text, text

    make(src, "uninstall", dest)
    assert not (dest / "opt" / "actiond").exists()
    assert not os.path.lexists(dest / "usr" / "local" / "bin" / "actiond")
    assert not (dest / "etc/systemd/system/actiond.service").exists()
    assert (dest / "etc/actiond/config.toml").exists()  # the operator's edits stay
