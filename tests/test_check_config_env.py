"""check-config on secrets named by environment variable (console.auth_token_env,
webhook.secret_env, mqtt.password_env): the operator's shell often lacks the service's
environment, so an unset or empty one is one warning line naming it, and exit 0; `run`
refuses it (tests/test_console_daemon.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.exitcodes import ExitCode

REPO = Path(__file__).resolve().parent.parent
TOKEN_ENV = "ACTIOND_TEST_CONSOLE_TOKEN"
SECRET_ENV = "ACTIOND_TEST_WEBHOOK_SECRET"
CONFIG = f"""[[cameras]]
name = "a"
source = "test:bars"
[metrics]
listen = ""
[console]
enabled = true
listen = "0.0.0.0:8090"
auth_token_env = "{TOKEN_ENV}"
[webhook]
enabled = true
urls = ["http://127.0.0.1:9/hook"]
secret_env = "{SECRET_ENV}"
"""


def check_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    clean = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, SECRET_ENV)}
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **env},
    )


@pytest.mark.timeout(120)
def test_unset_and_empty_variables_are_one_warning_each_and_exit_0(tmp_path: Path) -> None:
    done = check_config(tmp_path, {SECRET_ENV: ""})
    assert done.returncode == ExitCode.OK, done.stderr
    assert "OK (1 camera(s)" in done.stdout
    lines = done.stderr.splitlines()
    assert lines == [
        f"actiond: warning: console.auth_token_env names {TOKEN_ENV}, which is not set in "
        "this shell; the service must set it (systemd: Environment= or EnvironmentFile= in "
        "the unit), or `actiond run` stops with exit 2",
        f"actiond: warning: webhook.secret_env names {SECRET_ENV}, which is empty in this "
        "shell; the service must set it (systemd: Environment= or EnvironmentFile= in the "
        "unit), or `actiond run` stops with exit 2",
    ], done.stderr


@pytest.mark.timeout(120)
def test_set_variables_warn_nothing(tmp_path: Path) -> None:
    done = check_config(tmp_path, {TOKEN_ENV: "x" * 32, SECRET_ENV: "s3cret"})
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stderr == ""
