"""MJPEG over HTTP: watch the overlay in a browser when OpenCV has no window.

Runs inside the overlay worker: a ThreadingHTTPServer in a daemon thread serves

- ``/``              a small HTML page showing the live stream,
- ``/stream.mjpg``   ``multipart/x-mixed-replace; boundary=frame`` with JPEG parts,
- ``/snapshot.jpg``  the latest frame (503 until the first frame is published).

The pipeline never waits for a client: ``publish`` stores only the latest frame, and each
client thread sends whatever is newest when its socket is ready again, so a slow client
skips frames instead of queueing them.
"""

from __future__ import annotations

import html
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from daemon.config import parse_listen
from daemon.display.framehub import DEFAULT_MAX_CLIENTS, FrameHub, MjpegCounters

log = logging.getLogger(__name__)

BOUNDARY = "frame"
CLIENT_WAIT_SLICE_S = 0.5  # a waiting client re-checks for shutdown this often
CLIENT_SOCKET_TIMEOUT_S = 10.0  # a client that reads nothing this long is dropped
SERVE_POLL_S = 0.1  # serve_forever's poll interval bounds stop() latency
STOP_DRAIN_S = 2.0  # how long stop() waits for client threads to finish
SPARE_CONNECTIONS = 8  # page and snapshot requests beyond the streams
REFUSED_RETRY_AFTER_S = 5
CLIENT_GONE_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>body{{margin:0;background:#111;color:#ddd;font-family:sans-serif;text-align:center}}
img{{max-width:100%;height:auto}}</style></head>
<body><h3>{title}</h3>
<img src="/stream.mjpg" alt="live stream">
<p><a href="/snapshot.jpg">snapshot</a></p>
</body></html>
"""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its open connections so stop() can cut them."""

    daemon_threads = True
    block_on_close = False  # we drain with a deadline instead of an unbounded join
    allow_reuse_port = False  # never share the port with another server

    def __init__(
        self, addr: tuple[str, int], family: socket.AddressFamily, hub: FrameHub, title: str
    ) -> None:
        self.address_family = family
        self.hub = hub
        self.page = PAGE_TEMPLATE.format(title=html.escape(title)).encode()
        self._conns: set[socket.socket] = set()
        self._conns_cond = threading.Condition()
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves getfqdn(host), which can stall for seconds on an
        # edge box without DNS; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        # Every connection costs a thread: past the streams and a few spare ones, a new
        # connection is closed at once instead of growing threads without bound.
        with self._conns_cond:
            full = len(self._conns) >= self.hub.max_clients + SPARE_CONNECTIONS
            if not full:
                self._conns.add(request)
        if full:
            log.warning(
                "MJPEG: %d connections open; closing one from %s",
                len(self._conns),
                client_address[0] if client_address else "?",
            )
            socketserver.TCPServer.shutdown_request(self, request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._conns_cond:
                self._conns.discard(request)
                self._conns_cond.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("MJPEG: error while serving %s", client_address)

    def cut_connections(self) -> None:
        """Shut every client socket down so blocked reads and writes return at once."""
        with self._conns_cond:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # the client closed it first: nothing left to cut
                log.debug("MJPEG: shutdown of a closed client socket: %s", exc)

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until every connection thread has finished; False if some did not."""
        with self._conns_cond:
            return self._conns_cond.wait_for(lambda: not self._conns, timeout_s)


class _Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the page, the stream and the snapshot."""

    server: _Server
    timeout = CLIENT_SOCKET_TIMEOUT_S
    server_version = "actiond-mjpeg"

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/": self._send_page,
            "/index.html": self._send_page,
            "/stream.mjpg": self._send_stream,
            "/snapshot.jpg": self._send_snapshot,
        }
        route = routes.get(urlsplit(self.path).path)
        try:
            if route is None:
                self._send_text(
                    HTTPStatus.NOT_FOUND, "not found: try /, /stream.mjpg or /snapshot.jpg\n"
                )
            else:
                route()
        except CLIENT_GONE_ERRORS as exc:
            log.debug("MJPEG: client %s went away: %s", self.client_address, exc)
        except TimeoutError:
            log.debug(
                "MJPEG: client %s stopped reading for %.0f s; dropped",
                self.client_address,
                CLIENT_SOCKET_TIMEOUT_S,
            )

    def _send_page(self) -> None:
        self._send_body(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page)

    def _send_snapshot(self) -> None:
        latest = self.server.hub.latest()
        if latest is None:
            self._send_text(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "no frame yet: the overlay stage has not produced a frame; retry in a moment\n",
                retry_after_s=1,
            )
            return
        self._send_body(HTTPStatus.OK, "image/jpeg", latest[1])
        self.server.hub.count_served(skipped=0)

    def _send_stream(self) -> None:
        hub = self.server.hub
        if not hub.client_joined():
            log.warning(
                "MJPEG: %d streams open (display.mjpeg_max_clients); refused %s",
                hub.max_clients,
                self.client_address[0],
            )
            self._send_text(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many viewers: {hub.max_clients} streams are open; close "
                "one, or raise display.mjpeg_max_clients\n",
                retry_after_s=REFUSED_RETRY_AFTER_S,
            )
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store, private")
            self.send_header("Pragma", "no-cache")
            self.end_headers()
            self.wfile.write(f"--{BOUNDARY}\r\n".encode())
            last = 0
            while not hub.closed:
                got = hub.wait_newer(last, CLIENT_WAIT_SLICE_S)
                if got is None:
                    continue
                seq, jpeg = got
                self.wfile.write(_part(jpeg))
                hub.count_served(skipped=seq - last - 1 if last else 0)
                last = seq
        finally:
            hub.client_left()

    def _send_text(self, status: HTTPStatus, text: str, retry_after_s: int = 0) -> None:
        extra = {"Retry-After": str(retry_after_s)} if retry_after_s else {}
        self._send_body(status, "text/plain; charset=utf-8", text.encode(), extra)

    def _send_body(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("MJPEG %s: " + format, self.client_address[0], *args)


def _part(jpeg: bytes) -> bytes:
    # The boundary goes right after the image: browsers show a part only once they see
    # the next boundary, so sending it late would delay every frame by one.
    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
    return b"".join((head, jpeg, f"\r\n--{BOUNDARY}\r\n".encode()))


class MjpegServer:
    """Serves the latest published frame as an MJPEG stream, a snapshot and a web page.

    ``listen`` is "host:port" (port 0 picks a free one; see ``port`` after ``start()``).
    ``counters`` returns a copy of its MjpegCounters for metrics.
    """

    def __init__(
        self,
        listen: str,
        jpeg_quality: int = 80,
        *,
        title: str = "actiond",
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.listen = listen
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise ValueError(f"display.mjpeg_listen: {exc}") from exc
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._addr = host or "0.0.0.0", port, family
        self._hub = FrameHub(jpeg_quality, max_clients)
        self._title = title
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a daemon thread; OSError names the address if binding fails."""
        if self._server is not None or self._hub.closed:
            raise RuntimeError("MjpegServer.start(): already started or stopped; make a new one")
        host, port, family = self._addr
        try:
            self._server = _Server((host, port), family, self._hub, self._title)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"display.mjpeg_listen = {self.listen!r}: cannot listen on {host}:{port} "
                f"({exc.strerror}); choose a free port (0 picks one) or '' to disable",
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SERVE_POLL_S,), name="mjpeg-http", daemon=True
        )
        self._thread.start()
        shown_host = f"[{host}]" if ":" in host else host
        log.info("MJPEG view on http://%s:%d/", shown_host, self.port)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("MjpegServer.port is known only after start()")
        return int(self._server.server_address[1])

    def publish(self, frame_bgr: np.ndarray) -> None:
        """Make ``frame_bgr`` the latest frame; never waits for clients."""
        self._hub.publish(frame_bgr)

    def stop(self) -> None:
        """Stop serving: wake and disconnect clients, close sockets, join the thread."""
        self._hub.close()
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.cut_connections()
        server.server_close()
        thread.join()
        if not server.wait_drained(STOP_DRAIN_S):
            log.warning("MJPEG: some client threads still running %.1f s after stop", STOP_DRAIN_S)
        self._server = self._thread = None

    @property
    def counters(self) -> MjpegCounters:
        """A consistent copy of the counters, for metrics."""
        return self._hub.counters()
