"""systemd/actiond.service: verifies cleanly, is hardened, and says what the code assumes."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.exitcodes import ExitCode
from daemon.systemd import (
    DEFAULT_TIMEOUT_STOP_S,
    parse_timespan_s,
    unit_settings,
    unit_timeout_stop_s,
)

pytestmark = pytest.mark.timeout(60)

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "actiond.service"
MAX_EXPOSURE = 2.0
ANALYZE_TIMEOUT_S = 45
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (apt-get install systemd); CI has it",
)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        check=False,
    )


def verify_problems(unit: Path) -> tuple[int, list[str]]:
    """Exit status of `systemd-analyze verify` and its complaints about `unit`.

    Unknown keys and bad values only print warnings (exit status 0), so the output
    counts too; lines about other units (the host's) are not ours to judge.
    """
    result = analyze("verify", str(unit))
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if unit.name in line]


def copy_unit(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    path = tmp_path / "actiond.service"
    path.write_text(text, encoding="utf-8")
    return path


@needs_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    # ExecStart is /usr/bin/env (always present), so verify's check that the command
    # exists passes on any Debian without installing actiond.
    returncode, problems = verify_problems(copy_unit(tmp_path))
    assert (returncode, problems) == (0, [])


@needs_analyze
@pytest.mark.parametrize(
    "edit",
    [
        ("WatchdogSec=30", "WatchdogSecs=30"),
        ("ExecStart=/usr/bin/env", "ExecStart=/nonexistent/env"),
        ("KillMode=mixed", "KillMode=gently"),
    ],
)
def test_verify_catches_mistakes(tmp_path: Path, edit: tuple[str, str]) -> None:
    # The check above would be worthless if verify's complaints slipped past the filter.
    returncode, problems = verify_problems(copy_unit(tmp_path, edit))
    assert returncode != 0 or problems


@needs_analyze
def test_security_exposure_is_low(tmp_path: Path) -> None:
    result = analyze("security", "--offline=yes", str(copy_unit(tmp_path)))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_matches_the_code() -> None:
    service = dict(unit_settings(UNIT, "Service"))
    unit = dict(unit_settings(UNIT, "Unit"))
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    # SIGTERM to the supervisor only, so it can stop its workers in order.
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert str(int(ExitCode.CONFIG)) in service["RestartPreventExitStatus"].split()
    assert parse_timespan_s(service["WatchdogSec"]) == 30.0
    assert "StartLimitIntervalSec" in unit and "StartLimitBurst" in unit
    assert service["DeviceAllow"] == "char-video4linux rw"
    assert unit_timeout_stop_s(UNIT) == 30.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("1min 30s", 90.0),
        ("1min30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("infinity", math.inf),
    ],
)
def test_parse_timespan(text: str, seconds: float) -> None:
    assert parse_timespan_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "-1s"])
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan_s(text)


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ("[Service]\nTimeoutStopSec=45\n", 45.0),
        ("[Service]\nTimeoutSec=20\n", 20.0),
        ("[Service]\nTimeoutSec=20\nTimeoutStopSec=1min\n", 60.0),
        ("[Service]\nTimeoutStopSec=10\nTimeoutStopSec=\n", DEFAULT_TIMEOUT_STOP_S),
        ("[Service]\nType=simple\n", DEFAULT_TIMEOUT_STOP_S),
        (
            "[Unit]\nTimeoutStopSec=5\n[Service]\n# TimeoutStopSec=7\nTimeoutStopSec=1min \\\n 5s\n",
            65.0,
        ),
    ],
)
def test_unit_timeout_stop(tmp_path: Path, body: str, seconds: float) -> None:
    path = tmp_path / "x.service"
    path.write_text(body, encoding="utf-8")
    assert unit_timeout_stop_s(path) == seconds
