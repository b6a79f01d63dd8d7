"""The live JPEG slot (daemon.ipc.liveslot): a writer process and a reader process on one
file; SIGKILLed writers mid-way never give the reader a torn JPEG nor break it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.ipc import liveslot
from daemon.ipc.liveslot import LiveSlotReader, LiveSlotWriter, create_slot

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 400_000
KILLS = 6
DEADLINE_S = 20.0

# payload(id): a "JPEG" (FF D8 ... FF D9) whose length and filler byte follow from the
# frame id, so a reader can tell a whole one from a torn one without decoding.
PAYLOAD = """
def payload(i):
    n = 1000 + (i * 7919) % 300000
    return b"\\xff\\xd8" + bytes([i % 251]) * n + b"\\xff\\xd9"
def whole(i, data):
    return data == payload(i)
"""
WRITER = (
    PAYLOAD
    + """
import sys
from daemon.ipc.liveslot import LiveSlotWriter
w = LiveSlotWriter(sys.argv[1], int(sys.argv[2]))
i = int(sys.argv[3])
while True:
    w.publish(payload(i), i)
    i += 1
"""
)
READER = (
    PAYLOAD
    + """
import json, os, sys
from daemon.ipc.liveslot import LiveSlotReader
r = LiveSlotReader(sys.argv[1])
reads = torn = none = 0
seen = -1
while not os.path.exists(sys.argv[2]):
    got = r.read()
    if got is None:
        none += 1
        continue
    reads += 1
    seq, frame_id, data = got
    if not whole(frame_id, data):
        torn += 1
    seen = max(seen, frame_id)
    with open(sys.argv[3], "w") as fh:
        fh.write(str(seen))
print(json.dumps({"reads": reads, "torn": torn, "none": none, "max_id": seen}))
"""
)


def _payload(i: int) -> bytes:
    return b"\xff\xd8" + bytes([i % 251]) * (1000 + (i * 7919) % 300000) + b"\xff\xd9"


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )


def _wait_seen(progress: Path, at_least: int, reader: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert reader.poll() is None, "the reader process died"
        try:
            if int(progress.read_text() or "-1") >= at_least:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)  # polling with a deadline
    raise AssertionError(f"the reader never saw frame {at_least}")


@pytest.mark.timeout(120)
def test_killed_writers_never_tear_what_the_reader_returns(tmp_path: Path) -> None:
    slot, stop, progress = tmp_path / "cam.live", tmp_path / "stop", tmp_path / "seen"
    create_slot(slot, MAX_BYTES)
    reader = _spawn(READER, str(slot), str(stop), str(progress))
    rng = random.Random(13)
    base = 0
    try:
        for _ in range(KILLS):
            writer = _spawn(WRITER, str(slot), str(MAX_BYTES), str(base))
            _wait_seen(progress, base, reader)  # this writer's frames reach the reader
            time.sleep(rng.uniform(0.0, 0.05))  # where the SIGKILL lands, not a sync
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
            base += 1_000_000
        writer = _spawn(WRITER, str(slot), str(MAX_BYTES), str(base))
        _wait_seen(progress, base, reader)  # a new writer after the last kill is read
        writer.kill()
        writer.wait(10)
    finally:
        stop.touch()
    out, _ = reader.communicate(timeout=DEADLINE_S)
    assert reader.returncode == 0
    result = json.loads(out)
    assert result["torn"] == 0, result
    assert result["reads"] > KILLS and result["max_id"] >= base, result


@pytest.mark.timeout(30)
def test_publish_read_request_and_skips(tmp_path: Path) -> None:
    path = tmp_path / "cam.live"
    reader = LiveSlotReader(path)
    assert reader.read() is None  # no file yet
    reader.request()  # no file: nothing to mark, no error
    writer = LiveSlotWriter(path, 4096)  # creates the file
    assert reader.read() is None  # nothing published yet
    assert not writer.wanted()
    reader.request()
    assert writer.wanted()
    assert writer.publish(_payload(1)[:100] + b"\xff\xd9", 7) is True
    seq, frame_id, data = reader.read() or (0, 0, b"")
    assert (seq, frame_id, data[-2:]) == (1, 7, b"\xff\xd9")
    assert writer.publish(_payload(2), 8) is False  # 200 kB > 4096: skipped, counted
    assert writer.skipped_too_large == 1 and reader.skipped_too_large == 1
    assert reader.read() == (1, 7, data)  # the last one that fitted stays
    writer.close()
    reader.close()


@pytest.mark.timeout(30)
def test_request_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LiveSlotWriter(tmp_path / "cam.live", 4096)
    LiveSlotReader(tmp_path / "cam.live").request()
    assert writer.wanted()
    monkeypatch.setattr(liveslot, "WANTED_S", 0.0)
    assert not writer.wanted()
    writer.close()


@pytest.mark.timeout(30)
def test_a_writer_dead_mid_write_reads_as_nothing_until_the_next(tmp_path: Path) -> None:
    path = tmp_path / "cam.live"
    writer = LiveSlotWriter(path, 4096)
    writer.publish(b"\xff\xd8abc\xff\xd9", 1)
    writer.close()
    with open(path, "r+b") as fh:  # seq odd: what a SIGKILL between its stores leaves
        fh.seek(8 * 2)
        seq = int.from_bytes(fh.read(8), "little")
        fh.seek(8 * 2)
        fh.write((seq + 1).to_bytes(8, "little"))
    reader = LiveSlotReader(path)
    started = time.monotonic()
    assert reader.read() is None
    assert time.monotonic() - started < 1.0  # gives up after READ_RETRY_S
    again = LiveSlotWriter(path, 4096)  # a restarted overlay: readable again
    again.publish(b"\xff\xd8xyz\xff\xd9", 2)
    assert reader.read() == (3, 2, b"\xff\xd8xyz\xff\xd9")
    again.close()
    reader.close()


@pytest.mark.timeout(30)
def test_not_a_slot(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"x" * 200)
    with pytest.raises(liveslot.LiveSlotError):
        LiveSlotReader(path).read()
