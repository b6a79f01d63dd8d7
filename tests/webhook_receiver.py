"""A real local webhook receiver for the tests: an HTTP(S) server on a free port, in a thread,
that can be told to accept (2xx), fail (5xx, with Retry-After), refuse (4xx), hang
(read the request and never answer) or be down (its socket closed), and that records
every request it read, with the headers, the body and its answer."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_MAX_S = 120.0  # a hung request is released at the latest then (or at close)
TRICKLE_BYTE_S = 0.1  # a slow receiver: one byte of its answer at a time
POLL_S = 0.02


@dataclass(frozen=True)
class Answer:
    """How the receiver answers: an HTTP status (and Retry-After), or not at all."""

    status: int = 200
    retry_after: str | None = None
    hang: bool = False
    trickle: bool = False  # answer a byte every TRICKLE_BYTE_S, without end


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: Answer
    at: float  # time.monotonic() when the request was read

    @property
    def key(self) -> str:
        return self.headers.get("X-Actiond-Event-Id", "")

    @property
    def record(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


Decide = Callable[[Received], Answer]  # the answer to one request (by its key, count ...)


class WebhookReceiver:
    """`answer` decides each request's answer (default: 200); `start`/`stop` take the
    server up and down on the same port."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.answer: Decide = lambda _: Answer()
        self._tls = tls  # serve https with this server context
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        self._release.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        if self._tls is not None:  # a failed handshake is dropped in accept (an OSError)
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the listening socket closed (connections are refused); hung requests end."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def accepted(self) -> list[Received]:
        return [
            r
            for r in self.requests()
            if 200 <= r.answer.status < 300 and not (r.answer.hang or r.answer.trickle)
        ]

    def accepted_keys(self) -> list[str]:
        return [r.key for r in self.accepted()]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; got "
                    f"{[(r.key, r.answer) for r in self.requests()]}"
                )
            time.sleep(POLL_S)

    def _note(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def _hold(self) -> None:
        self._release.wait(HANG_MAX_S)


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
        # The status line and headers go out before the body: without TCP_NODELAY the
        # body waits for the client's delayed ACK (40 ms a request on a kept connection).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            probe = Received(self.path, headers, body, Answer(), time.monotonic())
            answer = receiver.answer(probe)
            receiver._note(Received(self.path, headers, body, answer, probe.at))
            if answer.hang:
                receiver._hold()
                self.close_connection = True
                return
            if answer.trickle:
                self._trickle()
                return
            self.send_response(answer.status)
            if answer.retry_after is not None:
                self.send_header("Retry-After", answer.retry_after)
            reply = b'{"ok": true}' if answer.status < 300 else b"nope: test receiver says so"
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def _trickle(self) -> None:
            """Headers that never end, a byte at a time, until the client goes."""
            self.close_connection = True
            line = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"." * 100_000
            for byte in line:
                if receiver._release.wait(TRICKLE_BYTE_S):
                    return  # the receiver stops
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return  # the client cut the request

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `requests()`."""

    return Handler
