"""The rules between [console] and the other keys, checked at load (check-config too).

- an enabled console needs a listen address;
- off loopback it needs a login token from exactly one of auth_token_file /
  auth_token_env (never the command line): check-config refuses it otherwise;
- its port must not be metrics.listen's nor any camera's derived MJPEG port.
"""

from __future__ import annotations

import ipaddress

from daemon.config.loader import ConfigError, parse_listen
from daemon.config.schema import Config

_ANY_HOST = ("", "0.0.0.0", "::")
_LOCALHOST = "localhost"


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address's host) reaches only this machine."""
    if host == _LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


def check_console(config: Config, file: str) -> None:
    """ConfigError for the first [console] rule the config breaks (module docstring)."""
    console = config.console
    if not console.enabled:
        return
    if not console.listen:
        raise ConfigError(
            file,
            "console.listen",
            'is empty while console.enabled = true; set e.g. "127.0.0.1:8090" or enabled = false',
        )
    if console.auth_token_file and console.auth_token_env:
        raise ConfigError(
            file,
            "console.auth_token_env",
            "set only one of auth_token_file and auth_token_env (both are set)",
        )
    host, port = parse_listen(console.listen)
    if not is_loopback(host) and not (console.auth_token_file or console.auth_token_env):
        raise ConfigError(
            file,
            "console.listen",
            f"{console.listen} is reachable from other machines, so the console needs a "
            "login token: set console.auth_token_file (a file holding it) or "
            "console.auth_token_env (an environment variable holding it), or listen on "
            "127.0.0.1",
        )
    if port:
        _check_ports(config, host, port, file)


def _check_ports(config: Config, host: str, port: int, file: str) -> None:
    taken = []
    if config.metrics.listen:
        taken.append(("metrics.listen", *parse_listen(config.metrics.listen)))
    if config.display.mjpeg_listen:
        mjpeg_host, base = parse_listen(config.display.mjpeg_listen)
        enabled = [cam.name for cam in config.cameras if cam.enabled]
        for index, name in enumerate(enabled):
            if base:
                key = f"display.mjpeg_listen (camera {name}'s derived port {base + index})"
                taken.append((key, mjpeg_host, base + index))
    for key, other_host, other_port in taken:
        same_host = host == other_host or host in _ANY_HOST or other_host in _ANY_HOST
        if same_host and other_port == port:
            raise ConfigError(
                file, "console.listen", f"port {port} is also {key}; give the console its own port"
            )
