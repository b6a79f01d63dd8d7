"""How the webhook sink speaks HTTP: the request for one event (body, idempotency key,
signature), one POST over a kept-alive connection to one URL, what an answer means
(delivered, retry later, rejected), and the backoff between retries. The thread that
uses them is daemon/outputs/sinks/webhook.py.

Stdlib http.client, not urllib3 or requests: one POST with a timeout over a connection
kept between requests is all this needs, and the daemon gains no dependency. The one
thing a client library would add, an abort of a request hung in another thread, is a
`shutdown()` of the connection's socket (`Target.abort`).

Signature (when a secret is configured): `X-Actiond-Signature: sha256=<hex>` is the
HMAC-SHA256, keyed with the secret, of `<X-Actiond-Timestamp>.<body bytes>`; the
timestamp (Unix seconds at sending) is in the signed string, so a receiver that checks
it is recent refuses a replayed request.

URLs are never logged whole: Slack, Discord and Teams webhooks carry their secret in the
path, so logs and errors show `shown_url` (scheme://host:port/...).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from daemon import __version__
from daemon.config.webhook_rules import shown_url

EVENT_ID_HEADER = "X-Actiond-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMESTAMP_HEADER = "X-Actiond-Timestamp"
SIGNATURE_HEADER = "X-Actiond-Signature"
SIGNATURE_PREFIX = "sha256="
RETRYABLE_4XX = (408, 429)  # request timeout, too many requests: try again later
MAX_RESPONSE_BYTES = 64 * 1024  # read (and dropped) so the connection can be reused
REASON_PREVIEW_CHARS = 200  # of a rejecting server's answer, in the log
MAX_BACKOFF_DOUBLINGS = 60
WATCHDOG_IDLE_S = 30.0  # a Target's watchdog thread ends after this long with no request

Verdict = Literal["delivered", "retry", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: delivered (2xx), retry (no answer, 5xx, 408, 429) or
    rejected (any other status: the receiver will never take this request)."""

    verdict: Verdict
    detail: str  # "HTTP 503", "timed out after 5 s", "connection refused"
    retry_after_s: float | None = None  # the server's Retry-After, in seconds


def request_body(record: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): the event record as compact JSON."""
    return json.dumps(dict(record), sort_keys=True, separators=(",", ":")).encode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def request_headers(key: str, body: bytes, secret: bytes | None, timestamp: int) -> dict[str, str]:
    """The headers of one event's POST; `key` is the outbox key `<event id>:<phase>`,
    the same on every retry, so a receiver drops repeats by it."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"actiond/{__version__}",
        EVENT_ID_HEADER: key,
        IDEMPOTENCY_HEADER: key,
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """A Retry-After header's wait in seconds (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def classify(status: int, retry_after: str | None, now_s: float) -> Outcome:
    """The meaning of an HTTP answer to a webhook POST."""
    detail = f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome("delivered", detail)
    if status >= 500 or status in RETRYABLE_4XX:
        return Outcome("retry", detail, retry_after_s(retry_after, now_s))
    return Outcome("rejected", detail)


def backoff_s(failures: int, min_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """The wait before the next try after `failures` failed tries in a row (>= 1):
    min_s doubled per failure, capped at max_s, jittered down to as little as half
    (never below min_s) so that many boxes do not retry in step."""
    step = min(max_s, min_s * 2.0 ** min(failures - 1, MAX_BACKOFF_DOUBLINGS))
    return max(min_s, step * (0.5 + 0.5 * rand()))


def retry_delay_s(
    outcome: Outcome, failures: int, min_s: float, max_s: float, rand: Callable[[], float]
) -> float:
    """The backoff, or the server's Retry-After when longer (never beyond max_s)."""
    delay = backoff_s(failures, min_s, max_s, rand)
    if outcome.retry_after_s is None:
        return delay
    return max(delay, min(outcome.retry_after_s, max_s))


class Target:
    """One webhook URL and its kept-alive connection. `post` runs on the sink's thread;
    `abort` (any thread) ends a request in progress at once."""

    def __init__(self, url: str, timeout_s: float, tls: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.shown = shown_url(url)  # what logs say (the path may be a secret)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = timeout_s
        self._tls = tls
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # guards _conn between post and abort
        self._aborted = False  # set by abort(): no request is started again
        self._cut_off = False  # the current try ran past timeout_s and was cut
        self._deadline_s = 0.0  # time.monotonic() by which the current try ends
        self._watchdog = _Watchdog(self._cut)

    def __repr__(self) -> str:
        return f"Target({self.shown!r})"

    def post(self, body: bytes, headers: Mapping[str, str], now: Callable[[], float]) -> Outcome:
        """POST `body`; a kept connection the server closed meanwhile is opened again once."""
        if self._aborted:
            return Outcome("retry", "aborted (the sink is closing)")
        reused = self._conn is not None
        outcome = self._post_once(body, headers, now)
        retry = outcome.verdict == "retry" and outcome.detail.startswith("closed")
        if reused and retry and not self._aborted:
            outcome = self._post_once(body, headers, now)
        return outcome

    def _post_once(
        self, body: bytes, headers: Mapping[str, str], now: Callable[[], float]
    ) -> Outcome:
        """One try, bounded as a whole by timeout_s: the host name's lookup waits at
        most that long, and the Target's watchdog cuts a receiver that answers, but too
        slowly (a byte at a time never trips the socket's timeout)."""
        conn = self._connection()
        self._cut_off = False
        self._deadline_s = time.monotonic() + self._timeout_s
        self._watchdog.arm(conn, self._deadline_s)
        try:
            return self._exchange(conn, body, headers, now)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Outcome("retry", self._failure(exc))
        finally:
            self._watchdog.disarm()

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        body: bytes,
        headers: Mapping[str, str],
        now: Callable[[], float],
    ) -> Outcome:
        if conn.sock is None:
            conn.connect()
        if self._aborted:  # abort() came while connecting: it saw no socket
            self.close()
            return Outcome("retry", "aborted (the sink is closing)")
        conn.request("POST", self._path, body=body, headers=dict(headers))
        response = conn.getresponse()
        answer = response.read(MAX_RESPONSE_BYTES)
        outcome = classify(response.status, response.getheader("Retry-After"), now())
        if outcome.verdict == "rejected":
            outcome = Outcome("rejected", _rejection(response, answer))
        if response.will_close or not response.isclosed():
            self.close()  # an unread rest or "Connection: close": start afresh
        return outcome

    def _failure(self, exc: BaseException) -> str:
        if isinstance(exc, NotResolvedError):
            return f"{exc} within {self._timeout_s:g} s"
        if isinstance(exc, TimeoutError) or self._cut_off:
            return f"timed out after {self._timeout_s:g} s"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return f"closed by the server ({type(exc).__name__})"  # RemoteDisconnected too
        return _describe(exc)

    def _cut(self, conn: http.client.HTTPConnection) -> None:
        """timeout_s passed and the try still runs: end it (the timer's thread)."""
        self._cut_off = True
        _shutdown(conn.sock)

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                if self._https:
                    self._conn = http.client.HTTPSConnection(
                        self._host, self._port, timeout=self._timeout_s, context=self._tls
                    )
                else:
                    self._conn = http.client.HTTPConnection(
                        self._host, self._port, timeout=self._timeout_s
                    )
                # http.client's hook for making the socket (its connect(), TLS's too):
                # a lookup bounded by the try's deadline, then the connect
                self._conn._create_connection = self._open_socket  # type: ignore[attr-defined]
            return self._conn

    def _open_socket(
        self, address: tuple[str, int], timeout: float | None = None, source: object = None
    ) -> socket.socket:
        """socket.create_connection with the host name's lookup bounded by the try's
        deadline (getaddrinfo itself has no timeout), then each address in turn."""
        host, port = address
        addresses = resolve(host, port, max(0.0, self._deadline_s - time.monotonic()))
        error: OSError = OSError(f"no address for {host}")
        for ip in addresses:
            left_s = max(0.001, self._deadline_s - time.monotonic())
            try:
                return socket.create_connection((ip, port), min(self._timeout_s, left_s))
            except OSError as exc:
                error = exc
        raise error

    def abort(self) -> None:
        """End a request in progress (its recv returns at once) and start none again;
        from any thread."""
        with self._lock:
            self._aborted = True
            sock = self._conn.sock if self._conn is not None else None
        _shutdown(sock)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class NotResolvedError(OSError):
    """The host name's lookup did not answer within the try's timeout."""


def resolve(host: str, port: int, timeout_s: float) -> list[str]:
    """The addresses of `host`, looked up on a thread of its own (getaddrinfo has no
    timeout; a lookup still running after timeout_s is left to end by itself):
    NotResolvedError when it takes longer, socket.gaierror when the name is unknown."""
    try:
        return [str(ipaddress.ip_address(host))]  # an address: nothing to look up
    except ValueError:
        pass
    found: list[list[str]] = []
    failed: list[OSError] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.append([str(info[4][0]) for info in infos])
        except OSError as exc:
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="webhook-lookup", daemon=True).start()
    if not done.wait(timeout_s):
        raise NotResolvedError(f"host name {host} not resolved")
    if failed:
        raise failed[0]
    return found[0]


class _Watchdog:
    """One thread per Target (not one per request): cuts the connection of a try still
    running at its deadline; it ends after WATCHDOG_IDLE_S without a request and starts
    again with the next."""

    def __init__(self, cut: Callable[[http.client.HTTPConnection], None]) -> None:
        self._cut = cut
        self._cond = threading.Condition()
        self._armed: tuple[float, http.client.HTTPConnection] | None = None
        self._running = False

    def arm(self, conn: http.client.HTTPConnection, deadline_s: float) -> None:
        with self._cond:
            self._armed = (deadline_s, conn)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="webhook-watchdog", daemon=True).start()
            self._cond.notify()

    def disarm(self) -> None:
        """The try ended; once this returns, its connection is not cut."""
        with self._cond:
            self._armed = None

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._armed is None:
                    if not self._cond.wait(WATCHDOG_IDLE_S) and self._armed is None:
                        self._running = False
                        return
                    continue
                deadline_s, conn = self._armed
                left_s = deadline_s - time.monotonic()
                if left_s > 0:
                    self._cond.wait(left_s)
                    continue
                self._armed = None
                self._cut(conn)  # a shutdown(): does not block


def _shutdown(sock: socket.socket | None) -> None:
    """Make a recv or send on `sock` in another thread return at once."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return  # already closed: nothing in progress


def _rejection(response: http.client.HTTPResponse, answer: bytes) -> str:
    """The status, and what the receiver said (a redirect: where to)."""
    detail = f"HTTP {response.status} {response.reason}".strip()
    if 300 <= response.status < 400:
        location = response.getheader("Location") or "?"
        return f"{detail} (a redirect to {location}: configure that URL instead)"
    text = answer[:REASON_PREVIEW_CHARS].decode("utf-8", "replace")
    said = "".join(c if c.isprintable() else " " for c in text).strip()
    return f"{detail}: {said}" if said else detail


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}; set webhook.ca_file)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there: is the receiver running?)"
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror})"
    strerror = getattr(exc, "strerror", None)
    return str(strerror or exc or type(exc).__name__)
