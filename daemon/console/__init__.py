"""The web console: one HTTP server per daemon, in the supervisor (cameras live, the
event history with snapshots and clips, a JSON API, login). It imports only `config` and
`ipc`; the console event sink (daemon/outputs/sinks/console.py) feeds and runs it."""

from daemon.console.app import Console, event_view, make_app
from daemon.console.auth import Auth, FailureLimiter, TokenError, read_token
from daemon.console.cameras import CameraBoard
from daemon.console.clips import CLIPS_DIRNAME, clip_path
from daemon.console.guard import proxy_networks
from daemon.console.history import HISTORY_FILENAME, History, HistoryError, Query, Retention
from daemon.console.live import LiveImages
from daemon.console.server import ConsoleServer

__all__ = [
    "CLIPS_DIRNAME",
    "HISTORY_FILENAME",
    "Auth",
    "CameraBoard",
    "Console",
    "ConsoleServer",
    "FailureLimiter",
    "History",
    "HistoryError",
    "LiveImages",
    "Query",
    "Retention",
    "TokenError",
    "clip_path",
    "event_view",
    "make_app",
    "proxy_networks",
    "read_token",
]
