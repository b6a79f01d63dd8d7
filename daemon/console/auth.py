"""Who may use the console: the login token, sessions, and the failed-login limiter.

On a loopback listen address without a configured token the console is open. Otherwise
every page and API call needs either a session cookie (from posting the token to
/login) or `Authorization: Bearer <token>`. The token is read from a file or an
environment variable, never the command line, and compared in constant time
(hmac.compare_digest). Failed logins (a wrong form post or a wrong bearer token) are
limited per client address: after MAX_FAILURES within WINDOW_S, answers are 429 with
Retry-After until the oldest failure leaves the window; past MAX_FAILURES_GLOBAL
failures from all addresses together, every address is (sessions stay valid). A session
ends at /logout, after SESSION_TTL_S, or when unused for SESSION_IDLE_S.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from daemon.config.console_rules import token_problem

log = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_S = 60.0
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1000  # the oldest session is forgotten beyond this
MAX_TRACKED_CLIENTS = 10000  # addresses whose failures are remembered
MAX_FAILURES_GLOBAL = 100  # failed logins within WINDOW_S from all addresses together
IPV6_CLIENT_PREFIX = 64  # an IPv6 client is its /64 for the limiter
SESSION_IDLE_S = 2 * 3600.0  # a session unused this long ends
SESSION_TOKEN_BYTES = 32


class TokenError(ValueError):
    """The configured token cannot be read (says which key and why)."""


def read_token(token_file: str, token_env: str) -> str | None:
    """The login token from `token_file` or the variable `token_env` ("" for neither:
    None). Surrounding whitespace is stripped; an empty token is refused."""
    if token_file:
        key = "console.auth_token_file"
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read {key} {token_file}: {exc}") from exc
    elif token_env:
        key = "console.auth_token_env"
        value = os.environ.get(token_env)
        if value is None:
            raise TokenError(
                f"{key} names {token_env}, which is not set in the environment "
                "(systemd: Environment= or EnvironmentFile= in the unit)"
            )
        token = value.strip()
    else:
        return None
    if not token:
        raise TokenError(f"{key}: the token is empty; put a long random string there")
    problem = token_problem(token)
    if problem:
        raise TokenError(f"{key}: {problem}")
    return token


class FailureLimiter:
    """Failed logins per client key within a sliding window, and all of them together
    (thread-safe). Memory is bounded: a key is remembered only while it has failures in
    the window, at most MAX_TRACKED_CLIENTS keys (the oldest forgotten first), and the
    global count at most `max_global` times. Past `max_global` failures within the window
    every key is refused: addresses are cheap to change (IPv6), guesses must stay few."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_global: int = MAX_FAILURES_GLOBAL,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_global = max_global
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()  # every failure in the window, any key
        self._lock = threading.Lock()
        self.failed_total = 0
        self.refused_total = 0

    @property
    def tracked(self) -> int:
        """How many keys are remembered now."""
        with self._lock:
            return len(self._failures)

    def retry_after_s(self, client: str, now: float | None = None) -> float:
        """0 when `client` may try; else the seconds until it may (counted as refused)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            _expire(self._all, now - self.window_s)
            times = self._recent(client, now)
            waits = [0.0]
            if len(times) >= self.max_failures:
                waits.append(times[0] + self.window_s - now)
            if len(self._all) >= self.max_global:
                waits.append(self._all[0] + self.window_s - now)
            wait_s = max(waits)
            if wait_s > 0:
                self.refused_total += 1
            return wait_s

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.failed_total += 1
            self._all.append(now)
            _expire(self._all, now - self.window_s)
            while len(self._all) > self.max_global:
                self._all.popleft()
            times = self._recent(client, now)
            if not times:
                while len(self._failures) >= MAX_TRACKED_CLIENTS:
                    self._failures.pop(next(iter(self._failures)))
                self._failures[client] = times
            times.append(now)
            count = len(times)
        if count == self.max_failures:  # once per address and window, not per attempt
            log.warning(
                "console: %d failed logins from %s within %.0f s; refusing it for a while",
                count,
                client,
                self.window_s,
            )

    def _recent(self, client: str, now: float) -> deque[float]:
        """`client`'s failures within the window (a new empty deque, not stored, when it
        has none: a key with no failures is forgotten)."""
        times = self._failures.get(client)
        if times is None:
            return deque()
        _expire(times, now - self.window_s)
        if not times:
            del self._failures[client]
        return times


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()


def client_key(address: str) -> str:
    """The limiter's key for a client address: an IPv6 address counts as its /64 (one
    host holds a whole /64), anything else as itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Verdict:
    """What the auth check says about one request."""

    allowed: bool
    retry_after_s: float = 0.0  # > 0: refused by the limiter


class Auth:
    """The token, the sessions and the limiter of one console."""

    def __init__(self, token: str | None, limiter: FailureLimiter | None = None) -> None:
        self._token = token
        self.limiter = limiter or FailureLimiter()
        # session id -> (expiry, last use), monotonic seconds
        self._sessions: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        return self._token is not None

    def token_matches(self, given: str) -> bool:
        if self._token is None:
            return True
        return hmac.compare_digest(given.encode(), self._token.encode())

    def login(self, client: str, given: str) -> tuple[str | None, float]:
        """(a new session id, 0) for the right token; (None, retry-after seconds or 0)."""
        wait_s = self.limiter.retry_after_s(client)
        if wait_s > 0:
            return None, wait_s
        if not self.token_matches(given):
            self.limiter.failed(client)
            return None, 0.0
        session = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        now = time.monotonic()
        with self._lock:
            self._sessions = {s: t for s, t in self._sessions.items() if _live(t, now)}
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session] = (now + SESSION_TTL_S, now)
        return session, 0.0

    def logout(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def session_valid(self, session: str, now: float | None = None) -> bool:
        """Whether `session` is known, younger than SESSION_TTL_S and used within
        SESSION_IDLE_S (this use counts: it is marked used now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._sessions.get(session)
            if times is None or not _live(times, now):
                self._sessions.pop(session, None)
                return False
            self._sessions[session] = (times[0], now)
            return True

    def check(self, client: str, session: str, bearer: str | None) -> Verdict:
        """A request's verdict: open console, valid session, or a right bearer token (a
        wrong one counts as a failed login)."""
        if not self.required or (session and self.session_valid(session)):
            return Verdict(True)
        if bearer is None:
            return Verdict(False)
        wait_s = self.limiter.retry_after_s(client)
        if wait_s > 0:
            return Verdict(False, wait_s)
        if self.token_matches(bearer):
            return Verdict(True)
        self.limiter.failed(client)
        return Verdict(False)


def _live(times: tuple[float, float], now: float) -> bool:
    expiry, used = times
    return now < expiry and now - used < SESSION_IDLE_S
