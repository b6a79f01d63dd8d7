"""Secrets a config names by environment variable (console.auth_token_env,
webhook.secret_env, mqtt.password_env) that check-config cannot hold against the file: the
shell an operator runs check-config in often lacks the service's environment (systemd's
Environment= / EnvironmentFile=), so an unset or empty one is a warning there, not an
error; `actiond run` refuses it at start-up (exit 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from daemon.config.schema import Config


def _named_variables(config: Config) -> list[tuple[str, str, bool]]:
    """(key, variable, empty refused) of every enabled section that names a variable."""
    named = [
        ("console.auth_token_env", config.console.auth_token_env, True, config.console.enabled),
        ("webhook.secret_env", config.webhook.secret_env, True, config.webhook.enabled),
        ("mqtt.password_env", config.mqtt.password_env, False, config.mqtt.enabled),
    ]
    return [(key, name, empty) for key, name, empty, on in named if on and name]


def environment_warnings(config: Config, environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per variable the config names that is unset (or empty, where `run`
    refuses an empty one) in `environ`."""
    lines = []
    for key, name, empty_refused in _named_variables(config):
        value = environ.get(name)
        if value is None:
            state = "is not set in this shell"
        elif empty_refused and not value.strip():
            state = "is empty in this shell"
        else:
            continue
        lines.append(
            f"warning: {key} names {name}, which {state}; the service must set it "
            "(systemd: Environment= or EnvironmentFile= in the unit), or `actiond run` "
            "stops with exit 2"
        )
    return lines
