"""The MQTT broker connection under the MQTT sink (daemon/outputs/mqtt.py): a manager
thread that connects with a FRESH paho client each time (reconnect_on_failure=False),
capped exponential backoff with jitter, and paho's callbacks.

Doing the reconnect ourselves gives the OSError of a failed connect, so the log can say
*why* (refused, DNS, TLS, timeout), which paho's own reconnect loop swallows. What a
connection carries is the subclass's: `_session_up` (a new connection: birth messages and
the outbox flush are due), `_acked` (a PUBACK for a tracked message), `_ha_online`
(Home Assistant restarted) and `outbox_depth` (for the log lines). The hooks run on
paho's thread and must not send: they hand the work to the subclass's sender thread.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from daemon.config import MqttConfig
from daemon.outputs.discovery import PAYLOAD_OFFLINE, TopicLayout
from daemon.outputs.mqtt_session import (
    FailureLog,
    Session,
    describe_connect_error,
    describe_refusal,
    disconnect_reason,
    guarded,
    resolve_password,
    tls_context,
)

log = logging.getLogger("daemon.outputs.mqtt")
paho_log = log.getChild("paho")

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
RECONNECT_JITTER_FRACTION = 0.2  # spreads the reconnects of many boxes after a broker restart
CONNECT_TIMEOUT_S = 10.0


class MqttConnection:
    """One broker connection at a time, re-made until close; subclasses send on it."""

    def __init__(
        self, cfg: MqttConfig, topics: TopicLayout, reconnect_min_s: float, reconnect_max_s: float
    ) -> None:
        self._cfg = cfg
        self._topics = topics
        self._password = resolve_password(cfg)
        self._tls = tls_context(cfg)
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._send_lock = threading.Lock()
        self._connected_cond = threading.Condition(self._send_lock)
        self._stopping = threading.Event()
        self._session: Session | None = None
        self._thread: threading.Thread | None = None
        self._failures = FailureLog(log, self.broker, reconnect_max_s)

    # ---- what the subclass provides ----

    @property
    def outbox_depth(self) -> int:
        raise NotImplementedError

    def _session_up(self, session: Session) -> None:
        raise NotImplementedError

    def _acked(self, session: Session, key: str | None) -> None:
        raise NotImplementedError

    def _ha_online(self, session: Session) -> None:
        raise NotImplementedError

    def _live_session_locked(self) -> Session | None:
        session = self._session
        if session is None or not session.connected or self._stopping.is_set():
            return None
        return session

    @property
    def broker(self) -> str:
        """host:port of the broker, as used in log lines."""
        return f"{self._cfg.host}:{self._cfg.port}"

    @property
    def connected(self) -> bool:
        """True while a connection is up (CONNACK accepted, not yet lost)."""
        session = self._session
        return session is not None and session.connected

    @property
    def connect_failures_total(self) -> int:
        """Failed connection attempts (network errors and CONNACK refusals) since start."""
        return self._failures.total

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or timeout; for start-up checks and tests."""
        with self._connected_cond:
            return self._connected_cond.wait_for(lambda: self.connected, timeout_s)

    # ---- connection management (manager thread) ----

    def _run(self) -> None:
        delay_s = self._reconnect_min_s
        while not self._stopping.is_set():
            session = self._open_session()
            if session is not None:
                was_connected = self._run_session(session)
                if was_connected:
                    delay_s = self._reconnect_min_s
            if self._stopping.is_set():
                return
            jitter = 1.0 + random.uniform(-RECONNECT_JITTER_FRACTION, RECONNECT_JITTER_FRACTION)
            self._stopping.wait(delay_s * jitter)
            delay_s = min(delay_s * 2.0, self._reconnect_max_s)

    def _new_client(self) -> paho.Client:
        # reconnect_on_failure=False: the loop thread ends with the connection; _run()
        # reconnects with a fresh client.
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"actiond-{self._topics.device_id}",
            clean_session=True,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.suppress_exceptions = True  # a callback bug must not kill the loop thread
        client.on_log = self._on_log
        if self._cfg.username:
            client.username_pw_set(self._cfg.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.will_set(self._topics.status, PAYLOAD_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _open_session(self) -> Session | None:
        client = self._new_client()
        session = Session(client)
        client.user_data_set(session)
        try:
            client.connect(self._cfg.host, self._cfg.port, self._cfg.keepalive_s)
        except OSError as exc:
            self._report_failure(describe_connect_error(exc, CONNECT_TIMEOUT_S))
            return None
        with self._send_lock:
            self._session = session
        client.loop_start()
        if self._stopping.is_set():  # stop() may have looked before _session was set
            client.disconnect()
        return session

    def _run_session(self, session: Session) -> bool:
        session.closed.wait()
        session.client.loop_stop()
        with self._send_lock:
            self._session = None
        return session.ever_connected

    def _report_failure(self, reason: str) -> None:
        self._failures.report(reason, self.outbox_depth)

    # ---- paho callbacks (paho's loop thread; userdata is the Session) ----

    @guarded
    def _on_connect(
        self, client: paho.Client, session: Session, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            session.refused = True
            self._report_failure(describe_refusal(reason))
            return
        log.info("MQTT: connected to %s; %d pending events to send", self.broker, self.outbox_depth)
        self._failures.reset()
        with self._send_lock:
            session.connected = session.ever_connected = True
            self._connected_cond.notify_all()
        self._session_up(session)

    @guarded
    def _on_disconnect(
        self, client: paho.Client, session: Session, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        try:
            if session.connected and not self._stopping.is_set():
                log.warning(
                    "MQTT: lost the connection to %s (%s); reconnecting, events are "
                    "kept in the outbox",
                    self.broker,
                    disconnect_reason(reason),
                )
            elif not (session.refused or self._stopping.is_set()):
                self._report_failure(
                    f"the connection closed before the broker accepted it "
                    f"({disconnect_reason(reason)}): is this an MQTT port, "
                    f"and does it expect TLS (mqtt.tls)?"
                )
        finally:
            session.close()  # the manager thread waits for this, whatever happened above

    @guarded
    def _on_publish(
        self, client: paho.Client, session: Session, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        known, key = session.settle(mid)
        if known:
            self._acked(session, key)

    @guarded
    def _on_message(self, client: paho.Client, session: Session, message: paho.MQTTMessage) -> None:
        if message.topic == self._topics.ha_status and message.payload == b"online":
            log.info("MQTT: Home Assistant came online; sending discovery again")
            self._ha_online(session)

    def _on_log(self, client: paho.Client, session: Session, level: int, text: str) -> None:
        # All of paho's own log goes to DEBUG: the failures that matter are reported above
        # with their reason and advice, and paho 2.2 logs a spurious ERROR ("Client is not
        # connected") at every clean disconnect.
        paho_log.debug("%s", text)
