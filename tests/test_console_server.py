"""The web console's real HTTP server (aiohttp on its own thread, a real history file, a
real live slot written like the overlay writes it), spoken to over real HTTP: the API and
its filters, login (token, cookie, bearer), the failed-login limit, clips only through
their event (no path traversal, Range for the <video>), the live MJPEG stream, and no
secret in any response."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.console import (
    Auth,
    CameraBoard,
    Console,
    ConsoleServer,
    History,
    LiveImages,
    proxy_networks,
)
from daemon.ipc.liveslot import LiveSlotWriter

TOKEN = "console-token-0123456789abcdef"
JPEG = b"\xff\xd8 snapshot \xff\xd9"
CLIP_BYTES = bytes(range(256)) * 40

pytestmark = pytest.mark.timeout(60)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, object]:
        return dict(json.loads(self.body))


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.replies: list[Reply] = []  # every response, for the secret check

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
        self.replies.append(reply)
        return reply

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def login(self, token: str) -> Reply:
        return self.login_with(token, {})

    def login_with(self, token: str, headers: dict[str, str]) -> Reply:
        form = urllib.parse.urlencode({"token": token})
        kind = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", "/login", form, {**kind, **headers})


@dataclass
class Running:
    server: ConsoleServer
    client: Client
    state_dir: Path
    slot: Path


def _events(now: float) -> list[tuple[dict[str, object], bytes | None]]:
    def rec(
        event_id: str, camera: str, action: str, age_s: float, clip: object
    ) -> dict[str, object]:
        return {
            "id": event_id,
            "camera": camera,
            "action": action,
            "phase": "start",
            "started_at_epoch": now - age_s,
            "has_snapshot": True,
            "score_max": 0.8,
            "track_id": 4,
            "zone": "door",
            "clip": clip,
            "device_id": "box-1",
        }

    return [
        (rec("ok", "front", "in_zone", 30, "front/ok.webm"), JPEG),
        (rec("dots", "front", "in_zone", 40, "../../secret.txt"), None),
        (rec("abs", "back", "waving", 50, "/etc/passwd"), None),
        (rec("link", "back", "waving", 60, "back/link.webm"), None),
        (rec("encoded", "back", "waving", 70, "back%2F..%2F..%2Fsecret.txt"), None),
        (rec("part", "back", "waving", 80, "back/part.webm"), None),
    ]


def _start(tmp_path: Path, token: str | None, proxies: tuple[str, ...] = ()) -> Running:
    state = tmp_path / "state"
    clips = state / "clips"
    (clips / "front").mkdir(parents=True)
    (clips / "back").mkdir()
    (clips / "front" / "ok.webm").write_bytes(CLIP_BYTES)
    (clips / "back" / "part.webm.part").write_bytes(b"half")
    (state / "secret.txt").write_text("SECRET-FILE-CONTENT")
    (clips / "back" / "link.webm").symlink_to(state / "secret.txt")
    history = History(state / "console-history.sqlite3")
    history.store_many(_events(time.time()))
    slot = tmp_path / "front.live"
    console = Console(
        history=history,
        board=CameraBoard(["front", "back"]),
        auth=Auth(token),
        live=LiveImages({"front": slot, "back": tmp_path / "back.live"}),
        clips_root=clips,
        device_id="box-1",
        listen_host="127.0.0.1",
        proxies=proxy_networks(proxies),
    )
    server = ConsoleServer(console, "127.0.0.1:0")
    server.start()
    assert server.bound.wait(10)
    assert server.port is not None
    return Running(server, Client(server.port), state, slot)


@pytest.fixture
def open_console(tmp_path: Path) -> Iterator[Running]:
    running = _start(tmp_path, None)
    yield running
    running.server.close(2.0)
    running.server.console.history.close()


@pytest.fixture
def locked_console(tmp_path: Path) -> Iterator[Running]:
    running = _start(tmp_path, TOKEN)
    yield running
    running.server.close(2.0)
    running.server.console.history.close()


def test_the_api_lists_filters_and_links_events(open_console: Running) -> None:
    client = open_console.client
    events = client.get("/api/events").json()["events"]
    assert isinstance(events, list)
    assert [e["id"] for e in events] == ["ok", "dots", "abs", "link", "encoded", "part"]
    ok = events[0]
    assert ok["snapshot_url"] == "/api/events/ok/snapshot.jpg"
    assert ok["clip_url"] == "/api/events/ok/clip" and ok["open"] is True
    assert all(e["clip_url"] is None for e in events[1:])  # refused or not there yet
    assert [e["id"] for e in client.get("/api/events?camera=back&limit=2").json()["events"]] == [
        "abs",
        "link",
    ]
    assert [e["id"] for e in client.get("/api/events?action=in_zone").json()["events"]] == [
        "ok",
        "dots",
    ]
    since = urllib.parse.quote(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 45)))
    assert [e["id"] for e in client.get(f"/api/events?since={since}").json()["events"]] == [
        "ok",
        "dots",
    ]
    bad = client.get("/api/events?since=yesterday")
    assert bad.status == 400 and b"since must be epoch seconds or an ISO 8601 time" in bad.body
    assert client.get("/api/events/ok").json()["track_id"] == 4
    assert client.get("/api/events/nope").status == 404
    snap = client.get("/api/events/ok/snapshot.jpg")
    assert (snap.status, snap.headers["Content-Type"], snap.body) == (200, "image/jpeg", JPEG)
    assert client.get("/api/events/dots/snapshot.jpg").status == 404


def test_clips_only_through_their_event_with_range(open_console: Running) -> None:
    client = open_console.client
    whole = client.get("/api/events/ok/clip")
    assert (whole.status, whole.headers["Content-Type"], whole.body) == (
        200,
        "video/webm",
        CLIP_BYTES,
    )
    part = client.get("/api/events/ok/clip", Range="bytes=100-199")
    assert part.status == 206 and part.body == CLIP_BYTES[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(CLIP_BYTES)}"
    for event_id in ("dots", "abs", "link", "encoded", "part"):
        reply = client.get(f"/api/events/{event_id}/clip")
        assert reply.status == 404 and b"SECRET" not in reply.body and b"root:" not in reply.body
    # No other route reaches a file: static names are a fixed list.
    for path in (
        "/static/..%2F..%2Fhistory.py",
        "/static/../app.py",
        "/api/events/..%2F..%2Fsecret.txt/clip",
        "/api/events/%2E%2E/clip",
        "/static/%2e%2e%2f%2e%2e%2fstate%2fsecret.txt",
    ):
        reply = client.get(path)
        assert reply.status == 404 and b"SECRET" not in reply.body, (path, reply.status)


def test_cameras_live_mjpeg_and_connecting(open_console: Running) -> None:
    client = open_console.client
    cameras = client.get("/api/cameras").json()["cameras"]
    assert isinstance(cameras, list)
    assert [(c["name"], c["state"], c["has_image"]) for c in cameras] == [
        ("front", "connecting", False),
        ("back", "connecting", False),
    ]
    assert client.get("/api/cameras/front/snapshot.jpg").status == 404  # nothing yet
    assert client.get("/api/cameras/nope/live.mjpg").status == 404
    writer = LiveSlotWriter(open_console.slot, 65536)
    try:
        client.get("/api/cameras")  # a reader asks: the overlay would publish now
        assert writer.wanted()
        frame = b"\xff\xd8" + b"live" * 100 + b"\xff\xd9"
        writer.publish(frame, 7)
        assert client.get("/api/cameras/front/snapshot.jpg").body == frame
        cameras = client.get("/api/cameras").json()["cameras"]
        assert isinstance(cameras, list)
        assert {c["name"]: c["has_image"] for c in cameras} == {"front": True, "back": False}
        conn = http.client.HTTPConnection("127.0.0.1", open_console.client.port, timeout=10)
        conn.request("GET", "/api/cameras/front/live.mjpg")
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert response.readline().startswith(b"--")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += response.readline()
        assert b"Content-Type: image/jpeg" in head and response.read(len(frame)) == frame
        conn.close()
    finally:
        writer.close()


def test_an_open_console_needs_no_login(open_console: Running) -> None:
    client = open_console.client
    page = client.get("/")
    assert page.status == 200 and b"<title>actiond" in page.body
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/events").status == 200
    assert client.get("/static/console.css").status == 200
    assert client.get("/api/status").json()["auth_required"] is False


def test_a_limit_out_of_range_is_refused_naming_the_range(open_console: Running) -> None:
    client = open_console.client
    for limit in ("0", "-5", "501"):
        reply = client.get(f"/api/events?limit={limit}")
        assert reply.status == 400, limit
        assert reply.json()["error"] == f"limit must be 1 to 500 (events per answer), not {limit}"
    assert client.get("/api/events?limit=abc").status == 400
    assert len(client.get("/api/events?limit=1").json()["events"]) == 1
    assert len(client.get("/api/events?limit=500").json()["events"]) == 6


def test_login_cookie_bearer_and_rate_limit(locked_console: Running) -> None:
    client = locked_console.client
    assert client.get("/api/events").status == 401
    assert client.get("/api/cameras/front/live.mjpg").status == 401
    assert client.get("/api/events/ok/clip").status == 401
    page = client.get("/")
    assert page.status == 303 and page.headers["Location"] == "/login"
    assert client.get("/login").status == 200
    assert client.get("/static/console.css").status == 200
    assert client.get("/api/events", Authorization=f"Bearer {TOKEN}").status == 200
    good = client.login(TOKEN)
    assert good.status == 303 and good.headers["Location"] == "/"
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    assert client.get("/api/events", Cookie=session).status == 200
    assert client.get("/api/events", Cookie="actiond_session=forged").status == 401
    # Five wrong tokens (form or bearer) from one address, then 429 with Retry-After,
    # even for the right token, until the window passes.
    for i in range(5):
        wrong = (
            client.login("wrong") if i % 2 else client.get("/api/events", Authorization="Bearer x")
        )
        assert wrong.status == 401
    refused = client.login(TOKEN)
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/api/events", Authorization=f"Bearer {TOKEN}").status == 429
    assert client.get("/api/events", Cookie=session).status == 200  # a session stays valid
    status = client.get("/api/status", Cookie=session).json()
    assert status["logins_failed_total"] == 5 and int(str(status["logins_refused_total"])) >= 2


def test_no_response_contains_a_secret(locked_console: Running) -> None:
    client = locked_console.client
    session = client.login(TOKEN).headers["Set-Cookie"].split(";")[0]
    for path in (
        "/",
        "/events",
        "/login",
        "/api/status",
        "/api/cameras",
        "/api/events",
        "/api/events/ok",
        "/static/console.js",
        "/static/cameras.js",
        "/static/events.js",
        "/static/console.css",
    ):
        assert client.get(path, Cookie=session).status == 200, path
    client.login("wrong-guess")
    for reply in client.replies:
        text = reply.body + str(reply.headers).encode()
        assert TOKEN.encode() not in text
        assert b"SECRET-FILE-CONTENT" not in text


def test_close_is_bounded_with_a_viewer_streaming(open_console: Running) -> None:
    writer = LiveSlotWriter(open_console.slot, 65536)
    try:
        writer.publish(b"\xff\xd8xx\xff\xd9", 1)
        conn = http.client.HTTPConnection("127.0.0.1", open_console.client.port, timeout=10)
        conn.request("GET", "/api/cameras/front/live.mjpg")
        assert conn.getresponse().status == 200
        started = time.monotonic()
        open_console.server.close(2.0)
        assert time.monotonic() - started < 3.0
        conn.close()
    finally:
        writer.close()


def test_a_taken_port_is_retried_until_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    history = History(tmp_path / "h.sqlite3")
    console = Console(history, CameraBoard([]), Auth(None), LiveImages({}), tmp_path, "box-1")
    server = ConsoleServer(console, f"127.0.0.1:{port}")
    with caplog.at_level(logging.ERROR, logger="daemon.console.server"):
        server.start()
        try:
            deadline = time.monotonic() + 10
            while "cannot listen on" not in caplog.text:
                assert time.monotonic() < deadline, "no error line for the taken port"
                time.sleep(0.05)
            assert not server.bound.is_set()
            holder.close()
            assert server.bound.wait(15), "the console did not take the port once free"
            assert Client(port).get("/api/status").status == 200
        finally:
            holder.close()
            server.close(2.0)
            history.close()
    assert caplog.text.count("cannot listen on") == 1  # one line, not one per retry
