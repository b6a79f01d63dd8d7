"""The console's web application (aiohttp): pages, the JSON API, live images, snapshots
and clips, behind the login check. README's "Web console" lists every route.

Files are served only from the package's static folder (a fixed list of names), event
snapshots from the history, and clips through `/api/events/<id>/clip`, which looks the
event up and resolves its `clip` field under the clips root (daemon/console/clips.py).
No response carries the daemon's config: camera sources, broker credentials and the
console's own token never leave the process.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.console.auth import SESSION_TTL_S, Auth, client_key
from daemon.console.cameras import CameraBoard
from daemon.console.clips import clip_path, media_type
from daemon.console.guard import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    Network,
    client_address,
    is_https,
    make_guard,
    too_many,
)
from daemon.console.history import MAX_LIMIT, History, HistoryError, Query
from daemon.console.live import MAX_STREAM_FPS, STREAM_POLL_S, LiveImages
from daemon.console.pages import STATIC_DIR, add_page_routes

MAX_STREAMS = 32  # live MJPEG viewers at once, all cameras together
DEFAULT_LIMIT = 100
MJPEG_BOUNDARY = "actiondframe"
STREAM_RESEND_S = 2.0  # a stream without new frames sends the last again this often


@dataclass
class Console:
    """What the web application serves from (shared with the sink)."""

    history: History
    board: CameraBoard
    auth: Auth
    live: LiveImages
    clips_root: Path
    device_id: str
    stopping: threading.Event = field(default_factory=threading.Event)
    streams: int = 0
    listen_host: str = ""  # an open console answers requests for this Host too
    proxies: tuple[Network, ...] = ()  # [console] trusted_proxies


CONSOLE = web.AppKey("console", Console)


def make_app(console: Console) -> web.Application:
    guard = make_guard(console.auth, console.listen_host, console.proxies)
    app = web.Application(middlewares=[guard])
    app[CONSOLE] = console
    add_page_routes(app, _login)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/actions", _actions)
    app.router.add_get("/api/cameras", _cameras)
    app.router.add_get("/api/cameras/{name}/snapshot.jpg", _camera_snapshot)
    app.router.add_get("/api/cameras/{name}/live.mjpg", _camera_live)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/events/{id}", _event)
    app.router.add_get("/api/events/{id}/snapshot.jpg", _event_snapshot)
    app.router.add_get("/api/events/{id}/clip", _event_clip)
    return app


async def _login(request: web.Request) -> web.StreamResponse:
    """POST /login with form field `token`: a session cookie and a redirect to /."""
    console = request.app[CONSOLE]
    form = await request.post()
    given = form.get("token")
    client = client_key(client_address(request, console.proxies))
    session, wait_s = console.auth.login(client, given if isinstance(given, str) else "")
    if wait_s > 0:
        return too_many(wait_s)
    if session is None:
        page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
        page = page.replace("<!--error-->", '<p class="error" role="alert">Wrong token.</p>')
        return web.Response(text=page, status=401, content_type="text/html")
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=int(SESSION_TTL_S),
        secure=is_https(request, console.proxies),
    )
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: the session ends here and in the browser; back to /login (or /
    for an open console)."""
    console = request.app[CONSOLE]
    console.auth.logout(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/login" if console.auth.required else "/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def _status(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    limiter = console.auth.limiter
    body = {
        "device_id": console.device_id,
        "auth_required": console.auth.required,
        "history": await asyncio.to_thread(console.history.summary),
        "logins_failed_total": limiter.failed_total,
        "logins_refused_total": limiter.refused_total,
    }
    return web.json_response(body)


async def _cameras(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    cameras = console.board.states()
    for cam in cameras:
        frame = await asyncio.to_thread(console.live.latest, cam["name"])
        cam["has_image"] = frame is not None
        cam["live_url"] = f"/api/cameras/{cam['name']}/live.mjpg"
        cam["snapshot_url"] = f"/api/cameras/{cam['name']}/snapshot.jpg"
    return web.json_response({"device_id": console.device_id, "cameras": cameras})


def _known_camera(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in request.app[CONSOLE].board.names():
        raise web.HTTPNotFound(text=f"no camera named {name!r}")
    return name


async def _camera_snapshot(request: web.Request) -> web.Response:
    name = _known_camera(request)
    frame = await asyncio.to_thread(request.app[CONSOLE].live.latest, name)
    if frame is None:
        raise web.HTTPNotFound(text=f"camera {name} has no image yet (connecting)")
    return web.Response(
        body=frame[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )


async def _camera_live(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace: each new frame of the camera's live slot."""
    name = _known_camera(request)
    console = request.app[CONSOLE]
    if console.streams >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(text=f"{MAX_STREAMS} live streams are open already")
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            "Cache-Control": "no-store",
            **dict(SECURITY_HEADERS),
        }
    )
    console.streams += 1
    try:
        await response.prepare(request)
        await _stream(console, name, request, response)
    except (ConnectionError, asyncio.CancelledError):
        pass  # the viewer went away, or the console is stopping
    finally:
        console.streams -= 1
    return response


async def _stream(
    console: Console, name: str, request: web.Request, response: web.StreamResponse
) -> None:
    """Each new frame, the last again every STREAM_RESEND_S; ends when the viewer has
    gone (aiohttp does not cancel a handler when its client leaves) or on close."""
    last, sent_at = -1, 0.0
    loop = asyncio.get_running_loop()
    while not console.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        frame = await asyncio.to_thread(console.live.latest, name)
        due = frame is not None and (frame[0] != last or loop.time() - sent_at >= STREAM_RESEND_S)
        if frame is None or not due:
            await asyncio.sleep(STREAM_POLL_S)
            continue
        last, jpeg = frame
        head = (
            f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
        )
        await response.write(head.encode() + jpeg + b"\r\n")
        sent_at = loop.time()
        await asyncio.sleep(1.0 / MAX_STREAM_FPS)


def _query(request: web.Request) -> Query:
    q = request.query
    try:
        limit = int(q.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise _bad("limit must be a whole number, e.g. limit=50") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad(f"limit must be 1 to {MAX_LIMIT} (events per answer), not {limit}")
    return Query(q.get("camera", ""), q.get("action", ""), _since(q.get("since", "")), limit)


def _since(text: str) -> float | None:
    """`since` as epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(
            "since must be epoch seconds or an ISO 8601 time, e.g. since=2026-11-28T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return when.timestamp()


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{message}"}}', content_type="application/json")


def event_view(console: Console, record: dict[str, Any]) -> dict[str, Any]:
    """An event as the API gives it: its merged record and the console's links."""
    base = f"/api/events/{record['id']}"
    view = dict(record)
    view["open"] = record.get("phase") != "end"
    view["snapshot_url"] = f"{base}/snapshot.jpg" if record.get("has_snapshot") else None
    ready = clip_path(console.clips_root, record.get("clip")) is not None
    view["clip_url"] = f"{base}/clip" if ready else None
    return view


def _views(console: Console, query: Query) -> list[dict[str, Any]]:
    return [event_view(console, r) for r in console.history.events(query)]


async def _events(request: web.Request) -> web.Response:
    """The events matching the query, as event_view gives them (built off the loop:
    each looks for its clip file)."""
    console = request.app[CONSOLE]
    return web.json_response({"events": await _read(_views, console, _query(request))})


async def _actions(request: web.Request) -> web.Response:
    """The distinct actions in the history (the events page's filter) and the cameras."""
    console = request.app[CONSOLE]
    actions = await _read(console.history.actions)
    return web.json_response({"actions": actions, "cameras": console.board.names()})


async def _event_record(request: web.Request) -> dict[str, Any]:
    event_id = request.match_info["id"]
    record = await _read(request.app[CONSOLE].history.event, event_id)
    if not isinstance(record, dict):
        raise web.HTTPNotFound(text=f"no event {event_id!r} in the history")
    return record


async def _event(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    record = await _event_record(request)
    return web.json_response(await asyncio.to_thread(event_view, console, record))


async def _event_snapshot(request: web.Request) -> web.Response:
    event_id = request.match_info["id"]
    jpeg = await _read(request.app[CONSOLE].history.snapshot, event_id)
    if jpeg is None:
        raise web.HTTPNotFound(text=f"no snapshot for event {event_id!r}")
    return web.Response(body=jpeg, content_type="image/jpeg")


async def _event_clip(request: web.Request) -> web.StreamResponse:
    """The event's clip (Range requests work: the browser's <video> seeks)."""
    console = request.app[CONSOLE]
    record = await _event_record(request)
    path = await asyncio.to_thread(clip_path, console.clips_root, record.get("clip"))
    if path is None:
        raise web.HTTPNotFound(text=f"event {record['id']} has no clip (yet)")
    return web.FileResponse(path, headers={"Content-Type": media_type(path)})


async def _read(call: Any, *args: Any) -> Any:
    """A history read, off the loop; 503 when the file cannot be read."""
    try:
        return await asyncio.to_thread(call, *args)
    except HistoryError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from exc
