"""One MQTT broker connection: credentials, TLS, failure diagnosis, in-flight table.

Split out of mqtt.py (the publisher) to keep modules small. `Session` pairs a paho client
with the message ids it has in flight. paho may run on_publish (PUBACK) before publish()
has even returned the mid to us, so a mid that is acknowledged before it is tracked is
parked as an "early ack" and claimed by track(). The lock here is never held across a paho
call: paho calls on_publish holding its own out-message mutex, which publish() also needs.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from daemon.config import MqttConfig

log = logging.getLogger(__name__)

FAILURE_LOG_REPEAT_S = 300.0  # the same failure is logged at WARNING again this often

_REFUSAL_ADVICE = MappingProxyType(
    {
        "Bad user name or password": "check mqtt.username and mqtt.password/password_file/"
        "password_env",
        "Not authorized": "check mqtt.username and mqtt.password/password_file/password_env, "
        "and the broker's ACL",
        "Client identifier not valid": "the broker rejected the client id: check daemon.device_id",
        "Unsupported protocol version": "the broker does not speak MQTT 3.1.1",
        "Server unavailable": "the broker is not ready yet",
    }
)


class MqttSetupError(ValueError):
    """The [mqtt] settings cannot work (credentials or CA file missing, bad names)."""


def resolve_password(cfg: MqttConfig) -> str | None:
    """The broker password from exactly one of password / password_file / password_env."""
    given = [
        name
        for name, value in (
            ("mqtt.password", cfg.password),
            ("mqtt.password_file", cfg.password_file),
            ("mqtt.password_env", cfg.password_env),
        )
        if value
    ]
    if len(given) > 1:
        raise MqttSetupError(f"set only one of {', '.join(given)}")
    if given and not cfg.username:
        raise MqttSetupError(
            f"{given[0]} is set but mqtt.username is empty; MQTT 3.1.1 "
            f"sends a password only together with a user name"
        )
    if cfg.password_file:
        try:
            return Path(cfg.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise MqttSetupError(
                f"cannot read mqtt.password_file {cfg.password_file}: {exc.strerror}"
            ) from exc
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise MqttSetupError(
                f"mqtt.password_env names {cfg.password_env}, which is not "
                f"set in the environment (systemd: Environment= or "
                f"EnvironmentFile= in the unit)"
            )
        return value
    return cfg.password or None


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for mqtt.tls (ca_file, else the system CAs); None without TLS."""
    if not cfg.tls:
        return None
    try:
        return ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttSetupError(f"cannot load mqtt.ca_file {cfg.ca_file!r}: {exc}") from exc


def describe_connect_error(exc: OSError, timeout_s: float) -> str:
    """Why a TCP/TLS connect failed, and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed ({exc.verify_message}): check "
            f"mqtt.ca_file and that mqtt.host matches the broker's certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc}): check mqtt.tls and that this port speaks TLS"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the broker running and listening on this port?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror}): check mqtt.host"
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout_s:.0f} s: broker down, wrong mqtt.host, or a "
            f"firewall drops the packets"
        )
    return f"cannot connect ({exc}): check mqtt.host, mqtt.port and the network"


def describe_refusal(reason: ReasonCode) -> str:
    """A CONNACK refusal in words, with what to check."""
    name = reason.getName()
    advice = _REFUSAL_ADVICE.get(name, "see the broker's log")
    return f"the broker refused the connection ({name}): {advice}"


def guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """Log, with traceback, an exception escaping a paho callback before paho sees it.

    paho (suppress_exceptions=True) then carries on; its own note of it goes to DEBUG.
    """

    @functools.wraps(callback)
    def wrapper(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception(
                "MQTT: unexpected error in %s; the connection carries on", callback.__name__
            )
            raise

    return wrapper


def disconnect_reason(reason: ReasonCode) -> str:
    """Why a connection dropped, in words."""
    # MQTT 3.1.1 has no reason codes for a dropped connection: paho says "Unspecified error".
    name = reason.getName()
    return "connection closed" if name == "Unspecified error" else name


class FailureLog:
    """Counts failed connection attempts; logs each new reason at WARNING, and the same
    reason again only every FAILURE_LOG_REPEAT_S (a broker down for hours must not fill
    the journal), else at DEBUG."""

    def __init__(self, logger: logging.Logger, broker: str, max_backoff_s: float) -> None:
        self._log, self._broker, self._max_backoff_s = logger, broker, max_backoff_s
        self.total = 0
        self._last = ("", 0.0)

    def report(self, reason: str, outbox_depth: int) -> None:
        self.total += 1
        now = time.monotonic()
        last_reason, last_time = self._last
        if reason != last_reason or now - last_time >= FAILURE_LOG_REPEAT_S:
            self._log.warning(
                "MQTT broker %s: %s [retrying with backoff up to %g s; %d events "
                "kept in the outbox]",
                self._broker,
                reason,
                self._max_backoff_s,
                outbox_depth,
            )
            self._last = (reason, now)
        else:
            self._log.debug("MQTT broker %s: %s (attempt %d)", self._broker, reason, self.total)

    def reset(self) -> None:
        """Connected: the next failure is news again."""
        self._last = ("", 0.0)


class Session:
    """One broker connection: its paho client and the message ids it has in flight."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.connected = False
        self.ever_connected = False
        self.refused = False  # CONNACK refused: already reported
        self.flushed_seq = 0  # outbox rows up to this seq went to this client
        self.parts: dict[int, int] = {}  # outbox seq -> its messages awaiting PUBACK
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._inflight: dict[int, tuple[str | None, int]] = {}
        self._early_acks: set[int] = set()
        self._acks_due = 0

    def track(self, mid: int, key: str | None, qos: int) -> bool:
        """Remember a publish; True when its on_publish already ran (publish() races it)."""
        with self._cond:
            if mid in self._early_acks:
                self._early_acks.discard(mid)
                return True
            self._inflight[mid] = (key, qos)
            if qos > 0:
                self._acks_due += 1
            return False

    def settle(self, mid: int) -> tuple[bool, str | None]:
        """on_publish for `mid`: (known, outbox key); unknown mids wait for track()."""
        with self._cond:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                self._early_acks.add(mid)
                return False, None
            if entry[1] > 0:
                self._acks_due -= 1
                self._cond.notify_all()
            return True, entry[0]

    def close(self) -> None:
        """The connection ended (paho's on_disconnect): wake every waiter."""
        with self._cond:
            self.connected = False
            self.closed.set()
            self._cond.notify_all()

    def wait_settled(self, deadline: float) -> bool:
        """Wait until no QoS>0 message awaits its PUBACK, the connection ends, or deadline."""
        with self._cond:
            while self._acks_due > 0 and not self.closed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self._acks_due == 0
