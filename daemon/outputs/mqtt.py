"""The MQTT event sink ([mqtt]): events from the durable outbox to a broker, plus the
MQTT-only messages: availability, per-camera state, Home Assistant discovery, stats.

Delivery is at-least-once, never lost: an event reaches `deliver` already stored in the
outbox, pending for this sink; it leaves the sink's queue only in on_publish, i.e. when
the broker's PUBACK for it (and for its snapshot) arrives. Consumers drop duplicates by
the `id` + `phase` in the payload. An event's snapshot, kept with it in the outbox, is
published at QoS 1 right after it on the snapshot topic, so it survives outages exactly
like its event; the event says `has_snapshot` accordingly, and with the console on,
`clip_url` / `snapshot_url` (the console's copies; sinks/protocol.py event_links).

Camera availability (`set_camera_available`, from the supervisor) is retained per camera
and sent again on every (re)connect; until told otherwise a camera is offline.

Connection model (daemon/outputs/mqtt_connection.py): a manager thread owns the broker
connection, with a FRESH paho client each time; when it drops, the client and whatever
paho still held in memory are thrown away, and the next connection publishes every
pending outbox row again, in outbox order.

Threads: the sink's own sender thread does every client.publish() (birth and outbox flush
after CONNACK, events, retained state, stats) under `_send_lock`, so outbox order holds,
and acks PUBACKed events in the outbox together. `deliver` (the intake's writer thread),
`set_camera_available` and `publish_stats` (the loop) only note the work under the short
`_state_lock` (retained topics: the latest payload wins) and wake it: a long flush or a
slow broker stalls neither. on_publish must not take `_send_lock` (paho holds its
out-message mutex there, which publish() needs).
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
    HaDiscovery,
    TopicLayout,
    check_topic_level,
    event_key,
    event_payload,
)
from daemon.outputs.mqtt_connection import RECONNECT_MAX_S, RECONNECT_MIN_S, MqttConnection
from daemon.outputs.mqtt_session import MqttSetupError, Session
from daemon.outputs.outbox import OutboxError, OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, SinkView, event_links

log = logging.getLogger(__name__)
paho_log = log.getChild("paho")

STOP_TIMEOUT_S = 5.0
SEND_RETRY_S = 1.0  # after a flush that could not read the outbox
THREAD_JOIN_GRACE_S = 2.0  # paho's loop thread notices termination within ~1 s
FLUSH_BATCH_EVENTS = 500
SINK_NAME = "mqtt"
SNAPSHOT_PART = ":snapshot"  # in-flight key of an event's snapshot message


class MqttPublisher(MqttConnection):
    """The MQTT sink: events (its outbox queue), availability, state, snapshots, stats."""

    name = SINK_NAME
    console_url = ""  # the base of the clip/snapshot links in events (event_links)

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        cameras: Sequence[str],
        actions: Sequence[str] | Mapping[str, Sequence[str]],  # one list, or per camera
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
        self._discovery = HaDiscovery(self._topics, cameras, actions, cfg.snapshots, __version__)
        self._queue = queue
        self._states = CameraStates(self._topics, self._cameras)
        self._count_lock = threading.Lock()  # acks come from two threads (see _send)
        self._acks_due: list[int] = []  # outbox seqs fully PUBACKed, not yet acked there
        self._state_lock = threading.Lock()  # _states and the work due (never held to send)
        self._retained_due: dict[str, str] = {}  # topic -> latest payload, to send
        self._stats_due: str | None = None
        self._discovery_due = False
        self._born: Session | None = None  # the session that got its birth messages
        self._wake = threading.Event()
        self._closing = threading.Event()  # the sender's last pass, then it ends
        self._sender: threading.Thread | None = None

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
        counts = (q.delivered_total, q.depth(), q.dropped_total, q.snapshots_dropped_total)
        return SinkView(self.name, self.connected, *counts)

    def start(self) -> None:
        """Start the connection thread; returns at once (the broker may be down)."""
        if self._thread is not None:
            raise RuntimeError("MqttPublisher.start() called twice")
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._sender.start()
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
        self._closing.set()  # the sender sends what is due, once more, then ends
        self._wake.set()
        if self._sender is not None:
            self._sender.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()  # a sender still flushing stops after its current row
        session = self._say_offline(deadline)
        if session is not None:
            settled = session.wait_settled(deadline)
            self._ack_due()  # the PUBACKs that came after the sender's last pass
            if not settled:
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

    def _say_offline(self, deadline: float) -> Session | None:
        """Retained offline for every camera and the device (a clean stop); the session."""
        if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            log.warning("MQTT: the sender is stuck; stopping without saying offline")
            return self._session
        try:
            session = self._session
            if session is not None and session.connected:
                with self._state_lock:
                    offline = self._states.offline()
                for topic, payload in offline:
                    self._send(session, topic, payload, 1, retain=True)
                self._send(session, self._topics.status, PAYLOAD_OFFLINE, 1, retain=True)
            return session
        finally:
            self._send_lock.release()

    # ---- public publishing API (any thread; never waits: the sender thread sends) ----

    def deliver(self, item: OutboxItem) -> None:
        """`item` is in the outbox: the sender sends what is pending, then the new state."""
        record = item.record
        with self._state_lock:
            topic, state = self._states.event(record["camera"], record["action"], record["phase"])
            self._retained_due[topic] = state
        self._wake.set()

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
        with self._state_lock:
            changed = self._states.set_available(camera, available)
            self._retained_due.update(changed)
        if changed:
            self._wake.set()

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
        if not self.connected:
            return  # best effort: stats are not kept for a later connection
        with self._state_lock:
            self._stats_due = json.dumps(body, sort_keys=True)
        self._wake.set()

    # ---- the sender thread (sends under _send_lock) ----

    def _run_sender(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            closing = self._closing.is_set()
            self._ack_due()
            if self._stopping.is_set():
                return
            try:
                with self._send_lock:
                    session = self._live_session_locked()
                    if session is not None:
                        self._send_due_locked(session)
            except OutboxError as exc:
                log.error("MQTT: %s [retrying in %.0f s]", exc, SEND_RETRY_S)
                if closing or self._stopping.wait(SEND_RETRY_S):
                    return
                self._wake.set()
            if closing:
                return

    def _send_due_locked(self, session: Session) -> None:
        """Birth (a new connection), the rows not yet sent on it, then state and stats."""
        if self._born is not session:
            with self._state_lock:
                retained = self._states.retained()
                self._retained_due.clear()
                self._discovery_due = False
            self._send_birth_locked(session, retained)
            self._born = session
        with self._state_lock:
            discovery, self._discovery_due = self._discovery_due, False
        if discovery:
            self._send_discovery_locked(session, birth=False)
        self._flush_locked(session)
        with self._state_lock:
            retained, self._retained_due = list(self._retained_due.items()), {}
            stats, self._stats_due = self._stats_due, None
        for topic, payload in retained:
            self._send(session, topic, payload, 1, retain=True)
        if stats is not None:
            self._send(session, self._topics.stats, stats, 0, False)

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
                if self._stopping.is_set():
                    return  # the rest stays pending for the next start
                self._send_item_locked(session, item)
                session.flushed_seq = item.seq

    def _send_item_locked(self, session: Session, item: OutboxItem) -> None:
        """The event at QoS 1, then its snapshot: acked in the outbox once both are."""
        camera = item.record["camera"]
        snapshot = item.snapshot if self._cfg.snapshots else None
        links = event_links(item.record, self.console_url)  # the console's copy
        payload = dict(item.record, has_snapshot=snapshot is not None, **links)
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

    def _send_birth_locked(self, session: Session, retained: list[tuple[str, str]]) -> None:
        # The cameras' retained topics first: when `status` says online, they are current.
        for topic, payload in retained:
            self._send(session, topic, payload, 1, retain=True)
        self._send(session, self._topics.status, PAYLOAD_ONLINE, 1, retain=True)
        if self._cfg.discovery:
            session.client.subscribe(self._topics.ha_status, qos=1)
            self._send_discovery_locked(session, birth=True)

    def _session_up(self, session: Session) -> None:
        self._wake.set()  # the sender sends the birth messages, then the outbox

    def _ha_online(self, session: Session) -> None:
        with self._state_lock:
            self._discovery_due = True
        self._wake.set()

    def _send_discovery_locked(self, session: Session, birth: bool) -> None:
        for topic, payload in self._discovery.messages(birth):
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
            self._acks_due.append(seq)
        self._wake.set()  # the sender acks them together: one outbox transaction

    def _ack_due(self) -> None:
        """Ack in the outbox, at once, every event whose PUBACKs came (sender or close)."""
        with self._count_lock:
            seqs, self._acks_due = self._acks_due, []
        if not seqs:
            return
        try:
            self._queue.ack(*seqs)
        except OutboxError as exc:
            # The rows stay and are sent again later: duplicates, never a loss.
            log.error("MQTT: %s", exc)


def mqtt_sink(cfg: MqttConfig, context: SinkContext, queue: SinkQueue) -> MqttPublisher:
    """The sink table's factory; MqttSetupError when [mqtt] cannot work."""
    sink = MqttPublisher(cfg, context.device_id, context.cameras, context.by_camera, queue)
    sink.console_url = context.console_url
    return sink
