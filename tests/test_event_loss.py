"""The worker -> supervisor event channel under load and failure, on real Unix sockets:
a full queue makes the sender wait (never drop); what can still be lost (send timeout,
supervisor gone, oversized snapshot, a record the outbox cannot take, a malformed
datagram) is counted by reason and exported as a metric."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from metrics_helpers import label_set, parse_samples
from prometheus_client import generate_latest

from daemon.config import Config, MqttConfig
from daemon.events import EventSettings
from daemon.ipc.events_channel import (
    LOST_SEND_TIMEOUT,
    LOST_SUPERVISOR_GONE,
    MAX_DATAGRAM_BYTES,
    SNAPSHOT_TOO_LARGE,
    EventReceiver,
    EventSender,
)
from daemon.ipc.stats import StatsBlock
from daemon.outputs.metrics import MetricsSnapshot, WorkerView, make_registry
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.runner import SinkRunner
from daemon.stages.eventing import EventEmitter, event_send_timeout_s
from daemon.stages.registry import KINDS, stats_fields
from daemon.supervisor.intake import LOST_MALFORMED, LOST_NOT_STORED, UNKNOWN_CAMERA, EventIntake
from daemon.supervisor.metrics_view import intake_losses

pytestmark = pytest.mark.timeout(60)

QUEUE_BURST = 200  # far above net.unix.max_dgram_qlen (10 on Debian)
SHORT_TIMEOUT_S = 0.2
DEADLINE_S = 20.0


def record(i: int, camera: str = "front") -> dict[str, object]:
    return {
        "id": f"e{i}",
        "camera": camera,
        "action": "walk",
        "phase": "start",
        "score_max": 0.9,
        "started_at": "2026-01-01T00:00:00Z",
        "ended_at": None,
    }


@pytest.fixture
def sock_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="actiond-ev-") as tmp:
        yield Path(tmp) / "events.sock"


def test_a_full_queue_makes_the_sender_wait_not_drop(sock_path: Path) -> None:
    receiver = EventReceiver(sock_path)
    sender = EventSender(sock_path)
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.extend(sender.send(record(i)) for i in range(QUEUE_BURST))
    )
    thread.start()
    got: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < QUEUE_BURST and time.monotonic() < deadline:
        got += [str(r["id"]) for r, _ in receiver.receive(limit=3)]  # a slow reader
        time.sleep(0.001)
    thread.join(DEADLINE_S)
    receiver.close()
    sender.close()
    assert results == [True] * QUEUE_BURST
    assert got == [f"e{i}" for i in range(QUEUE_BURST)]
    assert not sender.lost


def test_a_supervisor_that_takes_nothing_times_out_and_is_counted(sock_path: Path) -> None:
    receiver = EventReceiver(sock_path)  # bound, never read
    sender = EventSender(sock_path, SHORT_TIMEOUT_S)
    taken = 0
    while sender.send(record(taken)):
        taken += 1
        assert taken < QUEUE_BURST, "the sender never had to wait"
    started = time.monotonic()
    refused = [sender.send(record(taken + i)) for i in range(2)]
    waited_s = time.monotonic() - started
    receiver.close()
    sender.close()
    assert taken >= 1 and refused == [False, False]
    assert sender.lost == {LOST_SEND_TIMEOUT: 3}
    # Each refused send waited for room for the whole timeout, none returned at once.
    assert waited_s >= 2 * SHORT_TIMEOUT_S * 0.9


def test_a_gone_supervisor_is_counted(sock_path: Path) -> None:
    EventReceiver(sock_path).close()
    sender = EventSender(sock_path, SHORT_TIMEOUT_S)
    assert not sender.send(record(0))
    assert sender.lost == {LOST_SUPERVISOR_GONE: 1}


def test_an_oversized_snapshot_is_left_out_and_counted(sock_path: Path) -> None:
    receiver = EventReceiver(sock_path)
    sender = EventSender(sock_path)
    assert sender.send(record(0), b"\xff" * MAX_DATAGRAM_BYTES)
    assert sender.send(record(1), b"\xff\xd8small")
    (first, snap0), (second, snap1) = receiver.receive()
    receiver.close()
    assert (first["id"], snap0, second["id"], snap1) == ("e0", None, "e1", b"\xff\xd8small")
    assert sender.snapshots_lost == {SNAPSHOT_TOO_LARGE: 1} and not sender.lost


def test_send_timeout_stays_below_the_heartbeat_timeout() -> None:
    assert event_send_timeout_s(10.0) == 2.0
    assert event_send_timeout_s(1.0) < 1.0
    with pytest.raises(ValueError, match="send_timeout_s"):
        EventSender("/nonexistent", 0.0)


def test_overlay_losses_reach_its_stats_block_and_the_scrape(
    sock_path: Path, tmp_path: Path
) -> None:
    shm = tempfile.mkdtemp(prefix="actiond-ev-", dir="/dev/shm")
    block = StatsBlock.create("front.overlay.stats", stats_fields("overlay"), None, shm)
    try:
        settings = EventSettings(start_windows=1, end_windows=1, cooldown_s=0.0)
        emitter = EventEmitter(
            "front", ("walk", "still"), settings, str(sock_path), 80, block, SHORT_TIMEOUT_S
        )  # nobody listens on sock_path
        image = np.zeros((8, 8, 3), np.uint8)
        events = emitter.update(np.array([0.9, 0.1], np.float32), 4, 0, image)
        emitter.close()
        assert [e.phase for e in events] == ["start"]
        view = WorkerView(
            "front.overlay",
            "front",
            "overlay",
            True,
            0,
            block.snapshot(),
            losses=tuple((loss.item, loss.reason, loss.field) for loss in KINDS["overlay"].losses),
        )
    finally:
        block.close(unlink=True)
        Path(shm).rmdir()
    registry, _ = make_registry(lambda: MetricsSnapshot(workers=[view]))
    samples = parse_samples(generate_latest(registry).decode())["actiond_lost_total"]
    # The start, and the end the closing emitter sent for the open event.
    assert (
        samples[
            label_set(camera="front", stage="overlay", item="event", reason=LOST_SUPERVISOR_GONE)
        ]
        == 2.0
    )
    assert (
        samples[label_set(camera="front", stage="overlay", item="event", reason=LOST_SEND_TIMEOUT)]
        == 0.0
    )
    assert (
        samples[
            label_set(camera="front", stage="overlay", item="snapshot", reason=SNAPSHOT_TOO_LARGE)
        ]
        == 0.0
    )


def test_each_blocked_send_starts_with_a_fresh_heartbeat(sock_path: Path) -> None:
    """One overlay step that sends several events into a full queue: the emitter beats
    before each send, so no gap between beats exceeds one send timeout (before, the
    step's sends added up past the heartbeat timeout and the overlay was killed)."""
    receiver = EventReceiver(sock_path)  # bound, never read
    filler = EventSender(sock_path, SHORT_TIMEOUT_S)
    taken = 0
    while filler.send(record(taken)):
        taken += 1
        assert taken < QUEUE_BURST, "the sender never had to wait"
    beats: list[float] = []
    labels = ("walk", "run", "wave")
    settings = EventSettings(start_windows=1, end_windows=1, cooldown_s=0.0)
    emitter = EventEmitter(
        "front",
        labels,
        settings,
        str(sock_path),
        80,
        None,
        SHORT_TIMEOUT_S,
        beat=lambda: beats.append(time.monotonic()),
    )
    image = np.zeros((8, 8, 3), np.uint8)
    try:
        events = emitter.update(np.full(len(labels), 0.9, np.float32), 4, 0, image)
        ended = time.monotonic()
    finally:
        emitter.close()  # ends the three events: three more blocked sends
        filler.close()
        receiver.close()
    assert len(events) == len(labels) and len(beats) >= len(labels)
    marks = [*beats[: len(labels)], ended]
    gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    assert sum(gaps) >= 2 * SHORT_TIMEOUT_S, "the sends did not block"
    assert max(gaps) < 2 * SHORT_TIMEOUT_S, gaps


async def _intake_run(sock_path: Path, sinks: SinkRunner) -> EventIntake:
    intake = EventIntake(EventReceiver(sock_path), sinks, None)
    intake.start()
    sender = EventSender(sock_path)
    sender.send(record(0))
    sender.send(record(1, camera="ghost"))  # a camera not configured
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"\x00\x00\x00\x09not json", str(sock_path))
    sender.close()
    deadline = time.monotonic() + DEADLINE_S
    while intake.received_total < 2 or intake.pending:
        assert time.monotonic() < deadline, "the intake took nothing"
        await asyncio.sleep(0.01)
    await intake.close()
    return intake


def test_the_intake_counts_what_it_cannot_store(sock_path: Path, tmp_path: Path) -> None:
    sinks = SinkRunner(tmp_path, SinkContext("box", ("front",), ("walk",), tmp_path))
    config = Config(mqtt=MqttConfig(enabled=True))
    sinks.swap(sinks.build(config, sinks.context, ["mqtt"]), sinks.context)  # not started
    intake = asyncio.run(_intake_run(sock_path, sinks))
    assert sinks.outbox.depth() == 1
    sinks.close(0.0)
    assert intake.lost == {("ghost", LOST_NOT_STORED): 1, (UNKNOWN_CAMERA, LOST_MALFORMED): 1}
    losses = intake_losses(["front"], intake)
    assert losses[("front", "intake", "event", LOST_NOT_STORED)] == 0.0
    assert losses[("ghost", "intake", "event", LOST_NOT_STORED)] == 1
    samples = parse_samples(
        generate_latest(make_registry(lambda: MetricsSnapshot(losses=losses))[0]).decode()
    )
    assert (
        samples["actiond_lost_total"][
            label_set(camera=UNKNOWN_CAMERA, stage="intake", item="event", reason=LOST_MALFORMED)
        ]
        == 1.0
    )
