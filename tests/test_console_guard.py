"""The web console's guard against the real server (aiohttp on its thread, a real
history file): an open console answers only local requests (no proxy, no foreign Host:
DNS rebinding), the failed-login limiter's memory stays bounded and is keyed by client
(IPv6 /64, X-Forwarded-For from a trusted proxy), a global cap, logout and session
cookies, security headers on raised errors, live streams that end when their viewer
leaves, and slow work kept off the server's loop."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_console_server import JPEG, TOKEN, Running, _start

import daemon.console.app as console_app
from daemon.console import Auth, FailureLimiter, LiveImages
from daemon.console.auth import SESSION_IDLE_S, client_key

pytestmark = pytest.mark.timeout(60)
DEADLINE_S = 10.0


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _stop(running: Running) -> None:
    running.server.close(2.0)
    running.server.console.history.close()


@pytest.fixture
def open_console(tmp_path: Path) -> Iterator[Running]:
    running = _start(tmp_path, None)
    yield running
    _stop(running)


@pytest.fixture
def proxied_console(tmp_path: Path) -> Iterator[Running]:
    """A console with a token behind a trusted proxy on 127.0.0.1."""
    running = _start(tmp_path, TOKEN, ("127.0.0.1",))
    yield running
    _stop(running)


def test_an_open_console_answers_only_local_requests(open_console: Running) -> None:
    client = open_console.client
    port = client.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert client.get("/api/events", Host=host).status == 200, host
    for headers in (
        {"Host": f"evil.example:{port}"},  # DNS rebinding
        {"Host": "127.0.0.1.evil.example"},
        {"X-Forwarded-For": "203.0.113.9"},  # a reverse proxy on the box
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ):
        reply = client.get("/api/events", **headers)
        assert reply.status == 403, headers
        assert b"console.auth_token_file" in reply.body
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert client.get("/", **headers).status == 403


def test_a_console_with_a_token_takes_any_host(proxied_console: Running) -> None:
    client = proxied_console.client
    auth = f"Bearer {TOKEN}"
    assert client.get("/api/events", Host="box.example", Authorization=auth).status == 200
    assert client.get("/api/events", Host="box.example").status == 401


def test_the_limiter_forgets_clients_without_failures() -> None:
    limiter = FailureLimiter(max_failures=5, window_s=60.0, max_global=10**6)
    for i in range(5000):
        assert limiter.retry_after_s(f"10.0.{i // 250}.{i % 250}", now=0.0) == 0.0
    assert limiter.tracked == 0, "asking must not remember anyone"
    for i in range(5000):
        limiter.failed(f"10.1.{i // 250}.{i % 250}", now=1.0)
    assert limiter.tracked == 5000
    for i in range(5000):
        limiter.retry_after_s(f"10.1.{i // 250}.{i % 250}", now=100.0)
    assert limiter.tracked == 0, "failures out of the window are forgotten"


def test_the_limiter_caps_the_clients_it_remembers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("daemon.console.auth.MAX_TRACKED_CLIENTS", 100)
    limiter = FailureLimiter(max_failures=5, window_s=60.0, max_global=10**6)
    for i in range(500):
        limiter.retry_after_s(f"client-{i}", now=1.0)
        limiter.failed(f"client-{i}", now=1.0)
    assert limiter.tracked == 100


def test_the_limiter_has_a_global_cap() -> None:
    limiter = FailureLimiter(max_failures=5, window_s=60.0, max_global=10)
    for i in range(10):
        assert limiter.retry_after_s(f"a{i}", now=1.0) == 0.0
        limiter.failed(f"a{i}", now=1.0)
    assert limiter.retry_after_s("never-failed", now=2.0) == pytest.approx(59.0)
    assert limiter.retry_after_s("never-failed", now=61.5) == 0.0


def test_ipv6_clients_count_by_their_64() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:1:2:3")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"


def test_behind_a_proxy_one_bad_client_locks_out_only_itself(proxied_console: Running) -> None:
    client = proxied_console.client
    limiter = proxied_console.server.console.auth.limiter
    for _ in range(5):
        reply = client.get(
            "/api/events", Authorization="Bearer x", **{"X-Forwarded-For": "1.1.1.1"}
        )
        assert reply.status == 401
    bad = {"X-Forwarded-For": "1.1.1.1"}
    assert client.get("/api/events", Authorization=f"Bearer {TOKEN}", **bad).status == 429
    for i in range(300):  # the right token from many clients: nothing remembered
        good = {"X-Forwarded-For": f"10.9.{i // 200}.{i % 200}, 127.0.0.1"}
        assert client.get("/api/events", Authorization=f"Bearer {TOKEN}", **good).status == 200
    assert limiter.tracked == 1
    # IPv6 from one /64: five addresses, then the whole /64 is refused.
    for i in range(5):
        six = {"X-Forwarded-For": f"2001:db8:5:5::{i + 1}"}
        assert client.get("/api/events", Authorization="Bearer x", **six).status == 401
    six = {"X-Forwarded-For": "2001:db8:5:5:abcd::99"}
    assert client.get("/api/events", Authorization=f"Bearer {TOKEN}", **six).status == 429


def test_logout_and_the_session_cookie(proxied_console: Running) -> None:
    client = proxied_console.client
    good = client.login(TOKEN)
    cookie = good.headers["Set-Cookie"]
    assert "Max-Age=43200" in cookie and "Secure" not in cookie
    session = cookie.split(";")[0]
    assert client.get("/api/events", Cookie=session).status == 200
    out = client.request("POST", "/logout", headers={"Cookie": session})
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert 'actiond_session=""' in out.headers["Set-Cookie"]
    assert client.get("/api/events", Cookie=session).status == 401
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    cookie = client.login_with(TOKEN, https).headers["Set-Cookie"]
    assert "Secure" in cookie
    for page in ("/", "/events"):
        assert b'action="/logout"' in client.get(page, Cookie=cookie.split(";")[0]).body


def test_https_is_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    running = _start(tmp_path, TOKEN)  # no trusted proxy
    try:
        reply = running.client.login_with(TOKEN, {"X-Forwarded-Proto": "https"})
        assert reply.status == 303 and "Secure" not in reply.headers["Set-Cookie"]
    finally:
        _stop(running)


def test_sessions_end_when_idle() -> None:
    auth = Auth("t" * 16)
    session, _ = auth.login("c", "t" * 16)
    assert session is not None
    start = time.monotonic()
    assert auth.session_valid(session, now=start + SESSION_IDLE_S - 5)
    assert auth.session_valid(session, now=start + 2 * SESSION_IDLE_S - 10), "use renews it"
    assert not auth.session_valid(session, now=start + 3 * SESSION_IDLE_S)
    assert not auth.session_valid(session, now=start + 1)  # ended for good


def test_raised_errors_carry_the_security_headers(proxied_console: Running) -> None:
    client = proxied_console.client
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path, status in (
        ("/api/cameras/<script>/snapshot.jpg", 404),
        ("/api/events/nope", 404),
        ("/no/such/route", 404),
        ("/api/events?since=yesterday", 400),
    ):
        reply = client.get(path, **bearer)
        assert reply.status == status, path
        assert reply.headers["X-Content-Type-Options"] == "nosniff", path
        csp = reply.headers["Content-Security-Policy"]
        assert "base-uri 'none'" in csp and "object-src 'none'" in csp, path
    redirect = client.get("/")
    assert redirect.status == 303 and redirect.headers["X-Frame-Options"] == "DENY"


def test_refusals_carry_the_same_security_headers_as_answers(proxied_console: Running) -> None:
    """401 (API, wrong token on the form) and 429 carry every header a 200 carries."""
    client = proxied_console.client
    names = (
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "X-Frame-Options",
    )
    ok = client.get("/api/events", Authorization=f"Bearer {TOKEN}")
    assert ok.status == 200
    expected = {name: ok.headers[name] for name in names}
    assert expected["X-Content-Type-Options"] == "nosniff" and "default-src" in str(expected)
    replies = [client.get("/api/events"), client.get("/api/events", Authorization="Bearer x")]
    replies += [client.login("wrong") for _ in range(4)]
    replies.append(client.login(TOKEN))  # the sixth try: refused
    assert [r.status for r in replies] == [401] * 6 + [429]
    for reply in replies:
        assert {name: reply.headers[name] for name in expected} == expected, reply.status


def _open_stream(port: int, camera: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"GET /api/cameras/{camera}/live.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def test_live_streams_end_when_their_viewer_leaves(open_console: Running) -> None:
    console = open_console.server.console
    sockets = [_open_stream(open_console.client.port, "back") for _ in range(5)]  # no frames
    _wait(lambda: console.streams == 5, "five viewers counted")
    for sock in sockets:
        sock.close()
    _wait(lambda: console.streams == 0, "the viewers who left to be let go")


def test_the_events_list_is_built_off_the_loop(
    open_console: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = console_app.clip_path

    def spy(root: Path, clip: object) -> Path | None:
        threads.append(threading.current_thread().name)
        return real(root, clip)

    monkeypatch.setattr(console_app, "clip_path", spy)
    client = open_console.client
    assert client.get("/api/events").status == 200
    assert client.get("/api/events/ok").status == 200
    assert client.get("/api/events/ok/clip").status == 200
    assert threads and "console-http" not in threads
    known = client.get("/api/actions").json()
    assert known == {"actions": ["in_zone", "waving"], "cameras": ["front", "back"]}


class _SlowLive(LiveImages):
    """A live slot whose read stalls (a writer that died mid-write)."""

    def __init__(self) -> None:
        super().__init__({})
        self.entered = threading.Event()

    def latest(self, camera: str) -> tuple[int, bytes] | None:
        self.entered.set()
        time.sleep(1.5)
        return 1, JPEG


def test_a_stalled_live_slot_does_not_stall_the_server(open_console: Running) -> None:
    open_console.server.console.live = _SlowLive()
    port = open_console.client.port
    slow = threading.Thread(
        target=lambda: _get(port, "/api/cameras/front/snapshot.jpg"), daemon=True
    )
    slow.start()
    assert open_console.server.console.live.entered.wait(DEADLINE_S)  # type: ignore[attr-defined]
    started = time.monotonic()
    assert _get(port, "/api/status") == 200
    assert time.monotonic() - started < 1.0, "the loop waited for the live slot"
    slow.join(DEADLINE_S)


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()
