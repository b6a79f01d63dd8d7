"""The [webhook] section's checks: each URL on its own (fields.py applies them), the rules
between its keys (rules.py), and its files made absolute (paths.py). The secret itself is
read when the sink opens (daemon/outputs/sinks/webhook.py), never here nor logged; nor
is a URL's path, which is the secret of Slack, Discord or Teams webhooks (shown_url)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

from daemon.config.loader import Check, ConfigError, at_least, existing_file, within
from daemon.config.schema import BACKOFF_RANGE_S, TIMEOUT_RANGE_S, WebhookConfig


def shown_url(url: str) -> str:
    """`url` as logs and errors show it: scheme://host:port and "/..." for any path or
    query, which may be the secret (https://hooks.slack.com/services/T0/B0/<secret>)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    where = f"{parts.scheme}://{host or '?'}" + (f":{port}" if port else "")
    hidden = (parts.path not in ("", "/")) or parts.query
    return where + ("/..." if hidden else "/")


def check_url(url: str) -> str | None:
    """Why `url` cannot be a webhook target, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be http:// or https:// URLs with a host (got {shown_url(url)})"
    if parts.username is not None or parts.password is not None:
        return (
            f"must not carry a user name or password (got one in {parts.hostname}'s URL: "
            "URLs are logged); have the receiver check the signature (webhook.secret_file)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"has a bad port (got {parts.netloc})"
    if parts.fragment:
        return f"must not have a #fragment (got one in {shown_url(url)})"
    return None


def _urls(value: tuple[str, ...]) -> str | None:
    for url in value:
        problem = check_url(url)
        if problem:
            return problem
    if len(set(value)) != len(value):
        shown = [shown_url(url) for url in value]
        return f"must be distinct (got {shown}): each URL gets every event once"
    return None


def webhook_field_rules() -> dict[str, Check]:
    """Each [webhook] key's range on its own."""
    backoff = within(*BACKOFF_RANGE_S, " s")
    return {
        "urls": _urls,
        "timeout_s": within(*TIMEOUT_RANGE_S, " s"),
        "retry_min_s": backoff,
        "retry_max_s": backoff,
        "outbox_max_events": at_least(1),
    }


def check_webhook(webhook: WebhookConfig, file: str) -> None:
    """ConfigError for the first rule between [webhook] keys that the config breaks."""
    if webhook.enabled and not webhook.urls:
        raise ConfigError(
            file,
            "webhook.urls",
            "is empty but webhook.enabled = true; name the receivers, e.g. urls = "
            '["https://hooks.example.com/actiond"]',
        )
    if webhook.retry_min_s > webhook.retry_max_s:
        raise ConfigError(
            file,
            "webhook.retry_min_s",
            f"must be <= webhook.retry_max_s ({webhook.retry_min_s:g} > {webhook.retry_max_s:g})",
        )
    if webhook.secret_file and webhook.secret_env:
        raise ConfigError(
            file, "webhook.secret_env", "set only one of secret_file and secret_env (both are set)"
        )


def webhook_paths(webhook: WebhookConfig, config_dir: Path, file: str) -> WebhookConfig:
    """secret_file and ca_file absolute and existing when the webhook is enabled (a
    disabled one's files may be absent, e.g. not yet deployed)."""
    if not webhook.enabled:
        return webhook
    return dataclasses.replace(
        webhook,
        secret_file=existing_file(webhook.secret_file, config_dir, "webhook.secret_file", file),
        ca_file=existing_file(webhook.ca_file, config_dir, "webhook.ca_file", file),
    )
