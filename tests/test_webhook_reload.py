"""A reload that changes [webhook] re-opens the webhook sink alone: the events the old
URL never took (its receiver down) go to the new URL, in order, and no other sink is
touched. A real sender process -> the supervisor's event socket, intake, outbox and
sinks (daemon.supervisor.outputs, as the supervisor opens them), real HTTP receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import uvloop
from test_event_burst import CAMERA, DEVICE, REPO, SENDER
from test_event_sinks import open_for_test, wait_until
from webhook_receiver import WebhookReceiver

from daemon.config import CameraConfig, Config, DaemonConfig, JsonlConfig, WebhookConfig
from daemon.config.rules import model_facts
from daemon.supervisor.boot import Boot

EVENTS = 5
DEADLINE_S = 30.0

pytestmark = pytest.mark.timeout(120)


def webhook_boot(state_dir: Path, url: str) -> Boot:
    config = Config(
        daemon=DaemonConfig(device_id=DEVICE, state_dir=str(state_dir)),
        cameras=(CameraConfig(name=CAMERA, source="test:still"),),
        jsonl=JsonlConfig(enabled=True, path="events.jsonl"),
        webhook=WebhookConfig(enabled=True, urls=(url,), retry_min_s=0.1, retry_max_s=0.5),
    )
    facts = model_facts(config, "model.onnx", ("dark", "bright"), 8, "rgb+flow", 0, 0)
    return Boot(config, state_dir / "config.toml", "model.onnx", facts, ("CPUExecutionProvider",))


async def move_the_webhook(
    socket_path: Path, state: Path, down: WebhookReceiver, up: WebhookReceiver
) -> None:
    async with AsyncExitStack() as stack:
        outputs = await open_for_test(stack, webhook_boot(state, down.url), socket_path)
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            str(socket_path),
            str(EVENTS),
            CAMERA,
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(sender.communicate(), DEADLINE_S)
        assert json.loads(out)["sent"] == EVENTS
        old, jsonl = outputs.sink("webhook"), outputs.sink("jsonl")
        assert old is not None and jsonl is not None
        await wait_until(lambda: old.view().pending == EVENTS, "the events held for the webhook")
        await wait_until(lambda: not old.view().up, "the old URL to fail")
        moved = dataclasses.replace(
            webhook_boot(state, down.url).config,
            webhook=WebhookConfig(enabled=True, urls=(up.url,)),
        )
        boot = dataclasses.replace(webhook_boot(state, down.url), config=moved)
        await outputs.reconfigure(boot, {"webhook"}, metrics=False)
        new = outputs.sink("webhook")
        assert new is not None and new is not old
        assert outputs.sink("jsonl") is jsonl, "a [webhook] change leaves the jsonl sink running"
        await wait_until(lambda: len(up.accepted()) == EVENTS, "the new URL to get every event")
        await wait_until(lambda: new.view().pending == 0, "the outbox to empty")


def test_a_reload_sends_what_the_old_url_never_took_to_the_new_one(tmp_path: Path) -> None:
    down = WebhookReceiver().start()
    down.stop()  # nothing listens on the old URL
    up = WebhookReceiver().start()
    try:
        with tempfile.TemporaryDirectory(prefix="actiond-webhook-") as sock_dir:
            uvloop.run(
                move_the_webhook(Path(sock_dir) / "events.sock", tmp_path / "state", down, up)
            )
    finally:
        up.stop()
    assert up.accepted_keys() == [f"burst-{i:04d}:start" for i in range(EVENTS)]
    assert down.requests() == []
