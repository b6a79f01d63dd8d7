"""sd_notify against a fake systemd: an AF_UNIX datagram socket we bind ourselves."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.systemd import SystemdNotifier

pytestmark = pytest.mark.timeout(30)

RECV_TIMEOUT_S = 5.0
MAX_DATAGRAM_BYTES = 4096


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd, announced through NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT_S)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    else:
        name = f"actiond-test-{os.getpid()}-{secrets.token_hex(4)}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(MAX_DATAGRAM_BYTES).decode("utf-8")


def test_messages_reach_systemd(fake_systemd: socket.socket) -> None:
    with SystemdNotifier() as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert receive(fake_systemd) == "READY=1"
        assert notifier.status("2 cameras running\nall good")
        assert receive(fake_systemd) == "STATUS=2 cameras running all good"
        assert notifier.watchdog()
        assert receive(fake_systemd) == "WATCHDOG=1"
        assert notifier.reloading()
        assert receive(fake_systemd) == "RELOADING=1"
        assert notifier.ready(status="reloaded")
        assert receive(fake_systemd) == "READY=1\nSTATUS=reloaded"
        assert notifier.extend_timeout(2.5)
        assert receive(fake_systemd) == "EXTEND_TIMEOUT_USEC=2500000"
        assert notifier.stopping()
        assert receive(fake_systemd) == "STOPPING=1"
    assert not notifier.enabled
    assert not notifier.stopping()


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval_s() is None


def test_unsupported_address_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_send_failure_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    with SystemdNotifier() as notifier:
        assert notifier.enabled
        assert not notifier.ready()


def _notify_from_fork(notifier: SystemdNotifier, address: str) -> None:
    # Runs in a forked child: its notification must be dropped; the marker that follows
    # on a socket of its own shows that the child did run.
    notifier.ready()
    notifier.watchdog()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as marker:
        marker.sendto(b"MARKER=child" if not notifier.enabled else b"MARKER=enabled", address)


def test_forked_child_does_not_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(RECV_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        notifier = SystemdNotifier()
        child = multiprocessing.get_context("fork").Process(
            target=_notify_from_fork, args=(notifier, address)
        )
        child.start()
        child.join(RECV_TIMEOUT_S)
        assert child.exitcode == 0
        # Datagrams from one process arrive in order: READY would come before the marker.
        assert receive(sock) == "MARKER=child"
        assert notifier.ready()
        assert receive(sock) == "READY=1"
        notifier.close()


def _report_enabled(queue: multiprocessing.queues.Queue[tuple[bool, str | None]]) -> None:
    notifier = SystemdNotifier()
    queue.put((notifier.enabled, os.environ.get("NOTIFY_SOCKET")))


def test_unset_environment_keeps_spawned_children_silent(
    fake_systemd: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    with SystemdNotifier(unset_environment=True) as notifier:
        assert "NOTIFY_SOCKET" not in os.environ
        assert "WATCHDOG_USEC" not in os.environ
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_report_enabled, args=(queue,))
        child.start()
        assert queue.get(timeout=20) == (False, None)
        child.join(RECV_TIMEOUT_S)
        assert child.exitcode == 0
        # The parent still notifies, and still knows its watchdog interval.
        assert notifier.ready()
        assert receive(fake_systemd) == "READY=1"
        assert notifier.watchdog_interval_s() == 10.0


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", "self", 30.0),
        ("30000000", None, 30.0),
        ("500000", "self", 0.5),
        ("30000000", "other", None),
        (None, "self", None),
        ("0", "self", None),
        ("soon", "self", None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    notifier = SystemdNotifier()
    assert notifier.watchdog_interval_s() == expected
    period = notifier.watchdog_ping_period_s()
    assert period == (None if expected is None else expected / 2)
