"""Shared fixtures: a real RTSP server, a real mosquitto broker (see their modules), and
`daemons`, which cleans up every daemon a test started."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon_proc import Daemon

pytest_plugins = ["rtsp_fixture", "mosquitto_fixture"]


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Append each Daemon you start; they are killed and their shm dirs removed after."""
    made: list[Daemon] = []
    yield made
    for d in made:
        d.cleanup()
