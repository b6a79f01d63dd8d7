"""The console's request guard (an aiohttp middleware): who may ask, and the security
headers on every answer, raised errors included.

- An open console (no token: only allowed on a loopback listen address) answers only
  local requests: none that came through a proxy (X-Forwarded-For, Forwarded, X-Real-IP)
  and none whose Host is not localhost, 127.0.0.1, [::1] or the listen host, so neither
  a reverse proxy on the box nor a web page using DNS rebinding reaches it.
- Otherwise every page and API call needs a session or the bearer token (auth.py); the
  client's address (the failed-login limiter's key) is the peer's, or, from a trusted
  proxy ([console] trusted_proxies), the nearest untrusted X-Forwarded-For hop.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from daemon.console.auth import Auth, client_key

SESSION_COOKIE = "actiond_session"
OPEN_PATHS = ("/login", "/static/")  # reachable before logging in
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def proxy_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """[console] trusted_proxies as networks (checked at load: config/console_rules.py)."""
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies if ip.version == net.version)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or behind a trusted proxy the nearest
    X-Forwarded-For hop that is not itself a trusted proxy."""
    remote = request.remote or "unknown"
    if not _trusted(remote, proxies):
        return remote
    hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
    for hop in reversed([h.strip() for h in hops if h.strip()]):
        if not _trusted(hop, proxies):
            return hop
    return remote


def is_https(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """Whether the browser spoke HTTPS: to us, or to a trusted proxy that says so."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and _trusted(request.remote or "", proxies)


def open_refusal(request: web.Request, listen_host: str) -> str | None:
    """Why an open console refuses `request` (see the module docstring), or None."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return (
            "this console has no login token, so it answers only local requests, not ones "
            "through a proxy: set console.auth_token_file (README: Web console)"
        )
    host = urlsplit(f"//{request.host}").hostname or ""
    if host not in {*LOCAL_HOSTS, listen_host.lower()} - {""}:
        return (
            "this console has no login token, so it answers only requests for localhost, "
            "127.0.0.1 or [::1]: set console.auth_token_file to reach it by another name"
        )
    return None


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def too_many(retry_after_s: float) -> web.Response:
    return web.json_response(
        {"error": "too many failed logins; try again later"},
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
    )


def make_guard(auth: Auth, listen_host: str, proxies: tuple[Network, ...]) -> Middleware:
    """The middleware: the open console's local-only rule or the login check, then the
    security headers (also on raised HTTP errors: 404, 400, 303, 503)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await _checked(request, handler)
        except web.HTTPException as exc:
            _secure(exc.headers)
            raise
        if not response.prepared:
            _secure(response.headers)
        return response

    async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not auth.required:
            refusal = open_refusal(request, listen_host)
            if refusal:
                return web.json_response({"error": refusal}, status=403)
            return await handler(request)
        path = request.path
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPEN_PATHS):
            return await handler(request)
        key = client_key(client_address(request, proxies))
        verdict = auth.check(key, request.cookies.get(SESSION_COOKIE, ""), bearer(request))
        if verdict.retry_after_s > 0:
            return too_many(verdict.retry_after_s)
        if verdict.allowed:
            return await handler(request)
        if path.startswith("/api/"):
            return web.json_response(
                {
                    "error": "log in first: POST the token to /login, or send "
                    "Authorization: Bearer <token>"
                },
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise web.HTTPSeeOther("/login")

    return guard


def _secure(headers: CIMultiDict[str]) -> None:
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
