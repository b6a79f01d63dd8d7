"""The rules between [console] and the other keys, checked at load (check-config too).

- an enabled console needs a listen address;
- off loopback, or behind a proxy (trusted_proxies), it needs a login token from exactly
  one of auth_token_file / auth_token_env (never the command line): check-config refuses
  it otherwise, and a token file whose token is under MIN_TOKEN_CHARS characters;
- its port must not be metrics.listen's nor any camera's derived MJPEG port.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from daemon.config.loader import ConfigError, parse_listen
from daemon.config.schema import Config

_ANY_HOST = ("", "0.0.0.0", "::")
_LOCALHOST = "localhost"
MIN_TOKEN_CHARS = 16  # the console's login token, at the least


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address's host) reaches only this machine."""
    if host == _LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


def token_problem(token: str) -> str | None:
    """Why `token` is too weak to guard the console, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return (
            f"the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} random "
            "ones, e.g. the output of `openssl rand -hex 24`"
        )
    return None


def check_token_file(path: str, file: str) -> None:
    """ConfigError when console.auth_token_file (resolved) cannot be read or is weak."""
    if not path:
        return
    key = "console.auth_token_file"
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, key, f"cannot read {path}: {exc}") from exc
    problem = token_problem(token)
    if problem:
        raise ConfigError(file, key, f"{path}: {problem}")


def public_url_problem(value: str) -> str | None:
    """Why `value` cannot be console.public_url, or None ("" is fine: derived)."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f'must be an http:// or https:// URL with a host, e.g. "https://box.example:8443" (got {value!r})'
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return f"must be a plain base URL, without a user, ?query or #fragment (got {value!r})"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"has a bad port (got {value!r})"
    return None


def trusted_proxies_problem(value: tuple[str, ...]) -> str | None:
    """Why `value` cannot be console.trusted_proxies, or None."""
    for text in value:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f'must be IP addresses or networks, e.g. ["127.0.0.1"] (got {text!r})'
    return None


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
    has_token = bool(console.auth_token_file or console.auth_token_env)
    if console.trusted_proxies and not has_token:
        raise ConfigError(
            file,
            "console.trusted_proxies",
            "is set, so the console is behind a proxy and reachable from other machines: "
            "set console.auth_token_file or console.auth_token_env",
        )
    if not is_loopback(host) and not has_token:
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
