"""The webhook sink's pure logic: backoff with jitter, Retry-After, what an answer means,
the signature, the secret's sources, and the [webhook] config checks."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
from pathlib import Path

import pytest
from metrics_helpers import label_set, parse_samples
from prometheus_client import generate_latest

from daemon.config import ConfigError, WebhookConfig, load_config
from daemon.config.webhook_rules import shown_url
from daemon.outputs.metrics import MetricsSnapshot, make_registry
from daemon.outputs.sinks.protocol import SinkView
from daemon.outputs.sinks.webhook import WebhookSetupError, read_secret
from daemon.outputs.sinks.webhook_http import (
    Outcome,
    backoff_s,
    classify,
    request_body,
    request_headers,
    retry_after_s,
    retry_delay_s,
    signature,
)

pytestmark = pytest.mark.timeout(30)

NOW_S = 1_800_000_000.0


def test_backoff_doubles_from_min_up_to_max_with_jitter_down_to_half() -> None:
    top = [backoff_s(n, 1.0, 300.0, lambda: 1.0) for n in range(1, 12)]
    assert top == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]
    low = [backoff_s(n, 1.0, 300.0, lambda: 0.0) for n in (1, 2, 5, 30)]
    assert low == [1.0, 1.0, 8.0, 150.0]  # half the step, never under min_s
    assert backoff_s(10_000, 1.0, 300.0, lambda: 0.5) == 225.0  # no overflow


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("120", NOW_S) == 120.0
    assert retry_after_s(" 7 ", NOW_S) == 7.0
    date = email.utils.formatdate(NOW_S + 30.0, usegmt=True)
    assert retry_after_s(date, NOW_S) == pytest.approx(30.0)
    past = email.utils.formatdate(NOW_S - 30.0, usegmt=True)
    assert retry_after_s(past, NOW_S) == 0.0
    assert retry_after_s("soon", NOW_S) is None
    assert retry_after_s("-5", NOW_S) is None
    assert retry_after_s(None, NOW_S) is None


def test_retry_after_wins_when_longer_but_is_capped() -> None:
    slow = Outcome("retry", "HTTP 503", retry_after_s=60.0)
    assert retry_delay_s(slow, 1, 1.0, 300.0, lambda: 1.0) == 60.0
    assert retry_delay_s(slow, 1, 1.0, 10.0, lambda: 1.0) == 10.0
    short = Outcome("retry", "HTTP 429", retry_after_s=0.0)
    assert retry_delay_s(short, 3, 1.0, 300.0, lambda: 1.0) == 4.0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (201, "delivered"),
        (204, "delivered"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (429, "retry"),
        (400, "rejected"),
        (401, "rejected"),
        (404, "rejected"),
        (410, "rejected"),
        (301, "rejected"),
    ],
)
def test_what_an_answer_means(status: int, verdict: str) -> None:
    assert classify(status, None, NOW_S).verdict == verdict


def test_the_signature_covers_the_timestamp_and_the_exact_body() -> None:
    body = request_body({"phase": "start", "id": "a1", "score": 0.9})
    assert body == b'{"id":"a1","phase":"start","score":0.9}'
    sig = signature(b"k", 1700000000, body)
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert sig != signature(b"k", 1700000001, body), "the timestamp is not signed"
    headers = request_headers("a1:start", body, b"k", 1700000000)
    assert headers["X-Actiond-Signature"] == sig
    assert headers["X-Actiond-Timestamp"] == "1700000000"
    assert headers["X-Actiond-Event-Id"] == headers["Idempotency-Key"] == "a1:start"
    assert "X-Actiond-Signature" not in request_headers("a1:start", body, None, 1700000000)


def test_the_secret_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    assert read_secret(WebhookConfig(secret_file=str(secret))) == b"from-a-file"
    monkeypatch.setenv("ACTIOND_TEST_WEBHOOK_SECRET", "from-env")
    cfg = WebhookConfig(secret_env="ACTIOND_TEST_WEBHOOK_SECRET")
    assert read_secret(cfg) == b"from-env"
    assert read_secret(WebhookConfig()) is None
    monkeypatch.delenv("ACTIOND_TEST_WEBHOOK_SECRET")
    with pytest.raises(WebhookSetupError, match="ACTIOND_TEST_WEBHOOK_SECRET, which is not set"):
        read_secret(cfg)
    secret.write_text("\n")
    with pytest.raises(WebhookSetupError, match="is empty"):
        read_secret(WebhookConfig(secret_file=str(secret)))
    assert "from-a-file" not in repr(WebhookConfig(secret_file=str(secret)))


def write_config(tmp_path: Path, webhook: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[[cameras]]\nname = "cam"\nsource = "test:bars"\n\n[webhook]\n' + webhook)
    return path


@pytest.mark.parametrize(
    ("webhook", "key", "says"),
    [
        ("enabled = true\n", "webhook.urls", "is empty but webhook.enabled = true"),
        ('urls = ["ftp://example.com/x"]\n', "webhook.urls", "http:// or https://"),
        ('urls = ["https://user:pw@example.com/"]\n', "webhook.urls", "user name or password"),
        ('urls = ["http://a/x", "http://a/x"]\n', "webhook.urls", "distinct"),
        ('urls = ["http://a/T0/s3", "http://a/T0/s3"]\n', "webhook.urls", "http://a/...']"),
        ('urls = ["http://a:99999/x"]\n', "webhook.urls", "bad port"),
        ("timeout_s = 0\n", "webhook.timeout_s", "between"),
        (
            "retry_min_s = 20.0\nretry_max_s = 10.0\n",
            "webhook.retry_min_s",
            "<= webhook.retry_max_s",
        ),
        (
            'secret_file = "s"\nsecret_env = "S"\n',
            "webhook.secret_env",
            "only one of secret_file and secret_env",
        ),
        (
            'enabled = true\nurls = ["http://a/x"]\nsecret_file = "missing"\n',
            "webhook.secret_file",
            "file not found",
        ),
    ],
)
def test_bad_webhook_settings_name_the_key_and_the_fix(
    tmp_path: Path, webhook: str, key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, webhook))
    assert info.value.key == key
    assert says in info.value.reason
    assert "s3" not in info.value.reason, "a URL's (secret) path is in the message"


def test_a_good_webhook_section_resolves_its_files(tmp_path: Path) -> None:
    (tmp_path / "hook.secret").write_text("x")
    config = load_config(
        write_config(
            tmp_path,
            'enabled = true\nurls = ["https://hooks.example.com/a?b=1", "http://10.0.0.2:8080/"]\n'
            'secret_file = "hook.secret"\n',
        )
    )
    assert config.webhook.urls == ("https://hooks.example.com/a?b=1", "http://10.0.0.2:8080/")
    assert config.webhook.secret_file == str(tmp_path / "hook.secret")


def test_refusals_and_retries_are_exported_per_sink() -> None:
    webhook = SinkView("webhook", False, 7, 3, 1, 0, (("rejected", 2),), retries_total=5)
    mqtt = SinkView("mqtt", True, 9, 0, 0)
    registry, _ = make_registry(lambda: MetricsSnapshot(sinks=[webhook, mqtt]))
    samples = parse_samples(generate_latest(registry).decode())
    assert samples["actiond_sink_dropped_total"] == {
        label_set(sink="webhook", reason="outbox_full"): 1,
        label_set(sink="webhook", reason="rejected"): 2,
        label_set(sink="mqtt", reason="outbox_full"): 0,
    }
    # A sink that does not count retries has no series (not a misleading 0).
    assert samples["actiond_sink_retries_total"] == {label_set(sink="webhook"): 5}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZsecret", "https://hooks.slack.com/..."),
        ("https://discord.com/api/webhooks/1/tok?wait=true", "https://discord.com/..."),
        ("http://10.0.0.2:8080/", "http://10.0.0.2:8080/"),
        ("http://[::1]:9/a", "http://[::1]:9/..."),
        ("https://example.com?token=x", "https://example.com/..."),
        ("http://example.com", "http://example.com/"),
    ],
)
def test_logs_show_a_url_without_its_path_or_query(url: str, shown: str) -> None:
    assert shown_url(url) == shown
