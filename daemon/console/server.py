"""The console's HTTP server: aiohttp on its own event loop in its own thread, so a slow
browser never stalls the supervisor's loop.

`start` returns at once; the thread binds `listen` and, while the address is taken (a
reload's old server still closing, another program), logs one line and retries with
backoff. `close(timeout_s)` stops the live streams, closes the server and joins the
thread within `timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiohttp import web

from daemon.config import parse_listen
from daemon.console.app import Console, make_app

log = logging.getLogger(__name__)

BIND_RETRY_MIN_S = 0.2
BIND_RETRY_MAX_S = 5.0
SHUTDOWN_S = 1.0  # aiohttp's grace for open requests when the server stops
JOIN_GRACE_S = 0.5


class ConsoleServer:
    """One console's server thread (see the module docstring)."""

    def __init__(self, console: Console, listen: str) -> None:
        self.console = console
        self.listen = listen
        self.host, self._port = parse_listen(listen)
        self.port: int | None = None  # the bound port, once bound
        self.bound = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ConsoleServer({self.listen!r}, port={self.port})"

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port or self._port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ConsoleServer.start() called twice")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="console-http", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop, self._stop = loop, asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._serve(self._stop))
        finally:
            loop.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        runner = web.AppRunner(make_app(self.console), access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            if await self._bind(runner, stop):
                await stop.wait()
        finally:
            self.console.stopping.set()
            await runner.cleanup()

    async def _bind(self, runner: web.AppRunner, stop: asyncio.Event) -> bool:
        delay_s, last = BIND_RETRY_MIN_S, ""
        while not stop.is_set():
            site = web.TCPSite(runner, self.host or None, self._port)
            try:
                await site.start()
            except OSError as exc:
                if str(exc) != last:
                    log.error(
                        "console: cannot listen on %s: %s [console.listen; retrying every "
                        "few seconds]",
                        self.listen,
                        exc.strerror or exc,
                    )
                    last = str(exc)
                try:
                    await asyncio.wait_for(stop.wait(), delay_s)
                except TimeoutError:
                    delay_s = min(delay_s * 2.0, BIND_RETRY_MAX_S)
                continue
            self.port = _bound_port(runner, self._port)
            self.bound.set()
            log.info("console on %s/", self.url)
            return True
        return False

    def close(self, timeout_s: float) -> None:
        """Stop serving within `timeout_s` (open streams end; requests get SHUTDOWN_S)."""
        self.console.stopping.set()
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            return  # the loop has ended already
        thread.join(timeout_s + JOIN_GRACE_S)
        if thread.is_alive():
            log.warning("console: the server did not stop within %.1f s", timeout_s)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
