"""An event sink or its outbox that cannot be opened at start-up stops the real daemon with
one line naming the problem and the fix, and a named exit code: CONFIG for a sink's
setting (fix the file), BOOT for the state directory or the outbox file (systemd restarts
on BOOT). No traceback, and the rings made before the failure are removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_proc import Daemon

from daemon.exitcodes import ExitCode
from daemon.outputs.outbox import OUTBOX_FILENAME

START_S = 60.0  # the supervisor loads the model before it opens the sinks
CAMERAS = [{"name": "cam", "source": "test:bars", "width": 160, "height": 120}]
UNSET_ENV = "ACTIOND_TEST_PASSWORD_THAT_IS_NOT_SET"


def corrupt_outbox(tmp: Path) -> dict[str, dict[str, object]]:
    state = tmp / "state"
    state.mkdir()
    (state / OUTBOX_FILENAME).write_bytes(b"this is not an SQLite database\n" * 200)
    return {"daemon": {"state_dir": str(state)}, "jsonl": {"enabled": True}}


def unusable_state_dir(tmp: Path) -> dict[str, dict[str, object]]:
    # A regular file where the state directory's parent should be: no directory can be
    # made there, even by root (a read-only mode would not stop a test run as root).
    (tmp / "not-a-directory").write_text("")
    state = tmp / "not-a-directory" / "state"
    return {"daemon": {"state_dir": str(state)}, "jsonl": {"enabled": True}}


def unset_password_env(tmp: Path) -> dict[str, dict[str, object]]:
    return {
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "username": "actiond",
            "password_env": UNSET_ENV,
        }
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sections", "code", "says"),
    [
        (corrupt_outbox, ExitCode.BOOT, (OUTBOX_FILENAME, "[jsonl]", "move it aside")),
        (unusable_state_dir, ExitCode.BOOT, ("not-a-directory", "state directory is writable")),
        (unset_password_env, ExitCode.CONFIG, ("[mqtt]", UNSET_ENV, "fix it in the config")),
    ],
    ids=["corrupt-outbox", "state-dir-not-a-directory", "mqtt-password-env-unset"],
)
def test_an_unusable_sink_at_start_up_exits_with_one_line(
    tmp_path: Path, daemons: list[Daemon], sections, code: ExitCode, says: tuple[str, ...]
) -> None:
    d = Daemon(tmp_path, CAMERAS, sections(tmp_path))
    daemons.append(d)
    d.start()
    assert d.wait(START_S) == code, d.log()
    log = d.log()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if "event sink" in line]
    assert len(errors) == 1, log
    assert str(d.config) in errors[0], errors[0]
    for words in says:
        assert words in errors[0], f"the message does not say {words!r}: {errors[0]}"
    assert d.leftovers() == [], "the rings made before the failure are removed"
