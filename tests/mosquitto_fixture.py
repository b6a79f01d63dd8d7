"""pytest fixtures for a real mosquitto broker, and a collecting MQTT test client.

Register in conftest.py with `pytest_plugins = ["mosquitto_fixture"]` (or import the
names). `mosquitto` yields a started anonymous broker on a free 127.0.0.1 port;
`mosquitto_auth` one that needs AUTH_USER / AUTH_PASSWORD (a password_file made by
mosquitto_passwd); `mqtt_collector` is a factory of `MqttCollector` clients that are
closed at teardown. Brokers can be stop()ped and start()ed again on the same port.
`mosquitto_persistent` keeps sessions over a restart (persistence on);
`mosquitto_tls` serves TLS only, with a server certificate for 127.0.0.1 from a test CA
(`broker.ca_file`), made with the openssl CLI. Needs the Debian packages `mosquitto` and
`openssl`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CERT_DAYS = 2
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05
WAIT_TIMEOUT_S = 10.0
AUTH_USER = "actiond"
AUTH_PASSWORD = "correct-horse-battery"

MISSING_TOOLS = tuple(
    tool for tool in (MOSQUITTO, MOSQUITTO_PASSWD, OPENSSL) if not os.access(tool, os.X_OK)
)
MISSING_REASON = (
    f"needs {', '.join(MISSING_TOOLS)}: apt-get install mosquitto openssl" if MISSING_TOOLS else ""
)
require_mosquitto = pytest.mark.skipif(bool(MISSING_TOOLS), reason=MISSING_REASON)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def _openssl(*args: str) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=STOP_TIMEOUT_S)


def make_test_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, valid CERT_DAYS): (certificate, key) paths."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        str(CERT_DAYS),
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path], host: str) -> tuple[Path, Path]:
    """A server certificate for IP `host` signed by `ca`: (certificate, key) paths."""
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={host}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        str(CERT_DAYS),
        "-extfile",
        str(extensions),
    )
    return cert, key


def free_port() -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    """A mosquitto subprocess with a generated config; stop()/start() keep the port."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        persistence: bool = False,
        tls: bool = False,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.users = dict(users or {})
        self.persistence = persistence
        self.tls = tls
        self.ca_file: Path | None = None  # set when tls: the CA that signed the server
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            *self._tls_lines(),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to user "mosquitto", who cannot read tmp_path.
            lines.append("user root")
        if self.users:
            password_file = self.workdir / "passwd"
            password_file.touch(mode=0o600)
            for user, password in self.users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                    timeout=STOP_TIMEOUT_S,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        else:
            lines.append("persistence false")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _tls_lines(self) -> list[str]:
        if not self.tls:
            return []
        ca = make_test_ca(self.workdir, "actiond-test-ca")
        cert, key = make_server_cert(self.workdir, ca, self.host)
        self.ca_file = ca[0]
        return [f"cafile {ca[0]}", f"certfile {cert}", f"keyfile {key}"]

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """Everything the broker logged so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"mosquitto already running (pid {self.process.pid})")
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)], stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=POLL_S).close()
                return
            except OSError:
                pass
            try:
                code = self.process.wait(POLL_S)  # doubles as the pause between polls
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"mosquitto exited with {code} at start; log:\n{self.log_text()}")
        self.stop()
        raise RuntimeError(
            f"mosquitto did not listen on {self.host}:{self.port} within "
            f"{timeout_s} s; log:\n{self.log_text()}"
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (SIGKILL after timeout_s) and reap; a no-op when not running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        self.process = None


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttCollector:
    """A paho client that subscribes to `topics` and records every message it receives."""

    def __init__(
        self,
        port: int,
        topics: Sequence[str],
        *,
        client_id: str = "",
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.topics = tuple(topics)
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed_count = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=clean_session,
        )
        if username:
            self.client.username_pw_set(username, password)
        # Fast reconnects (paho takes whole seconds): tests restart the broker and wait for
        # this client to come back.
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(HOST, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        for topic in self.topics:
            client.subscribe(topic, qos=1)

    def _on_subscribe(
        self, client: paho.Client, userdata: object, mid: int, reasons: object, properties: object
    ) -> None:
        with self._cond:
            self._subscribed_count += 1
            self._cond.notify_all()

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(
                Received(message.topic, bytes(message.payload), message.qos, bool(message.retain))
            )
            self._cond.notify_all()

    def wait_subscribed(self, count: int | None = None, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Wait for `count` SUBACKs in total (default: one per topic, the first connect)."""
        wanted = len(self.topics) if count is None else count
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed_count >= wanted, timeout_s):
                raise AssertionError(
                    f"collector got {self._subscribed_count} SUBACKs, "
                    f"wanted {wanted} within {timeout_s} s"
                )

    @property
    def subscribed_count(self) -> int:
        """SUBACKs received so far (grows by len(topics) per (re)connect)."""
        with self._cond:
            return self._subscribed_count

    def messages(self, topic: str | None = None) -> list[Received]:
        """A copy of the messages so far, optionally only those on `topic`."""
        with self._cond:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        what: str,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> list[Received]:
        """Wait until predicate(messages) holds; AssertionError naming `what` on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self._messages)), timeout_s):
                seen = [(m.topic, m.payload[:80]) for m in self._messages]
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; received: {seen}"
                )
            return list(self._messages)

    def wait_message(
        self, topic: str, payload: bytes | None = None, timeout_s: float = WAIT_TIMEOUT_S
    ) -> Received:
        """The first message on `topic` (with `payload`, if given)."""

        def match(m: Received) -> bool:
            return m.topic == topic and (payload is None or m.payload == payload)

        found = self.wait_for(
            lambda ms: any(match(m) for m in ms), f"{topic} = {payload!r}", timeout_s
        )
        return next(m for m in found if match(m))

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> None:
        """Publish and wait until it is sent (QoS 1: acknowledged)."""
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout_s)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def _started(broker: MosquittoBroker) -> Iterator[MosquittoBroker]:
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A started anonymous broker on 127.0.0.1:<free port>, persistence off."""
    if MISSING_TOOLS:
        pytest.skip(MISSING_REASON)
    yield from _started(MosquittoBroker(tmp_path / "mosquitto"))


@pytest.fixture
def mosquitto_auth(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A started broker that only lets AUTH_USER in with AUTH_PASSWORD."""
    if MISSING_TOOLS:
        pytest.skip(MISSING_REASON)
    yield from _started(
        MosquittoBroker(tmp_path / "mosquitto-auth", users={AUTH_USER: AUTH_PASSWORD})
    )


@pytest.fixture
def mosquitto_persistent(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Like `mosquitto`, but sessions and retained messages survive stop()/start()."""
    if MISSING_TOOLS:
        pytest.skip(MISSING_REASON)
    yield from _started(MosquittoBroker(tmp_path / "mosquitto-persistent", persistence=True))


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A started anonymous broker that speaks TLS only; trust `broker.ca_file`."""
    if MISSING_TOOLS:
        pytest.skip(MISSING_REASON)
    yield from _started(MosquittoBroker(tmp_path / "mosquitto-tls", tls=True))


@pytest.fixture
def mqtt_collector() -> Iterator[Callable[..., MqttCollector]]:
    """Factory: mqtt_collector(port, topics, **kwargs) -> a subscribed MqttCollector."""
    made: list[MqttCollector] = []

    def make(port: int, topics: Sequence[str], **kwargs: object) -> MqttCollector:
        collector = MqttCollector(port, topics, **kwargs)  # type: ignore[arg-type]
        made.append(collector)
        collector.wait_subscribed()
        return collector

    yield make
    for collector in made:
        collector.close()
