"""Fault injection against one running daemon: real broker, real RTSP camera, real signals.

One daemon runs a file camera (a clip that alternates dark and bright, so the brightness
model makes events) and an RTSP camera, with two infer replicas and MQTT on. Then:
random SIGKILLs of every worker kind, each measured until the worker is back and the
pipeline shows frames again; the RTSP server killed and restarted; the broker killed and
restarted; finally SIGTERM within the shutdown budget and an empty shm directory.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_proc import Daemon, FrameLogTail, wait_for
from models import brightness_model
from mosquitto_fixture import MosquittoBroker, MqttCollector
from rtsp_fixture import RtspServer
from test_daemon_mqtt import light_switch_clip

from daemon.exitcodes import ExitCode
from daemon.supervisor.app import SHUTDOWN_BUDGET_S

pytestmark = pytest.mark.faults

DEVICE = "faultbox"
FILE_CAM, RTSP_CAM = "hall", "door"
START_S = 90.0  # 8 workers importing cv2 + onnxruntime on 2 shared cores
# Kill -> new pid with a fresh heartbeat -> that worker's output moving again -> the
# camera shows a frame captured after the restart. The issue asks for 5 s.
RECOVERY_BOUND_S = 5.0
# All 8 workers killed at once re-import cv2 and onnxruntime together on 2 shared cores:
# 3.1-3.7 s measured here (one busy core beside); the 5 s is per kill.
ALL_AT_ONCE_BOUND_S = 10.0
KILL_ROUNDS = 2  # every worker killed this often, plus EXTRA_KILLS at random
EXTRA_KILLS = 4
MAX_GAP_S = 0.8  # random pause between two kills
OUTAGE_S = 30.0  # RTSP / broker outage handling: notice, reconnect, deliver
SEED = int(os.environ.get("ACTIOND_FAULT_SEED", time.time_ns() % 2**32))
WORKERS = [f"{c}.{k}" for c in (FILE_CAM, RTSP_CAM) for k in ("source", "motion", "overlay")]
WORKERS += ["infer.0", "infer.1"]


@dataclass
class Rig:
    """The daemon under test and its peers."""

    daemon: Daemon
    broker: MosquittoBroker
    rtsp: RtspServer
    collector: MqttCollector
    tail: FrameLogTail

    def event_ids(self) -> set[str]:
        topic = f"actiond/{DEVICE}/{FILE_CAM}/event"
        return {json.loads(m.payload)["id"] for m in self.collector.messages(topic)}


def fault_daemon(tmp: Path, broker: MosquittoBroker, rtsp: RtspServer) -> Daemon:
    model = brightness_model(tmp / "brightness.onnx")
    clip = light_switch_clip(tmp / "lights.mp4")
    cameras = [
        {
            "name": FILE_CAM,
            "source": str(clip),
            "width": 64,
            "height": 48,
            "realtime": True,
            "loop": True,
            "fps": 15,
        },
        {
            "name": RTSP_CAM,
            "source": rtsp.url,
            "width": 64,
            "height": 48,
            "fps": 10,
            "open_timeout_s": 3.0,
            "read_timeout_s": 2.0,
            "reconnect_backoff_min_s": 0.1,
            "reconnect_backoff_max_s": 0.5,
        },
    ]
    sections: dict[str, dict[str, object]] = {
        # Restarts as fast as the supervisor allows, and a crash budget this test never
        # exhausts: it kills on purpose, and no camera may be marked failed for it.
        "daemon": {
            "device_id": DEVICE,
            "restart_backoff_min_s": 0.05,
            "restart_backoff_max_s": 0.2,
            "stable_after_s": 1.0,
            "crash_budget": 1000,
            "crash_window_s": 60.0,
            "heartbeat_timeout_s": 10.0,
        },
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(model), "stride": 2, "replicas": 2},
        "events": {"ignore": ["dark"], "start_windows": 2, "end_windows": 2, "cooldown_s": 0.0},
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": 2,
            "discovery": False,
            "snapshots": False,
        },
    }
    return Daemon(tmp, cameras, sections)


@pytest.fixture
def rig(
    tmp_path: Path,
    mosquitto_persistent: MosquittoBroker,
    rtsp_server: RtspServer,
    mqtt_collector: Callable[..., MqttCollector],
) -> Iterator[Rig]:
    # A persistent session: the broker keeps our QoS 1 messages across its own restart.
    collector = mqtt_collector(
        mosquitto_persistent.port,
        [f"actiond/{DEVICE}/#"],
        client_id="fault-watcher",
        clean_session=False,
    )
    # A clean stop writes the broker's persistence file, so our session (subscription)
    # survives the SIGKILL later: the restarted broker queues events for us even if the
    # daemon reconnects before we do.
    mosquitto_persistent.stop()
    mosquitto_persistent.start()
    d = fault_daemon(tmp_path, mosquitto_persistent, rtsp_server)
    try:
        d.start()
        yield Rig(d, mosquitto_persistent, rtsp_server, collector, FrameLogTail(d.frame_log))
    finally:
        d.cleanup()


def beat_after(d: Daemon, worker: str, since: float) -> bool:
    """The worker in the slot now beat after `since` (CLOCK_MONOTONIC is system-wide)."""
    return d.stats(worker).get("heartbeat_monotonic_s", 0.0) > since


def cameras_of(worker: str) -> list[str]:
    camera = worker.split(".")[0]
    return [camera] if camera in (FILE_CAM, RTSP_CAM) else [FILE_CAM, RTSP_CAM]


def kill_and_measure(rig: Rig, worker: str) -> float:
    """SIGKILL `worker`; seconds until it and its camera(s) are back."""
    d = rig.daemon
    old = d.worker_pid(worker)
    assert old > 0, f"{worker} has no pid in its stats block"
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: d.worker_pid(worker) not in (0, old) and beat_after(d, worker, killed_at),
        RECOVERY_BOUND_S * 4,
        f"{worker} to be restarted after SIGKILL",
    )
    # Measured from here on: the old process is reaped (the new one was spawned after).
    out = d.stats(worker)["frames_out_total"]
    marks = {c: int(d.stats(f"{c}.source")["last_frame_id"]) for c in cameras_of(worker)}
    wait_for(
        lambda: d.stats(worker)["frames_out_total"] > out,
        RECOVERY_BOUND_S * 4,
        f"the new {worker} to produce output",
    )
    # A frame captured after the restart went all the way to the overlay's frame log.
    wait_for(
        lambda: all(rig.tail.shown_after(c, m) for c, m in marks.items()),
        RECOVERY_BOUND_S * 4,
        f"frames shown after killing {worker}",
    )
    return time.monotonic() - killed_at


def kill_plan(rng: random.Random) -> list[str]:
    plan = WORKERS * KILL_ROUNDS + rng.choices(WORKERS, k=EXTRA_KILLS)
    rng.shuffle(plan)
    return plan


def random_kills(rig: Rig, expected_shm: list[str]) -> dict[str, list[float]]:
    rng = random.Random(SEED)
    took: dict[str, list[float]] = {}
    for worker in kill_plan(rng):
        took.setdefault(worker, []).append(kill_and_measure(rig, worker))
        assert rig.daemon.leftovers() == expected_shm, f"shm changed after killing {worker}"
        # The fault schedule, not synchronisation: the next kill lands at a random moment.
        time.sleep(rng.uniform(0.0, MAX_GAP_S))
    return took


def kill_all_at_once(rig: Rig) -> float:
    """SIGKILL every worker in one go; seconds until all are back and both cameras show
    frames captured after the restart."""
    d = rig.daemon
    old = {w: d.worker_pid(w) for w in WORKERS}
    killed_at = time.monotonic()
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: all(
            d.worker_pid(w) not in (0, old[w]) and beat_after(d, w, killed_at) for w in WORKERS
        ),
        ALL_AT_ONCE_BOUND_S * 2,
        "every worker restarted",
    )
    marks = {c: int(d.stats(f"{c}.source")["last_frame_id"]) for c in (FILE_CAM, RTSP_CAM)}
    wait_for(
        lambda: all(rig.tail.shown_after(c, m) for c, m in marks.items()),
        ALL_AT_ONCE_BOUND_S * 2,
        "frames from both cameras after killing every worker",
    )
    return time.monotonic() - killed_at


def report(took: dict[str, list[float]]) -> str:
    every = sorted(t for ts in took.values() for t in ts)
    head = (
        f"seed {SEED}: {len(every)} kills, recovery min {every[0]:.2f} s, median "
        f"{statistics.median(every):.2f} s, max {every[-1]:.2f} s"
    )
    lines = [head]
    lines += [f"  {w}: {', '.join(f'{t:.2f}' for t in ts)}" for w, ts in sorted(took.items())]
    return "\n".join(lines)


def rtsp_outage(rig: Rig) -> None:
    d = rig.daemon
    before = d.stats(f"{RTSP_CAM}.source")["reconnects_total"]
    rig.rtsp.stop()
    wait_for(
        lambda: d.stats(f"{RTSP_CAM}.source")["reconnects_total"] > before,
        OUTAGE_S,
        "the RTSP source to notice the server is gone",
    )
    rig.rtsp.start()
    mark = int(d.stats(f"{RTSP_CAM}.source")["last_frame_id"])
    wait_for(
        lambda: rig.tail.shown_after(RTSP_CAM, mark),
        OUTAGE_S,
        "RTSP frames after the server restart",
    )


def broker_outage(rig: Rig) -> None:
    d = rig.daemon
    kill_broker(rig.broker)
    logged = logged_event_ids(d)
    wait_for(lambda: logged_event_ids(d) - logged, OUTAGE_S, "an event during the outage")
    during = logged_event_ids(d) - logged
    rig.broker.start()
    wait_for(
        lambda: during <= rig.event_ids(),
        OUTAGE_S,
        "the events of the outage to reach the restarted broker",
    )


def kill_broker(broker: MosquittoBroker) -> None:
    """SIGKILL mosquitto (a crash, not a clean stop) and reap it; start() works after."""
    assert broker.process is not None and broker.running
    broker.process.kill()
    broker.process.wait(timeout=10)
    broker.process = None


def logged_event_ids(d: Daemon) -> set[str]:
    """Ids of the start events the supervisor received from the file camera's overlay."""
    return {
        line.rsplit("id ", 1)[1].rstrip(")")
        for line in d.log().splitlines()
        if f"event {FILE_CAM}: bright start" in line
    }


@pytest.mark.timeout(300)
def test_random_sigkills_outages_and_clean_shutdown(rig: Rig) -> None:
    d = rig.daemon
    wait_for(lambda: all(d.heartbeat_fresh(w) for w in WORKERS), START_S, "all workers up")
    wait_for(
        lambda: rig.tail.shown_after(RTSP_CAM, 5) and rig.tail.shown_after(FILE_CAM, 5),
        START_S,
        "frames from both cameras",
    )
    wait_for(rig.event_ids, START_S, "a first event over MQTT")
    expected_shm = d.leftovers()
    assert any(n.endswith("events.sock") for n in expected_shm)

    took = random_kills(rig, expected_shm)
    summary = report(took)
    print(summary)
    assert set(took) == set(WORKERS)
    assert sum(len(ts) for ts in took.values()) >= 20
    assert max(t for ts in took.values() for t in ts) <= RECOVERY_BOUND_S, summary
    assert d.log().count("died (signal SIGKILL)") == sum(len(ts) for ts in took.values())
    assert "marked failed" not in d.log() and "giving up" not in d.log()

    everything_s = kill_all_at_once(rig)
    print(f"all {len(WORKERS)} workers killed at once: back in {everything_s:.2f} s")
    assert everything_s <= ALL_AT_ONCE_BOUND_S
    assert d.leftovers() == expected_shm

    seen = rig.event_ids()
    wait_for(lambda: rig.event_ids() - seen, OUTAGE_S, "new events after the kills")
    rtsp_outage(rig)
    broker_outage(rig)
    assert d.leftovers() == expected_shm

    started = time.monotonic()
    assert d.stop(timeout_s=SHUTDOWN_BUDGET_S + 10) == ExitCode.OK, d.log()[-3000:]
    assert time.monotonic() - started < SHUTDOWN_BUDGET_S
    assert d.leftovers() == []
    assert "Traceback" not in d.log()
