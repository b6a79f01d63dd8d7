"""The console's pages: static HTML, CSS and JavaScript shipped in the package (no build
step, nothing fetched from elsewhere). Only the files named in STATIC_FILES are served."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = MappingProxyType(
    {
        "console.css": "text/css",
        "console.js": "text/javascript",
        "cameras.js": "text/javascript",
        "events.js": "text/javascript",
    }
)
PAGES = MappingProxyType({"/": "cameras.html", "/events": "events.html"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_page_routes(app: web.Application, login: Handler) -> None:
    for route, name in PAGES.items():
        app.router.add_get(route, _page(name))
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", login)
    app.router.add_get("/static/{name}", _static)


def _html(name: str, status: int = 200) -> web.Response:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    return web.Response(
        text=text, status=status, content_type="text/html", headers={"Cache-Control": "no-cache"}
    )


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        return _html(name)

    return page


async def _login_page(request: web.Request) -> web.StreamResponse:
    return _html("login.html")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = STATIC_FILES.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC_DIR / name).read_bytes(),
        content_type=kind,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
