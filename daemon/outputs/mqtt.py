"""The MQTT event sink ([mqtt]): events from the durable outbox to a broker, plus the
MQTT-only messages: availability, per-camera state, Home Assistant discovery, stats.

Delivery is at-least-once, never lost: an event reaches `deliver` already stored in the
outbox, pending for this sink; it leaves the sink's queue only in on_publish, i.e. when
the broker's PUBACK for it (and for its snapshot) arrives. Consumers drop duplicates by
the `id` + `phase` in the payload. An event's snapshot, kept with it in the outbox, is
published at QoS 1 right after it on the snapshot topic, so it survives outages exactly
like its event; the event says `has_snapshot` accordingly.

Camera availability (`set_camera_available`, from the supervisor) is retained per camera
and sent again on every (re)connect; until told otherwise a camera is offline.

Connection model (daemon/outputs/mqtt_connection.py): a manager thread owns the broker
connection, with a FRESH paho client each time; when it drops, the client and whatever
paho still held in memory are thrown away, and the next connection publishes every
pending outbox row again, in outbox order.

Locks: `_send_lock` serialises every client.publish() here, so outbox order holds when a
flush after CONNACK races new events. on_publish must not take it (paho holds its
out-message mutex there, which publish() needs): it only touches the mqtt_session.Session.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from daemon import __version__
from daemon.config import MqttConfig
from daemon.outputs.discovery import (
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    CameraStates,
    TopicLayout,
    check_topic_level,
    discovery_messages,
    event_key,
    event_payload,
)
from daemon.outputs.mqtt_connection import RECONNECT_MAX_S, RECONNECT_MIN_S, MqttConnection
from daemon.outputs.mqtt_session import MqttSetupError, Session
from daemon.outputs.outbox import OutboxError, OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, SinkView

log = logging.getLogger(__name__)
paho_log = log.getChild("paho")

STOP_TIMEOUT_S = 5.0
THREAD_JOIN_GRACE_S = 2.0  # paho's loop thread notices termination within ~1 s
FLUSH_BATCH_EVENTS = 500
SINK_NAME = "mqtt"
SNAPSHOT_PART = ":snapshot"  # in-flight key of an event's snapshot message


class MqttPublisher(MqttConnection):
    """The MQTT sink: events (from its outbox queue), availability, state, snapshots and
    stats."""

    name = SINK_NAME

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        cameras: Sequence[str],
        actions: Sequence[str],
        queue: SinkQueue,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        try:
            self._topics = TopicLayout(cfg.prefix, device_id, cfg.discovery_prefix)
            for camera in cameras:
                check_topic_level("camera name", camera)
        except ValueError as exc:
            raise MqttSetupError(str(exc)) from exc
        super().__init__(cfg, self._topics, reconnect_min_s, reconnect_max_s)
        self._cameras = tuple(cameras)
        self._actions = tuple(actions)
        self._queue = queue
        self._states = CameraStates(self._topics, self._cameras)
        self._count_lock = threading.Lock()  # acks come from two threads (see _send)

    def __repr__(self) -> str:
        return (
            f"MqttPublisher(broker={self.broker}, device_id={self._topics.device_id!r}, "
            f"connected={self.connected}, outbox_depth={self.outbox_depth})"
        )

    @property
    def topics(self) -> TopicLayout:
        """The topics this publisher uses."""
        return self._topics

    @property
    def wants_snapshots(self) -> bool:
        return self._cfg.snapshots

    @property
    def published_total(self) -> int:
        """Events acknowledged by the broker (PUBACK) since the outbox was opened."""
        return self._queue.delivered_total

    @property
    def outbox_depth(self) -> int:
        """Events waiting in the outbox for their PUBACK."""
        return self._queue.depth()

    @property
    def outbox_dropped_total(self) -> int:
        """Events dropped unsent because the outbox was full."""
        return self._queue.dropped_total

    @property
    def snapshots_dropped_total(self) -> int:
        """Event snapshots dropped unsent to bound the outbox's size (events are kept)."""
        return self._queue.snapshots_dropped_total

    def view(self) -> SinkView:
        q = self._queue
        return SinkView(
            self.name,
            self.connected,
            q.delivered_total,
            q.depth(),
            q.dropped_total,
            q.snapshots_dropped_total,
        )

    def start(self) -> None:
        """Start the connection thread; returns at once (the broker may be down)."""
        if self._thread is not None:
            raise RuntimeError("MqttPublisher.start() called twice")
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        log.info(
            "MQTT: publishing to %s under %s/ (outbox %s, %d pending)",
            self.broker,
            self._topics.base,
            self._queue.path,
            self.outbox_depth,
        )

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Publish retained offline, wait (bounded) for in-flight PUBACKs, disconnect."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        with self._send_lock:
            session = self._session
            if session is not None and session.connected:
                for topic, payload in self._states.offline():
                    self._send(session, topic, payload, 1, retain=True)
                self._send(session, self._topics.status, PAYLOAD_OFFLINE, 1, retain=True)
        if session is not None:
            if not session.wait_settled(deadline):
                log.warning(
                    "MQTT: stopping with messages still unacknowledged by %s after "
                    "%.1f s; %d events stay in the outbox for the next start",
                    self.broker,
                    timeout_s,
                    self.outbox_depth,
                )
            session.client.disconnect()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + THREAD_JOIN_GRACE_S)
            if self._thread.is_alive():
                log.warning(
                    "MQTT: the connection thread did not stop within %.1f s",
                    timeout_s + THREAD_JOIN_GRACE_S,
                )

    # ---- public publishing API (any thread; never waits for the broker) ----

    def deliver(self, item: OutboxItem) -> None:
        """`item` is in the outbox: update the camera's retained state and, if connected,
        send what is pending (it included)."""
        record = item.record
        with self._send_lock:
            state_topic, state = self._states.event(
                record["camera"], record["action"], record["phase"]
            )
            session = self._live_session_locked()
            if session is not None:
                self._flush_locked(session)
                self._send(session, state_topic, state, 1, retain=True)

    def publish_event(self, event: Mapping[str, Any], snapshot: bytes | None = None) -> None:
        """Store an event for this sink alone, then deliver it: for a publisher used on its
        own (tests, tools); the supervisor stores each event once for every sink."""
        record = event_payload(event, self._topics.device_id, self._cameras)
        item = self._queue.store(event_key(record), record, snapshot)
        if item is None:
            log.debug("MQTT: event %s already in the outbox; not stored twice", event_key(record))
            return
        self.deliver(item)

    def set_camera_available(self, camera: str, available: bool) -> None:
        """Whether the camera's frames flow; published retained when it changes. A camera
        this publisher was not made for (added by a reload) is left to the next one."""
        with self._send_lock:
            changed = self._states.set_available(camera, available)
            session = self._live_session_locked()
            if session is not None:
                for topic, payload in changed:
                    self._send(session, topic, payload, 1, retain=True)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Best effort (QoS 0): the supervisor's stats plus this publisher's counters."""
        body = dict(stats)
        body["mqtt"] = {
            "connected": self.connected,
            "published_total": self.published_total,
            "outbox_depth": self.outbox_depth,
            "outbox_dropped_total": self.outbox_dropped_total,
            "connect_failures_total": self.connect_failures_total,
        }
        self._send_if_connected(self._topics.stats, json.dumps(body, sort_keys=True), 0, False)

    # ---- sending (callers hold _send_lock) ----

    def _send_if_connected(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> None:
        with self._send_lock:
            session = self._live_session_locked()
            if session is not None:
                self._send(session, topic, payload, qos, retain)

    def _send(
        self,
        session: Session,
        topic: str,
        payload: str | bytes,
        qos: int,
        retain: bool,
        key: str | None = None,
    ) -> None:
        info = session.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # The connection is going down; pending events are sent again after reconnect.
            log.debug("MQTT: publish to %s returned %s", topic, info.rc)
        if session.track(info.mid, key, qos):
            self._acked(session, key)

    def _flush_locked(self, session: Session) -> None:
        while True:
            items = self._queue.pending(FLUSH_BATCH_EVENTS, after_seq=session.flushed_seq)
            if not items:
                return
            for item in items:
                self._send_item_locked(session, item)
                session.flushed_seq = item.seq

    def _send_item_locked(self, session: Session, item: OutboxItem) -> None:
        """The event at QoS 1, then its snapshot: acked in the outbox once both are."""
        camera = item.record["camera"]
        snapshot = item.snapshot if self._cfg.snapshots else None
        payload = dict(item.record, has_snapshot=snapshot is not None)
        session.parts[item.seq] = 1 if snapshot is None else 2
        key = str(item.seq)
        self._send(
            session,
            self._topics.event(camera),
            json.dumps(payload, sort_keys=True).encode(),
            1,
            False,
            key,
        )
        if snapshot is not None:
            self._send(
                session, self._topics.snapshot(camera), snapshot, 1, False, key + SNAPSHOT_PART
            )

    def _send_birth_locked(self, session: Session) -> None:
        # The cameras' retained topics first: when `status` says online, they are current.
        for topic, payload in self._states.retained():
            self._send(session, topic, payload, 1, retain=True)
        self._send(session, self._topics.status, PAYLOAD_ONLINE, 1, retain=True)
        if self._cfg.discovery:
            session.client.subscribe(self._topics.ha_status, qos=1)
            self._send_discovery_locked(session)

    def _session_up_locked(self, session: Session) -> None:
        self._send_birth_locked(session)
        self._flush_locked(session)

    def _ha_online_locked(self, session: Session) -> None:
        self._send_discovery_locked(session)

    def _send_discovery_locked(self, session: Session) -> None:
        for topic, payload in discovery_messages(
            self._topics, self._cameras, self._actions, self._cfg.snapshots, __version__
        ):
            self._send(session, topic, payload, 1, retain=True)

    def _acked(self, session: Session, key: str | None) -> None:
        if key is None:
            return
        seq = int(key.removesuffix(SNAPSHOT_PART))
        with self._count_lock:
            left = session.parts.pop(seq, 1) - 1
            if left > 0:
                session.parts[seq] = left  # the event's other message is still in flight
                return
        try:
            self._queue.ack(seq)
        except OutboxError as exc:
            # The row stays and is sent again later: a duplicate, never a loss.
            log.error("MQTT: %s", exc)


def mqtt_sink(cfg: MqttConfig, context: SinkContext, queue: SinkQueue) -> MqttPublisher:
    """The sink table's factory; MqttSetupError when [mqtt] cannot work."""
    return MqttPublisher(cfg, context.device_id, context.cameras, context.actions, queue)
