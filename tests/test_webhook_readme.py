"""README's webhook receiver code, taken from README.md as it stands and run against a
real signed request: the secret file made the way README says (`head -c 32 /dev/urandom
| base64 > webhook.secret`, so it ends in a newline), the sink built by the daemon's own
factory from [webhook] secret_file, a real HTTP receiver. Reading the file without
README's strip gives a key that does not verify."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webhook_receiver import WebhookReceiver

from daemon.config import WebhookConfig
from daemon.outputs.outbox import Outbox
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.webhook import webhook_sink

pytestmark = pytest.mark.timeout(60)

README = Path(__file__).resolve().parent.parent / "README.md"
DEADLINE_S = 20.0


def readme_receiver_code() -> dict[str, Any]:
    """The ```python block of README's "Webhooks" that defines verified(), executed."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if "def verified(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readmes_receiver_verifies_a_request_signed_with_a_usual_secret_file(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "webhook.secret"
    subprocess.run(
        f"head -c 32 /dev/urandom | base64 > {secret_file}", shell=True, check=True, timeout=10
    )
    assert secret_file.read_bytes().endswith(b"\n")
    code = readme_receiver_code()
    secret_from_file: Callable[[str], bytes] = code["secret_from_file"]
    verified: Callable[..., bool] = code["verified"]
    receiver = WebhookReceiver().start()
    try:
        cfg = WebhookConfig(enabled=True, urls=(receiver.url,), secret_file=str(secret_file))
        with Outbox(tmp_path / "outbox.sqlite3") as outbox:
            queue = outbox.queue("webhook", 100)
            sink = webhook_sink(cfg, SinkContext("box", ("door",), ("waving",), tmp_path), queue)
            sink.start()
            item = queue.store("e1:start", {"id": "e1", "phase": "start", "action": "waving"})
            assert item is not None
            sink.deliver(item)
            receiver.wait_for(lambda: len(receiver.accepted()) == 1, DEADLINE_S, "a delivery")
            sink.close(2.0)
    finally:
        receiver.stop()
    (request,) = receiver.requests()
    assert verified(secret_from_file(str(secret_file)), request.headers, request.body)
    assert not verified(secret_file.read_bytes(), request.headers, request.body), (
        "the key with its newline verified: the strip would not matter"
    )
    assert not verified(secret_from_file(str(secret_file)), request.headers, request.body + b" ")
