"""Who may use the console: the login token, sessions, and the failed-login limiter.

On a loopback listen address without a configured token the console is open. Otherwise
every page and API call needs either a session cookie (from posting the token to
/login) or `Authorization: Bearer <token>`. The token is read from a file or an
environment variable, never the command line, and compared in constant time
(hmac.compare_digest). Failed logins (a wrong form post or a wrong bearer token) are
limited per client address: after MAX_FAILURES within WINDOW_S, answers are 429 with
Retry-After until the oldest failure leaves the window.
"""

from __future__ import annotations

import hmac
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
    """Failed logins per client address within a sliding window (thread-safe)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.failed_total = 0
        self.refused_total = 0

    def retry_after_s(self, client: str, now: float | None = None) -> float:
        """0 when `client` may try; else the seconds until it may (counted as refused)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return 0.0
            self.refused_total += 1
            return max(0.0, times[0] + self.window_s - now)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.failed_total += 1
            if client not in self._failures and len(self._failures) >= MAX_TRACKED_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
            times = self._recent(client, now)
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
        times = self._failures.setdefault(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times


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
        self._sessions: dict[str, float] = {}  # session id -> expiry (monotonic)
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
            self._sessions = {s: t for s, t in self._sessions.items() if t > now}
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session] = now + SESSION_TTL_S
        return session, 0.0

    def logout(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def session_valid(self, session: str) -> bool:
        with self._lock:
            expiry = self._sessions.get(session)
        return expiry is not None and expiry > time.monotonic()

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
