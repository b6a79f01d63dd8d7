"""The web console's pure logic: the failed-login limiter, where a clip may be served
from, the history's merge and retention, camera states, the token, and check-config's
[console] rules (the real command line)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.config.console_rules import is_loopback
from daemon.console import CameraBoard, FailureLimiter, History, Query, Retention, clip_path
from daemon.console.auth import Auth, TokenError, read_token
from daemon.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[1]
JPEG = b"\xff\xd8 a snapshot \xff\xd9"

pytestmark = pytest.mark.timeout(60)


def test_the_limiter_refuses_after_five_failures_until_the_window_passes() -> None:
    limiter = FailureLimiter(max_failures=5, window_s=60.0)
    for i in range(5):
        assert limiter.retry_after_s("10.0.0.1", now=100.0 + i) == 0.0
        limiter.failed("10.0.0.1", now=100.0 + i)
    assert limiter.retry_after_s("10.0.0.1", now=110.0) == pytest.approx(50.0)
    assert limiter.retry_after_s("10.0.0.2", now=110.0) == 0.0  # per address
    assert limiter.retry_after_s("10.0.0.1", now=160.5) == 0.0  # the first one left
    assert (limiter.failed_total, limiter.refused_total) == (5, 1)


def test_auth_sessions_bearer_and_constant_time_token() -> None:
    auth = Auth("s3cret-token")
    assert auth.required
    assert not auth.check("a", "", None).allowed
    assert auth.check("a", "", "s3cret-token").allowed
    assert not auth.check("a", "made-up-session", None).allowed
    session, wait_s = auth.login("a", "s3cret-token")
    assert session and wait_s == 0 and auth.check("a", session, None).allowed
    assert auth.login("b", "wrong") == (None, 0.0)
    assert Auth(None).check("a", "", None).allowed  # an open (loopback) console


def test_clips_resolve_only_inside_the_clips_root(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    (root / "cam").mkdir(parents=True)
    clip = root / "cam" / "e1.webm"
    clip.write_bytes(b"webm")
    (tmp_path / "secret.txt").write_text("no")
    (root / "cam" / "link.webm").symlink_to(tmp_path / "secret.txt")
    (root / "cam" / "e2.webm.part").write_bytes(b"half")
    assert clip_path(root, "cam/e1.webm") == clip.resolve()
    for bad in (
        "../secret.txt",
        "cam/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "/etc/passwd",
        "cam/link.webm",  # a symlink out of the root
        "cam%2F..%2F..%2Fsecret.txt",  # an encoded slash is no slash
        "cam/e2.webm",  # still being written (.part)
        "cam",  # a directory
        "",
        None,
        42,
        "cam\\e1.webm",
        "cam/./e1.webm",
    ):
        assert clip_path(root, bad) is None, bad
    assert clip_path(tmp_path / "absent", "cam/e1.webm") is None


def _record(event_id: str, phase: str, started: float, **extra: object) -> dict[str, object]:
    return {
        "id": event_id,
        "camera": extra.pop("camera", "cam"),
        "action": extra.pop("action", "walking_left"),
        "phase": phase,
        "started_at_epoch": started,
        "ended_at_epoch": None if phase == "start" else started + 2,
        **extra,
    }


def test_history_merges_start_and_end_and_filters_newest_first(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    now = time.time()
    history.store_many(
        [
            (_record("a", "start", now - 30, score_max=0.7, track_id=3), JPEG),
            (_record("b", "start", now - 20, camera="door", action="in_zone"), None),
        ]
    )
    history.store_many([(_record("a", "end", now - 30, score_max=0.9, end_reason="stopped"), None)])
    a = history.event("a")
    assert a is not None
    assert (a["phase"], a["score_max"], a["track_id"], a["end_reason"]) == (
        "end",
        0.9,
        3,
        "stopped",
    )
    assert history.snapshot("a") == JPEG  # the start's snapshot stays
    # A start redelivered after its end (a restart between store and ack) undoes nothing.
    history.store_many([(_record("a", "start", now - 30, score_max=0.7), None)])
    assert (history.event("a") or {})["phase"] == "end"
    assert [e["id"] for e in history.events(Query())] == ["b", "a"]
    assert [e["id"] for e in history.events(Query(camera="cam"))] == ["a"]
    assert [e["id"] for e in history.events(Query(action="in_zone"))] == ["b"]
    assert [e["id"] for e in history.events(Query(since_epoch_s=now - 25))] == ["b"]
    assert [e["id"] for e in history.events(Query(limit=1))] == ["b"]
    history.close()


def test_history_retention_by_age_count_and_size(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    now = time.time()
    history.store_many([(_record(f"e{i}", "start", now - 100 + i), JPEG * 100) for i in range(10)])
    loose = Retention(max_age_s=1e9, max_events=1000, max_bytes=10**9)
    assert history.prune(loose, now) == 0
    assert history.prune(Retention(max_age_s=95.5, max_events=1000, max_bytes=10**9), now) == 5
    assert history.prune(Retention(max_age_s=1e9, max_events=3, max_bytes=10**9), now) == 2
    size = history.summary()["bytes"] // 3
    assert history.prune(Retention(max_age_s=1e9, max_events=1000, max_bytes=size + 1), now) == 2
    assert [e["id"] for e in history.events(Query())] == ["e9"]
    assert history.summary()["pruned_total"] == 9
    history.close()


def test_camera_states() -> None:
    board = CameraBoard(["a", "b", "c", "d"])
    stats = {
        "failed_cameras": ["c"],
        "cameras": {
            "a": {"frames_total": 100, "drops": 2, "restarts": 1, "source_running": True},
            "b": {"frames_total": 0, "source_running": True},
            "d": {"frames_total": 0, "source_running": False},
        },
    }
    board.update(stats, now=10.0)
    board.set_available("a", True)
    stats["cameras"]["a"]["frames_total"] = 150
    board.update(stats, now=15.0)
    by_name = {s["name"]: s for s in board.states()}
    assert by_name["a"] == {"name": "a", "state": "running", "fps": 10.0, "drops": 2, "restarts": 1}
    assert by_name["b"]["state"] == "connecting"
    assert by_name["c"]["state"] == "failed"
    assert by_name["d"]["state"] == "failed"
    board.set_available("a", False)
    assert {s["name"]: s["state"] for s in board.states()}["a"] == "reconnecting"


def test_the_token_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("  from-a-file-0123456789\n")
    assert read_token(str(tmp_path / "token"), "") == "from-a-file-0123456789"
    monkeypatch.setenv("ACTIOND_TEST_CONSOLE_TOKEN", "from-env-0123456789")
    assert read_token("", "ACTIOND_TEST_CONSOLE_TOKEN") == "from-env-0123456789"
    monkeypatch.delenv("ACTIOND_TEST_CONSOLE_TOKEN")
    with pytest.raises(TokenError, match="ACTIOND_TEST_CONSOLE_TOKEN, which is not set"):
        read_token("", "ACTIOND_TEST_CONSOLE_TOKEN")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="the token is empty"):
        read_token(str(tmp_path / "empty"), "")
    assert read_token("", "") is None


def test_a_short_token_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("a\n")
    with pytest.raises(TokenError, match="console.auth_token_file: the token has 1 characters"):
        read_token(str(tmp_path / "token"), "")
    monkeypatch.setenv("ACTIOND_TEST_CONSOLE_TOKEN", "x" * 15)
    with pytest.raises(TokenError, match="at least 16"):
        read_token("", "ACTIOND_TEST_CONSOLE_TOKEN")
    monkeypatch.setenv("ACTIOND_TEST_CONSOLE_TOKEN", "x" * 16)
    assert read_token("", "ACTIOND_TEST_CONSOLE_TOKEN") == "x" * 16


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("", False), ("0.0.0.0", False)]
    + [("192.168.1.5", False), ("camera-box", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _check_config(tmp_path: Path, console: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[cameras]]\nname = "a"\nsource = "test:bars"\n[metrics]\nlisten = "127.0.0.1:9108"\n'
        f"[console]\nenabled = true\n{console}"
    )
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("console", "message"),
    [
        (
            'listen = "0.0.0.0:8090"\n',
            "console.listen: 0.0.0.0:8090 is reachable from other machines, so the console "
            "needs a login token: set console.auth_token_file",
        ),
        ('listen = ":8090"\n', "needs a login token"),
        ('listen = "127.0.0.1:9108"\n', "console.listen: port 9108 is also metrics.listen"),
        (
            'listen = "127.0.0.1:8090"\n[display]\nmjpeg_listen = ":8090"\n',
            "port 8090 is also display.mjpeg_listen (camera a's derived port 8090)",
        ),
        ('listen = "10.1.2.3:8090"\nauth_token_file = "absent"\n', "console.auth_token_file"),
        (
            'listen = "0.0.0.0:8090"\nauth_token_file = "t"\nauth_token_env = "T"\n',
            "set only one of auth_token_file and auth_token_env",
        ),
        ('listen = "0.0.0.0:8090"\nauth_token_file = "short"\n', "console.auth_token_file: "),
        ('listen = "0.0.0.0:8090"\nauth_token_file = "empty"\n', "the token has 0 characters"),
        (
            'trusted_proxies = ["127.0.0.1"]\n',
            "console.trusted_proxies: is set, so the console is behind a proxy",
        ),
        ('trusted_proxies = ["proxy"]\n', "must be IP addresses or networks"),
        ('public_url = "box:8443"\n', "console.public_url: must be an http:// or https:// URL"),
    ],
)
def test_check_config_refuses_an_unsafe_console(tmp_path: Path, console: str, message: str) -> None:
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "empty").write_text("\n")
    done = _check_config(tmp_path, console)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_accepts_a_console_with_a_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("long-random-token\n")
    done = _check_config(tmp_path, 'listen = "0.0.0.0:8090"\nauth_token_file = "token"\n')
    assert done.returncode == 0, done.stderr
    assert _check_config(tmp_path, 'listen = "127.0.0.1:8090"\n').returncode == 0
